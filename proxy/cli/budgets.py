"""``airlock budgets list``: current spend per budget and scope value, through the admin API."""
from __future__ import annotations

from typing import Optional

import typer

from .common import AdminClient, emit_json, print_table

budgets_app = typer.Typer(help="Model budgets: what has been spent (and reserved) per scope value.",
                          no_args_is_help=True)


@budgets_app.command("list")
def list_budgets(
    budget: Optional[str] = typer.Option(None, "--budget", help="Only this budget (its policy name)."),
    scope_value: Optional[str] = typer.Option(None, "--scope-value", help="Only this account/subject/agent/..."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Spend of every budget counter in the current period (reservations of running calls included)."""
    params = {k: v for k, v in (("budget", budget), ("scope_value", scope_value)) if v}
    rows = AdminClient.from_ctx().get("/v1/budgets", params=params or None)["budgets"]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no budget has been used yet (budgets are defined under `budgets:` in the policy)", err=True)
        return
    print_table(rows, ["budget", "scope", "scope_value", "period", "bucket", "unit", "spent", "limit", "remaining",
                       "hard"])


def register(app: typer.Typer) -> None:
    app.add_typer(budgets_app, name="budgets")
