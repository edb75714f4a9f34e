"""What every CLI command shares: the admin client, output helpers, errors."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import typer

from ..config import Config, ConfigError, load


@dataclass
class CliState:
    admin: str | None = None
    admin_token: str | None = None
    config: str | None = None
    token: str | None = None          # an agent's gateway token (hook, mcp wrap)


state = CliState()


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"airlock: {message}", err=True)
    raise typer.Exit(code)


def load_config(path: str | None = None) -> Config:
    try:
        return load(path or state.config)
    except ConfigError as e:
        fail(str(e), 2)
        raise AssertionError("unreachable")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


class AdminClient:
    """Talks to a running Airlock's admin API; every failure is a clear message and an exit code."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"authorization": f"Bearer {token}"} if token else {})

    @classmethod
    def for_agent(cls) -> "AdminClient":
        """For agent-facing commands: the agent's gateway token (``--token``) when given, else the admin
        token. The admin API takes gateway tokens on the routes agents need (``/v1/check``)."""
        return cls.from_ctx(token=state.token)

    @classmethod
    def from_ctx(cls, token: str | None = None) -> "AdminClient":
        url = state.admin or os.environ.get("AIRLOCK_ADMIN_URL")
        token = token or state.admin_token or os.environ.get("AIRLOCK_ADMIN_TOKEN")
        if not url or not token:
            cfg = load_config()
            url = url or cfg.admin_url()
            if not token:
                token = cfg.admin_token()
                if not token:
                    from ..admin.app import admin_token_file
                    f = admin_token_file(cfg)
                    token = f.read_text().strip() if f.exists() else None
        return cls(url, token)

    def request(self, method: str, path: str, **kw) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            fail(f"cannot reach Airlock's admin API at {self.base_url}: start it with 'airlock run' "
                 "or pass --admin URL", 3)
        except httpx.HTTPError as e:
            fail(f"admin API {method} {path} failed: {e}", 3)
        if r.status_code == 401:
            fail("the admin API refused the admin token: pass --admin-token or set AIRLOCK_ADMIN_TOKEN", 3)
        try:
            data = r.json()
        except ValueError:
            data = r.text
        if r.status_code >= 400:
            msg = data.get("error", {}).get("message") if isinstance(data, dict) and \
                isinstance(data.get("error"), dict) else data
            fail(f"{msg} (HTTP {r.status_code})", 1)
        return data

    def get(self, path: str, params: dict | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def stream(self, method: str, path: str, **kw):
        """A streaming response (exports); the caller iterates ``iter_bytes()``."""
        return self.http.stream(method, path, **kw)
