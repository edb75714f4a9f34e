"""Versioned ClickHouse migrations from ``schema/migrations/NNNN_name.sql``.

Applied in order at start-up (and by ``airlock db migrate``); each applied
version is recorded in ``schema_migrations``. The same DDL runs on chDB and on
a ClickHouse server. Statements in a file are separated by ``;`` at a line end.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("airlock.audit.migrate")

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
MIGRATIONS_DIR = SCHEMA_DIR / "migrations"
_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_COMMENT = re.compile(r"^\s*--.*$", re.MULTILINE)


class MigrationError(Exception):
    pass


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    out = []
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise MigrationError(f"{p}: migration files are named NNNN_name.sql")
        out.append((int(m.group(1)), m.group(2), p))
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return out


def statements(sql: str) -> list[str]:
    body = _COMMENT.sub("", sql)
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


def applied(client: Any) -> set[int]:
    client.command("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                   "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version")
    return {int(r[0]) for r in client.query("SELECT version FROM schema_migrations").result_rows}


def migrate(client: Any, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied. Returns the names applied now."""
    done = applied(client)
    now: list[str] = []
    for version, name, path in migrations(directory):
        if version in done:
            continue
        for stmt in statements(path.read_text()):
            try:
                client.command(stmt)
            except Exception as e:  # the driver raises several types; all mean the same here
                raise MigrationError(f"migration {path.name} failed: {e}") from e
        client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
        log.info("audit: applied migration %04d_%s", version, name)
        now.append(f"{version:04d}_{name}")
    return now
