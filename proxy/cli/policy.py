"""``airlock policy``: validate, explain, test and diff policy files; reload / show a running one."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

from .common import AdminClient, emit_json, fail, load_config, print_table

policy_app = typer.Typer(no_args_is_help=True, help="Policy files: validate, explain, test, diff, reload.")


def _load(paths: list[str]):
    from proxy.policy import PolicyError, load_engine
    try:
        return load_engine(paths)
    except PolicyError as e:
        for err in e.errors:
            typer.echo(f"airlock: {err._one()}", err=True)
        fail(f"{len(e.errors)} error(s) in the policy: fix the error(s) above", 1)


def _policy_paths(policy: Optional[List[str]]) -> list[str]:
    if policy:
        return list(policy)
    cfg = load_config()
    return [str(cfg.path(p)) for p in cfg.policies]


@policy_app.command("validate")
def validate(files: List[str] = typer.Argument(..., help="Policy files or folders."),
             as_json: bool = typer.Option(False, "--json", help="Print a list of {file, line, message, hint}.")):
    """Strictly validate policy files: exit 0 if valid, 1 with every error (file:line: message) if not."""
    from proxy.policy import PolicyError, load_engine
    try:
        engine = load_engine(files)
    except PolicyError as e:
        if as_json:
            emit_json([x.as_dict() for x in e.errors])
        else:
            for err in e.errors:
                typer.echo(err._one(), err=True)
            typer.echo(f"airlock: {len(e.errors)} error(s); the policy is invalid", err=True)
        raise typer.Exit(1)
    if as_json:
        emit_json([])
    else:
        c = engine.counts()
        typer.echo(f"ok: {len(engine.source_files)} file(s), {c['rules']} tool rule(s), "
                   f"{c['conditions']} condition(s), {c['workflows']} workflow(s); version {engine.version}")


def _parse_now(now: Optional[str]) -> Optional[datetime]:
    if not now:
        return None
    try:
        t = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--now {now!r} is not an ISO timestamp: use e.g. 2026-03-02T10:00:00Z", 2)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@policy_app.command("explain")
def explain(
    tool: str = typer.Option(..., "--tool", help="Tool name as the MCP server names it."),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p",
                                               help="Policy file or folder (repeatable; default: airlock.yaml's)."),
    server: Optional[str] = typer.Option(None, "--server", help="MCP server name ('native' for agent hooks)."),
    args: str = typer.Option("{}", "--args", help="Tool arguments as a JSON object."),
    agent: Optional[str] = typer.Option(None, "--agent"), subject: Optional[str] = typer.Option(None, "--subject"),
    account: Optional[str] = typer.Option(None, "--account"), flow: Optional[str] = typer.Option(None, "--flow"),
    session: Optional[str] = typer.Option(None, "--session", help="Session id."),
    justification: Optional[str] = typer.Option(None, "--justification"),
    changed: bool = typer.Option(False, "--changed", help="The tool's definition changed (tool.changed)."),
    host: Optional[str] = typer.Option(None, "--host", help="request.host"),
    path: Optional[str] = typer.Option(None, "--path", help="request.path"),
    now: Optional[str] = typer.Option(None, "--now", help="Evaluate at this ISO time instead of now."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
):
    """Show the decision the policy gives one tool call, and why."""
    from proxy.policy import CallContext
    try:
        parsed = json.loads(args)
    except ValueError as e:
        fail(f"--args is not valid JSON ({e}): pass an object, e.g. --args '{{\"command\": \"ls\"}}'", 2)
    if not isinstance(parsed, dict):
        fail("--args must be a JSON object, e.g. --args '{\"command\": \"ls\"}'", 2)
    engine = _load(_policy_paths(policy))
    ctx = CallContext(tool=tool, server=server, args=parsed, agent=agent, subject=subject, account=account,
                      flow=flow, session_id=session, justification=justification, tool_changed=changed,
                      request_host=host, request_path=path, now=_parse_now(now))
    d = engine.decide(ctx).as_dict()
    if as_json:
        emit_json(d)
        return
    typer.echo(f"decision:      {d['decision']}")
    typer.echo(f"rule:          {d['rule'] or '-'}")
    typer.echo(f"justification: {d['justification']}")
    typer.echo(f"workflow:      {d['approval_workflow'] or '-'}")
    typer.echo(f"reason:        {d['reason']}")


def _cases(path: str):
    from proxy.policy import PolicyError
    from proxy.policy.cases import load_cases
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read cases file {path}: {e}", 2)
    try:
        return load_cases(text, path)
    except PolicyError as e:
        for err in e.errors:
            typer.echo(f"airlock: {err._one()}", err=True)
        fail(f"the cases file {path} is invalid: fix the error(s) above", 2)


@policy_app.command("test")
def test(files: List[str] = typer.Argument(..., help="Policy files or folders."),
         cases: str = typer.Option(..., "--cases", help="YAML file of cases: call + expected decision."),
         as_json: bool = typer.Option(False, "--json", help="Print every result as JSON.")):
    """Run policy unit tests: exit 1 (with a diff per failing case) if any case gets another decision."""
    from proxy.policy.cases import run_cases
    engine = _load(files)
    results = run_cases(engine, _cases(cases))
    failed = [r for r in results if not r["ok"]]
    if as_json:
        emit_json({"passed": len(results) - len(failed), "failed": len(failed), "results": results})
    else:
        for r in results:
            where = f"{cases}:{r['line']}" if r["line"] else cases
            typer.echo(f"{'PASS' if r['ok'] else 'FAIL'}  {r['name']}" + ("" if r["ok"] else f"  ({where})"))
            for line in r["diff"]:
                typer.echo(f"      {line}")
        typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@policy_app.command("diff")
def diff(old: str = typer.Argument(..., help="Old policy file or folder."),
         new: str = typer.Argument(..., help="New policy file or folder."),
         cases: Optional[str] = typer.Option(None, "--cases", help="Also compare the calls of this cases file."),
         as_json: bool = typer.Option(False, "--json"),
         exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when the policies differ.")):
    """Which rules were added / removed / changed, and which calls change decision."""
    from proxy.policy.diff import diff_engines
    a, b = _load([old]), _load([new])
    calls = [c.call for c in _cases(cases)] if cases else None
    result = diff_engines(a, b, calls)
    if as_json:
        emit_json(result)
    else:
        r = result["rules"]
        for x in r["added"]:
            typer.echo(f"+ rule {x['id']}: {_describe(x)}")
        for x in r["removed"]:
            typer.echo(f"- rule {x['id']}: {_describe(x)}")
        for x in r["changed"]:
            typer.echo(f"~ rule {x['id']}: {_describe(x['old'])}  ->  {_describe(x['new'])}")
        for k in ("added", "removed", "changed"):
            for name in result["workflows"][k]:
                typer.echo(f"{ {'added': '+', 'removed': '-', 'changed': '~'}[k]} workflow {name}")
        for k, v in result["defaults"].items():
            typer.echo(f"~ defaults.{k}: {v['old']} -> {v['new']}")
        for k in result["gateway_changed"]:
            typer.echo(f"~ {k} changed")
        if result["calls"]:
            typer.echo("calls that change decision:")
            rows = [{"tool": c["call"]["tool"], "server": c["call"]["server"],
                     "changed": c["call"]["tool_changed"], "old": c["old"]["decision"],
                     "new": c["new"]["decision"], "new rule": c["new"]["rule"]} for c in result["calls"]]
            print_table(rows, ["tool", "server", "changed", "old", "new", "new rule"])
        if not result["changed"]:
            typer.echo("no differences")
    if exit_code and result["changed"]:
        raise typer.Exit(1)


def _describe(u: dict) -> str:
    if u["kind"] == "tool":
        bits = [f"tool {u['name']!r}"] + [f"{k}={u[k]}" for k in ("source", "action", "justification",
                                                                   "approval_workflow") if u.get(k)]
        if not u["enabled"]:
            bits.append("disabled")
        return " ".join(bits)
    return f"when `{u['expression']}` -> {u['action']}" + (
        f" (workflow {u['approval_workflow']})" if u.get("approval_workflow") else "")


@policy_app.command("reload")
def reload(as_json: bool = typer.Option(False, "--json")):
    """Ask a running Airlock to reload its policy files now (an invalid version is rejected)."""
    res = AdminClient.from_ctx().post("/v1/policy/reload")
    if as_json:
        emit_json(res)
    elif res.get("ok"):
        typer.echo(f"reloaded: version {res.get('version')}")
    else:
        typer.echo(f"airlock: reload rejected, version {res.get('version')} stays in force:\n{res.get('error')}",
                   err=True)
    if not res.get("ok"):
        raise typer.Exit(1)


@policy_app.command("status")
def status(as_json: bool = typer.Option(False, "--json")):
    """The policy version, files and rule counts of a running Airlock."""
    res = AdminClient.from_ctx().get("/v1/policy")
    if as_json:
        emit_json(res)
        return
    typer.echo(f"version:  {res.get('version')}")
    typer.echo(f"files:    {', '.join(res.get('files') or []) or '(none)'}")
    typer.echo("counts:   " + ", ".join(f"{k}={v}" for k, v in (res.get("counts") or {}).items()))
    if res.get("last_error"):
        typer.echo(f"last reload error: {res['last_error']}")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
