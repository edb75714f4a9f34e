"""``airlock run``: the mitmproxy Master on uvloop with Airlock's addon chain.

Three listeners at once (gateway = reverse, proxy = explicit HTTPS proxy,
admin = aiohttp), plus the transparent sidecar listener when asked. SIGTERM /
SIGINT: stop accepting, let in-flight requests and streams finish (bounded by
``limits.drain_seconds``), flush the audit queue, exit 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mitmproxy import options
from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig, update_alt_svc
from mitmproxy.master import Master

from . import mitm_patches
from .chain import AddonChain
from .config import Config, ConfigError, split_hostport
from .modules import optional
from .runtime import Runtime
from .store import open_store

log = logging.getLogger("airlock")

# The addon chain, in order. A module that does not exist (yet) is skipped.
ADDON_CHAIN = ["routing", "identity", "mcp", "approvals", "gateway", "metering", "streaming", "audit", "metrics"]
# Placeholder reverse target: the routing addon always re-points gateway flows, so this is never contacted.
_REVERSE_PLACEHOLDER = "http://127.0.0.1:9"


class NullAudit:
    """Used only when the audit package is missing: counts what it cannot keep."""

    def __init__(self):
        self.dropped = 0

    def emit(self, kind, **fields):
        self.dropped += 1

    async def start(self):
        log.warning("no audit writer available: audit events are counted and dropped")

    async def close(self):
        pass

    def query(self, sql, params=None):
        return []

    def healthy(self):
        return False


def build_runtime(cfg: Config) -> Runtime:
    data = cfg.path(cfg.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg.redis, persist_path=data / "store.json")
    audit_mod = optional("proxy.audit")
    audit = audit_mod.open_audit(cfg) if audit_mod and hasattr(audit_mod, "open_audit") else NullAudit()
    rt = Runtime(config=cfg, store=store, audit=audit)
    sessions_mod = optional("proxy.sessions")
    if sessions_mod is not None:
        sessions_mod.service(rt)            # ended-session checks for the identity addon
    policy_mod = optional("proxy.policy")
    if policy_mod is not None and hasattr(policy_mod, "PolicyHolder"):
        paths = [str(cfg.path(p)) for p in cfg.policies]
        rt.policy = policy_mod.PolicyHolder(paths, on_event=audit.emit)
    return rt


def load_addons(rt: Runtime) -> list:
    out = []
    for name in ADDON_CHAIN:
        mod = optional(f"addons.{name}")
        if mod is None:
            continue
        cls = getattr(mod, "".join(p.capitalize() for p in name.split("_")))
        out.append(cls(rt))
    return out


def ca_dir(cfg: Config) -> Path:
    return cfg.path(cfg.data_dir) / "ca"


def ca_cert_path(cfg: Config) -> Path:
    return ca_dir(cfg) / "mitmproxy-ca-cert.pem"


def ensure_ca(cfg: Config) -> Path:
    """Create Airlock's CA on first use (mitmproxy's CertStore format) and return the cert path."""
    from mitmproxy import certs
    d = ca_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    certs.CertStore.from_store(d, "mitmproxy", 2048)
    return ca_cert_path(cfg)


def modes(cfg: Config, sidecar: bool = False) -> list[str]:
    out = []
    if cfg.listen.get("gateway"):
        host, port = split_hostport(cfg.listen["gateway"], "listen.gateway", cfg.source)
        out.append(f"reverse:{_REVERSE_PLACEHOLDER}@{host}:{port}")
    if cfg.listen.get("proxy"):
        host, port = split_hostport(cfg.listen["proxy"], "listen.proxy", cfg.source)
        out.append(f"regular@{host}:{port}")
    if sidecar:
        host, port = split_hostport(cfg.listen.get("sidecar") or "0.0.0.0:8082", "listen.sidecar", cfg.source)
        out.append(f"transparent@{host}:{port}")
    return out


def check_ports(cfg: Config, sidecar: bool = False, reuse_port: bool = False) -> None:
    """Fail fast, before anything starts, when a listener's address is taken."""
    import socket
    keys = ["gateway", "proxy", "admin"] + (["sidecar"] if sidecar else [])
    for key in keys:
        value = cfg.listen.get(key) or ("0.0.0.0:8082" if key == "sidecar" else None)
        if not value:
            continue
        host, port = split_hostport(value, f"listen.{key}", cfg.source)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise StartupError(f"listen.{key} {value}: {e.strerror or e}; stop the other process or pick "
                                   f"another address (--{key} HOST:PORT or listen.{key} in {cfg.source})") from None


class StartupError(Exception):
    """A clear reason why Airlock cannot start (exit code 2)."""


class _Lifecycle:
    """Last in the chain: says when every listener is up, and counts requests in flight
    (from request headers to the end of the response or an error) for the drain."""

    def __init__(self, airlock: "Airlock"):
        self.airlock = airlock
        self.in_flight: set[str] = set()

    def running(self) -> None:
        self.airlock.started()

    def requestheaders(self, flow) -> None:
        self.in_flight.add(flow.id)

    def response(self, flow) -> None:
        self.in_flight.discard(flow.id)

    def error(self, flow) -> None:
        self.in_flight.discard(flow.id)


