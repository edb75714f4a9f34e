"""The admin listener: health, metrics, keys, and the routes of each area.

Every route except ``/healthz`` (and the public prefixes an area declares, such
as signed one-tap approval links) needs ``Authorization: Bearer <admin token>``.
The token comes from the env var ``auth.admin_token_env``; when it is not set,
Airlock generates one at start-up into ``<data_dir>/admin-token`` (mode 0600),
where the CLI finds it.
"""
from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..config import Config, split_hostport
from ..identity import Keys, TokenError
from ..modules import optional
from . import keys as keys_routes

log = logging.getLogger(__name__)
AREAS = ["policy", "check", "approvals", "audit", "sessions", "gateway"]


def admin_token_file(cfg: Config) -> Path:
    return cfg.path(cfg.data_dir) / "admin-token"


def resolve_admin_token(cfg: Config) -> str:
    token = cfg.admin_token()
    if token:
        return token
    f = admin_token_file(cfg)
    if f.exists():
        return f.read_text().strip()
    f.parent.mkdir(parents=True, exist_ok=True)
    token = "adm_" + secrets.token_urlsafe(24)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


ADMIN_TOKEN_REQUIRED = "admin token required: pass --admin-token or set AIRLOCK_ADMIN_TOKEN"


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "status": status}}, status=status)


def bearer(request: web.Request) -> str:
    """The request's ``Authorization: Bearer`` credential ("" when there is none)."""
    given = request.headers.get("authorization", "")
    return given[7:].strip() if given[:7].lower() == "bearer " else ""


def is_admin(request: web.Request, token: str) -> bool:
    cred = bearer(request)
    return bool(cred) and hmac.compare_digest(cred, token)


def build_app(airlock, cfg: Config) -> web.Application:
    rt = airlock.rt
    token = resolve_admin_token(cfg)
    public = ["/healthz"]
    agent_paths: set[str] = set()          # routes agents' hooks call: an admin OR a gateway token
    keys = rt.services.setdefault("keys", Keys(rt.store))
    route_defs: list = []
    for area in AREAS:
        mod = optional(f"proxy.admin.{area}")
        if mod is None:
            continue
        route_defs += mod.routes(rt)
        public += list(getattr(mod, "PUBLIC_PREFIXES", []))
        agent_paths.update(getattr(mod, "AGENT_PATHS", []))

    @web.middleware
    async def auth(request: web.Request, handler):
        if not any(request.path == p or (p.endswith("/") and request.path.startswith(p)) for p in public):
            if not is_admin(request, token):
                cred = bearer(request)
                if request.path not in agent_paths or not cred.startswith("alk_"):
                    return json_error(401, ADMIN_TOKEN_REQUIRED)
                try:                  # agent-facing routes also take the caller's own gateway token
                    request["identity"] = await keys.verify(cred)
                except TokenError as e:
                    return json_error(401, str(e))
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as e:               # never a traceback to the caller
            log.exception("admin %s %s failed", request.method, request.path)
            return json_error(500, f"{type(e).__name__}: {e}")

    app = web.Application(middlewares=[auth], client_max_size=16 * 1024 * 1024)
    app["airlock"] = airlock
    app["rt"] = rt

    async def healthz(_):
        return web.json_response({"status": "ok"})

    async def readyz(_):
        ok = airlock.ready
        checks = {"listeners": airlock.ready}
        try:
            await rt.store.get("airlock:ready-probe")
            checks["store"] = True
        except Exception:
            checks["store"] = ok = False
        healthy = getattr(rt.audit, "healthy", None)
        checks["audit"] = bool(healthy()) if callable(healthy) else True
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    async def metrics(_):
        return web.Response(body=generate_latest(), headers={"content-type": CONTENT_TYPE_LATEST})

    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics),
                    *keys_routes.routes(rt), *route_defs])
    return app


async def start_admin(airlock, cfg: Config, unix: Path | None = None):
    """The admin API on ``listen.admin``, or on the Unix socket ``unix`` (a worker under a supervisor)."""
    addr = cfg.listen.get("admin")
    if not addr and unix is None:
        return None
    runner = web.AppRunner(build_app(airlock, cfg), access_log=None)
    await runner.setup()
    if unix is not None:
        unix.parent.mkdir(parents=True, exist_ok=True)
        await web.UnixSite(runner, str(unix)).start()
        os.chmod(unix, 0o600)
    else:
        host, port = split_hostport(addr, "listen.admin", cfg.source)
        await web.TCPSite(runner, host, port, backlog=512).start()
    return runner
