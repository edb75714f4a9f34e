"""``airlock db migrate``: apply the ClickHouse schema migrations (also done at every start-up)."""
from __future__ import annotations

from typing import Optional

import typer

from .common import emit_json, fail, load_config

db_app = typer.Typer(help="The audit database (ClickHouse / chDB).", no_args_is_help=True)


@db_app.command("migrate")
def migrate(
    dsn: Optional[str] = typer.Option(None, "--dsn", help="ClickHouse DSN (default: audit.clickhouse)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply pending migrations from schema/migrations in order."""
    from ..audit.migrate import MigrationError, applied, migrate as run, migrations
    from ..audit.clickhouse import connect, redacted_dsn
    target = dsn or load_config().clickhouse_dsn()
    try:
        client = connect(target)
    except Exception as e:  # noqa: BLE001 - driver errors
        msg = str(e).splitlines()[0][:300]
        hint = ("a running Airlock holds this chDB directory and applies migrations at start-up; stop it or "
                "use its admin API") if target.startswith("chdb://") else "check audit.clickhouse and that the server is up"
        fail(f"cannot open {redacted_dsn(target)}: {msg} ({hint})")
    try:
        done = run(client)
        versions = sorted(applied(client))
    except MigrationError as e:
        fail(str(e))
    finally:
        client.close()
    known = [f"{v:04d}_{n}" for v, n, _ in migrations()]
    if as_json:
        emit_json({"dsn": redacted_dsn(target), "applied_now": done, "versions": versions, "known": known})
    else:
        typer.echo(f"{redacted_dsn(target)}: {len(done)} migration(s) applied"
                   + (f" ({', '.join(done)})" if done else "") + f"; schema at version {max(versions or [0]):04d}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
