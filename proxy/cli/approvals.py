"""``airlock approvals list|show|approve|deny|cancel``: decide held calls from a terminal."""
from __future__ import annotations

import getpass
import os
import time
from typing import Optional

import typer

from .common import AdminClient, emit_json, fail, print_table

approvals_app = typer.Typer(no_args_is_help=True, help="Human approvals: list, inspect and decide held tool calls.")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _left(ts: float) -> str:
    s = max(0, int(ts - time.time()))
    return f"{s // 60}m{s % 60:02d}s"


def _approver(name: str | None) -> str:
    who = name or os.environ.get("AIRLOCK_APPROVER")
    if not who:
        try:
            who = getpass.getuser()
        except Exception:
            who = None
    if not who:
        fail("say who decides with --as NAME (or set AIRLOCK_APPROVER)", 2)
    return who


@approvals_app.command("list")
def list_(state: str = typer.Option("pending", "--state", "-s",
                                    help="pending, approved, denied, expired, cancelled or all."),
          limit: int = typer.Option(100, "--limit", help="At most this many, newest first."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List approval requests (pending ones by default)."""
    data = AdminClient.from_ctx().get("/v1/approvals", params={"state": state, "limit": limit})
    items = data.get("approvals", [])
    if as_json:
        emit_json(items)
        return
    rows = [{"id": a["id"], "state": a["state"], "tool": f"{a['server']}/{a['tool']}" if a.get("server") else a["tool"],
             "requester": a.get("subject") or a.get("agent") or "-", "votes":
             f"{sum(1 for v in a['votes'] if v['decision'] == 'approve')}/{a['required_approvals']}",
             "expires": _left(a["expires_at"]) if a["state"] == "pending" else "-",
             "justification": (a.get("justification") or "")[:40]} for a in items]
    print_table(rows, ["id", "state", "tool", "requester", "votes", "expires", "justification"])


@approvals_app.command("show")
def show(approval_id: str = typer.Argument(..., metavar="ID"),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one approval request with its arguments and votes."""
    a = AdminClient.from_ctx().get(f"/v1/approvals/{approval_id}")
    if as_json:
        emit_json(a)
        return
    import json
    lines = [("id", a["id"]), ("state", a["state"]),
             ("tool", f"{a['server']}/{a['tool']}" if a.get("server") else a["tool"]),
             ("requester", a.get("subject") or "-"), ("agent", a.get("agent") or "-"),
             ("account", a.get("account") or "-"), ("justification", a.get("justification") or "(none given)"),
             ("rule", a.get("rule") or "-"), ("reason", a.get("reason") or "-"),
             ("workflow", f"{a['workflow']} ({a['required_approvals']} approval(s) needed)"),
             ("approvers", ", ".join(a.get("approvers") or []) or "any admin"),
             ("created", _when(a["created_at"])), ("expires", f"{_when(a['expires_at'])}"
                                                   + (f" (in {_left(a['expires_at'])})" if a["state"] == "pending" else "")),
             ("decided", f"{_when(a.get('decided_at'))} by {a.get('decided_by') or '-'}" if a.get("decided_at") else "-"),
             ("outcome", a.get("outcome") or "-")]
    for k, v in lines:
        typer.echo(f"{k + ':':<15}{v}")
    typer.echo("arguments:")
    typer.echo("  " + json.dumps(a.get("arguments"), indent=2).replace("\n", "\n  "))
    typer.echo("votes:" + ("" if a["votes"] else " none"))
    for v in a["votes"]:
        typer.echo(f"  {_when(v['time'])}  {v['approver']}: {v['decision']}" + (f" ({v['comment']})" if v["comment"] else ""))


def _decide(decision: str, approval_id: str, comment: str, who: Optional[str], as_json: bool) -> None:
    res = AdminClient.from_ctx().post(f"/v1/approvals/{approval_id}/{decision}",
                                      json={"approver": _approver(who), "comment": comment})
    if as_json:
        emit_json(res)
    else:
        typer.echo(f"{approval_id}: {res['message']}")


@approvals_app.command("approve")
def approve(approval_id: str = typer.Argument(..., metavar="ID"),
            comment: str = typer.Option("", "--comment", "-m", help="Why (recorded and shown to the agent)."),
            who: Optional[str] = typer.Option(None, "--as", help="Your name (default: $AIRLOCK_APPROVER or $USER)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Approve a held call (one vote; a workflow may need more than one)."""
    _decide("approve", approval_id, comment, who, as_json)


@approvals_app.command("deny")
def deny(approval_id: str = typer.Argument(..., metavar="ID"),
         comment: str = typer.Option("", "--comment", "-m", help="Why (recorded and shown to the agent)."),
         who: Optional[str] = typer.Option(None, "--as", help="Your name (default: $AIRLOCK_APPROVER or $USER)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Deny a held call (one deny decides)."""
    _decide("deny", approval_id, comment, who, as_json)


@approvals_app.command("cancel")
def cancel(approval_id: str = typer.Argument(..., metavar="ID"),
           reason: str = typer.Option("cancelled by an admin", "--reason", help="Recorded with the request.")) -> None:
    """Cancel a pending request (the held call is refused)."""
    AdminClient.from_ctx().post(f"/v1/approvals/{approval_id}/cancel", json={"reason": reason})
    typer.echo(f"{approval_id}: cancelled")


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
