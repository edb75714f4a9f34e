"""Real parts for the tests: redis-server, Airlock as a process, aimock.

Nothing here fakes a dependency: each helper starts the real program on a free
loopback port and waits (polling with a deadline) until it answers.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]


_HANDED_OUT: set[int] = set()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range: a port from ``bind(0)`` is an ephemeral
    one, which any outgoing connection (a test's client, Airlock's upstream) may take as its source port
    before the program we start binds it (seen: ``address already in use`` at start-up). Ports below the
    range are never handed out that way. Each port is given once per test process."""
    import random
    hi = _ephemeral_start() - 1
    lo = max(1025, hi - 12000)
    for _ in range(200):
        port = random.randint(lo, hi)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:                  # the range is crowded: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """Poll ``pred`` until it returns a truthy value; raise with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polling
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class RecordingAudit:
    """Airlock's own AuditSink interface keeping events in a list, for addon unit tests that read
    what an addon wrote (tests that need the real trail use chDB through a running Airlock)."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind, **fields):
        self.events.append((kind, fields))

    def kinds(self):
        return [k for k, _ in self.events]

    def of(self, kind):
        return [f for k, f in self.events if k == kind]

    async def start(self):
        pass

    async def close(self):
        pass


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="airlock-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server is not installed: run 'make setup'")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(port=self.port)
        wait_until(lambda: client.ping(), 10, "redis-server")
        client.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Aimock:
    """@copilotkit/aimock, the third-party mock model server (OpenAI Chat/Responses, Anthropic)."""

    def __init__(self, fixtures: Path | None = None, chunk_size: int = 8, latency_ms: int = 0):
        self.port = free_port()
        self.fixtures = fixtures or ROOT / "tests" / "fixtures" / "aimock"
        self.args = ["-c", str(chunk_size), "-l", str(latency_ms)]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Aimock":
        cli = ROOT / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
        if not cli.exists():
            raise RuntimeError("aimock is not installed: run 'make setup' (npm install)")
        self.proc = subprocess.Popen(["node", str(cli), "-p", str(self.port), "-h", "127.0.0.1", "-f",
                                      str(self.fixtures), "--log-level", "warn", *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 20, "aimock")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Airlock:
    """``airlock run`` in a subprocess on free ports, with its own work dir."""

    def __init__(self, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workdir: Path | str | None = None, args: list[str] | None = None):
        self.config = dict(config or {})
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="airlock-test-"))
        self.env = dict(env or {})
        self.args = list(args or [])
        self.admin_token = self.env.get("AIRLOCK_ADMIN_TOKEN") or "adm_test_" + secrets.token_hex(8)
        listen = dict(self.config.get("listen") or {})
        for key in ("gateway", "proxy", "admin"):
            listen.setdefault(key, f"127.0.0.1:{free_port()}")
        self.config["listen"] = listen
        self.config.setdefault("policies", [])
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def _url(self, key: str) -> str:
        return f"http://{self.config['listen'][key]}"

    @property
    def gateway_url(self) -> str:
        return self._url("gateway")

    @property
    def proxy_url(self) -> str:
        return self._url("proxy")

    @property
    def admin_url(self) -> str:
        return self._url("admin")

    @property
    def config_path(self) -> Path:
        return self.workdir / "airlock.yaml"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "var" / "ca" / "mitmproxy-ca-cert.pem"

    @property
    def log_path(self) -> Path:
        return self.workdir / "airlock.log"

    def cli_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "AIRLOCK_ADMIN_TOKEN": self.admin_token,
               "AIRLOCK_ADMIN_URL": self.admin_url, "AIRLOCK_CONFIG": str(self.config_path)}
        return env

    def start(self, timeout: float = 60.0) -> "Airlock":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy.cli.main", "run", "-c", str(self.config_path),
                                      *self.args], cwd=self.workdir, env=self.cli_env(), stdout=self._log,
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            r = httpx.get(self.admin_url + "/readyz", headers=self.admin_headers, timeout=1)
            return r.status_code == 200

        try:
            state = wait_until(ready, timeout, "airlock /readyz")
        except Exception:
            self.stop()
            raise RuntimeError(f"airlock did not become ready:\n{self.logs()}") from None
        if state == "exited":
            self.stop()
            raise RuntimeError(f"airlock exited with {self.returncode}:\n{self.logs()}")
        return self

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_token}"}

    def admin(self, method: str, path: str, json: Any = None, **kw) -> httpx.Response:
        return httpx.request(method, self.admin_url + path, json=json, headers=self.admin_headers,
                             timeout=kw.pop("timeout", 30), **kw)

    def mint(self, account: str = "acme", **claims) -> str:
        r = self.admin("POST", "/v1/keys", {"account": account, **claims})
        r.raise_for_status()
        return r.json()["token"]

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        if getattr(self, "_log", None):
            self._log.close()
        return self.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: Path | str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the ``airlock`` CLI as a user would; returns the completed process (text mode)."""
    return subprocess.run([sys.executable, "-m", "proxy.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, cwd=cwd, timeout=timeout)
