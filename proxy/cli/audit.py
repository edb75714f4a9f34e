"""``airlock audit query|tail|export|verify|status``: the audit trail, read through the admin API."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import orjson
import typer

from .common import AdminClient, emit_json, fail, print_table

audit_app = typer.Typer(help="Query, follow, export and verify the audit trail.", no_args_is_help=True)
TAIL_COLUMNS = ["ts", "kind", "account", "agent", "session", "method", "path", "status", "outcome", "tool",
                "model", "action", "reason"]


def _params(values: list[str]) -> dict:
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name:
            fail(f"--param {v!r}: use NAME=VALUE and refer to it as {{NAME:String}} in the SQL", 2)
        out[name] = value
    return out


@audit_app.command("query")
def query(
    sql: str = typer.Argument(..., help="A read-only SELECT over events, usage_ledger, daily_stats, sessions."),
    param: list[str] = typer.Option([], "--param", "-p", help="Query parameter NAME=VALUE ({NAME:String})."),
    limit: int = typer.Option(10_000, "--limit", help="Most rows returned."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run a read-only SQL query against the audit tables."""
    out = AdminClient.from_ctx().post("/v1/audit/query", {"sql": sql, "params": _params(param) or None,
                                                          "limit": limit})
    if as_json:
        emit_json(out["rows"])
        return
    rows = out["rows"]
    print_table(rows, list(rows[0].keys()) if rows else [])
    if out.get("truncated"):
        typer.echo(f"(first {out['count']} rows; raise --limit for more)", err=True)


def _print_rows(rows: list[dict], as_json: bool) -> None:
    for r in rows:
        if as_json:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        else:
            sys.stdout.write("  ".join(str(r.get(c, "")) for c in TAIL_COLUMNS if r.get(c) not in ("", None, 0))
                             + "\n")
    sys.stdout.flush()


@audit_app.command("tail")
def tail(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new rows as they arrive."),
    lines: int = typer.Option(20, "--lines", "-n", help="How many of the latest rows to start with."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind (request, decision, ...)."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between polls with -f."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print the latest audit rows (and follow with -f; Ctrl-C to stop)."""
    client = AdminClient.from_ctx()
    params = {"limit": lines}
    if kind:
        params["kind"] = kind
    out = client.get("/v1/audit/tail", params)
    _print_rows(out["rows"], as_json)
    cursor = out.get("cursor")
    try:
        while follow:
            time.sleep(interval)
            p = {"limit": 1000, **({"kind": kind} if kind else {}), **({"after": cursor} if cursor else {})}
            out = client.get("/v1/audit/tail", p)
            _print_rows(out["rows"], as_json)
            cursor = out.get("cursor") or cursor
    except KeyboardInterrupt:
        pass


@audit_app.command("export")
def export(
    frm: Optional[str] = typer.Option(None, "--from", help="Start (ISO 8601, unix time, or an age: 2h, 7d)."),
    to: Optional[str] = typer.Option(None, "--to", help="End, exclusive (same forms)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, csv or parquet."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
) -> None:
    """Export events in time order (a progress bar on a terminal)."""
    if fmt not in ("jsonl", "csv", "parquet"):
        fail(f"unknown format {fmt!r}: use jsonl, csv or parquet", 2)
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        fail("parquet is binary: pass --output FILE or redirect stdout", 2)
    client = AdminClient.from_ctx()
    params = {"format": fmt, **({"from": frm} if frm else {}), **({"to": to} if to else {})}
    import httpx
    try:
        with client.stream("GET", "/v1/audit/export", params=params) as resp:
            if resp.status_code >= 400:
                resp.read()
                try:
                    msg = resp.json()["error"]["message"]
                except Exception:  # noqa: BLE001
                    msg = resp.text
                fail(f"{msg} (HTTP {resp.status_code})")
            total = int(resp.headers.get("x-airlock-rows", "0") or 0)
            sink = open(output, "wb") if output else sys.stdout.buffer
            rows = _copy(resp, sink, total, fmt, show=sys.stderr.isatty())
            if output:
                sink.close()
                typer.echo(f"exported {rows if fmt != 'parquet' else total} rows to {output}", err=True)
    except httpx.ConnectError:
        fail(f"cannot reach Airlock's admin API at {client.base_url}: start it with 'airlock run'", 3)


def _copy(resp, sink, total: int, fmt: str, show: bool) -> int:
    lines = 0
    header = fmt == "csv"
    if not show:
        for chunk in resp.iter_bytes():
            sink.write(chunk)
            lines += chunk.count(b"\n")
        return lines - (1 if header and lines else 0)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("rows", total=total or None)
        for chunk in resp.iter_bytes():
            sink.write(chunk)
            n = chunk.count(b"\n")
            lines += n
            if fmt != "parquet":
                bar.update(task, completed=max(0, lines - (1 if header else 0)))
        bar.update(task, completed=total)
    return lines - (1 if header and lines else 0)


@audit_app.command("verify")
def verify(
    stream: Optional[str] = typer.Option(None, "--stream", help="Only this writer stream."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the hash chains: report gaps, edited rows and broken links (exit 1 if any)."""
    out = AdminClient.from_ctx().get("/v1/audit/verify", {"stream": stream} if stream else None)
    if as_json:
        emit_json(out)
    else:
        typer.echo(f"{out['rows']} rows in {out['streams']} stream(s): "
                   f"{'OK, no gaps or edits' if out['ok'] else str(out['problem_count']) + ' problem(s)'}")
        if out["problems"]:
            print_table(out["problems"], ["stream", "seq", "problem", "detail"])
    if not out["ok"]:
        raise typer.Exit(1)


@audit_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The writer: queue depth, WAL bytes, backlog, last error."""
    out = AdminClient.from_ctx().get("/v1/audit/status")
    if as_json:
        emit_json(out)
    else:
        for k, v in out.items():
            typer.echo(f"{k:<13} {v}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