class Airlock:
    """One running Airlock process."""

    def __init__(self, cfg: Config, sidecar: bool = False, worker: int | None = None):
        self.cfg = cfg
        self.sidecar = sidecar
        self.worker = worker                   # index under ``--workers`` (proxy.workers), else None
        self.reuse_port = worker is not None
        self.rt: Runtime | None = None
        self.master: Master | None = None
        self.admin_runner = None
        self.ready = False
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        cfg = self.cfg
        mitm_patches.apply(reuse_port=self.reuse_port)
        self.rt = rt = build_runtime(cfg)
        await rt.store.start()
        await rt.audit.start()
        if rt.policy is not None:
            ok, err = rt.policy.reload()
            if not ok:
                raise SystemExit(f"airlock: policy error: {err}")
            self._tasks.append(asyncio.get_running_loop().create_task(rt.policy.watch()))
        ensure_ca(cfg)
        opts = options.Options()
        self.master = m = Master(opts)
        self.lifecycle = _Lifecycle(self)
        self.errorcheck = errorcheck.ErrorCheck(repeat_errors_on_stderr=True)
        # mitmproxy's own flow addons ride in the chain too: one dispatch per event for all of them
        m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                     self.errorcheck,
                     AddonChain([disable_h2c.DisableH2C(), update_alt_svc.UpdateAltSvc(), *load_addons(rt),
                                 self.lifecycle]))
        opts.update(
            mode=modes(cfg, self.sidecar),
            confdir=str(ca_dir(cfg)),
            connection_strategy="lazy",
            tcp_timeout=int(max(cfg.upstream_timeout, 3600)),
            # routing answers 413 in the caller's shape from Content-Length; mitmproxy's own limit is only
            # the backstop for bodies without one, so it sits above ours (and nothing below it is streamed
            # past the hooks undecided)
            body_size_limit=str(4 * cfg.max_body_bytes),
            ssl_insecure=cfg.ssl_insecure,
            stream_large_bodies=str(4 * cfg.max_body_bytes),
        )
        from .admin.app import start_admin
        if self.worker is None:
            self.admin_runner = await start_admin(self, cfg)
        else:                                  # the supervisor serves the admin address for all workers
            from .workers import socket_path
            self.admin_runner = await start_admin(self, cfg, unix=socket_path(cfg, self.worker))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.worker is None:                # the supervisor checked them for its workers
            check_ports(self.cfg, self.sidecar)
        await self.start()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, lambda: loop.create_task(self.stop()))
        try:
            await self.master.run()
        finally:
            if not self._stopping:               # start-up failed inside mitmproxy: still flush and close
                self._stopping = True
                await self._close_runtime()
        return 0

    def started(self) -> None:
        self.ready = True
        # ErrorCheck only matters during start-up; afterwards it would cost a dispatch per event
        asyncio.get_running_loop().call_later(1.0, self._drop_errorcheck)
        mitm_patches.freeze_heap()
        if self.worker is None:
            print(self.banner(), file=sys.stderr, flush=True)
        else:
            log.info("worker %d ready (pid %d)", self.worker, os.getpid())

    def _drop_errorcheck(self) -> None:
        try:
            if self.master is not None and self.master.addons.get("errorcheck") is not None:
                self.master.addons.remove(self.errorcheck)
        except Exception:  # noqa: BLE001 - harmless if it stays
            log.debug("could not remove errorcheck", exc_info=True)

    def banner(self) -> str:
        cfg, rt = self.cfg, self.rt
        lines = ["Airlock is running"]
        for key in ("gateway", "proxy", "admin"):
            if cfg.listen.get(key):
                lines.append(f"  {key:<8} http://{cfg.listen[key]}")
        if self.sidecar:
            lines.append(f"  sidecar  {cfg.listen.get('sidecar') or '0.0.0.0:8082'} (transparent)")
        lines.append(f"  CA       {ca_cert_path(cfg)}")
        lines.append(f"  store    {'redis ' + _redact_url(cfg.redis) if cfg.redis else 'in-process'}")
        lines.append(f"  audit    {_redact_url(cfg.clickhouse)}")
        if rt.policy is not None:
            eng = rt.policy.engine
            lines.append(f"  policies {', '.join(getattr(eng, 'source_files', []) or cfg.policies) or '(none)'}")
        lines.append(f"  routes   {', '.join(sorted(cfg.providers))} -> /<provider>/v1/..., MCP: "
                     f"{', '.join('/mcp/' + n for n in cfg.mcp_servers) or '(none)'}")
        return "\n".join(lines)

    async def stop(self, code: int = 0) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.exit_code = code
        self.ready = False
        m = self.master
        if m is not None:
            try:
                m.options.update(server=False)       # close listeners; live connections go on
            except Exception:
                log.exception("closing listeners")
            # wait for requests and streams in flight; idle keep-alive connections are simply closed
            deadline = time.monotonic() + self.cfg.drain_seconds
            while self.lifecycle.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.lifecycle.in_flight:
                log.warning("drain: %d requests still in flight after %ss; closing them",
                            len(self.lifecycle.in_flight), self.cfg.drain_seconds)
            await asyncio.sleep(0.1)             # let the last response bytes reach their sockets
        for t in self._tasks:
            t.cancel()
        await self._close_runtime()
        if m is not None:
            m.shutdown()

    async def _close_runtime(self) -> None:
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
            self.admin_runner = None
        if self.rt is not None:
            await self.rt.audit.close()
            await self.rt.store.close()


def _redact_url(url: str | None) -> str:
    if not url:
        return ""
    from urllib.parse import urlsplit, urlunsplit
    u = urlsplit(url)
    if u.password:
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    return url


def serve(cfg: Config, sidecar: bool = False, workers: int = 1) -> int:
    import uvloop

    from . import workers as wk
    index = wk.worker_index()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if index is None else \
        f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt)
    logging.getLogger("airlock").setLevel(logging.INFO)
    if index is None and workers > 1:
        return wk.supervise(cfg, workers, sidecar)
    app = Airlock(cfg, sidecar=sidecar, worker=index)
    try:
        uvloop.run(app.run())
    except (StartupError, ConfigError) as e:
        print(f"airlock: {e}", file=sys.stderr)
        return 2
    return getattr(app, "exit_code", 0)
