"""A private network namespace joined to the host by a veth pair (root only).

    host side  <veth-h> 10.250.R.1/30   (the stand-in provider listens here)
    namespace  <veth-n> 10.250.R.2/30   (the "pod": Airlock + the agent)

``ip netns exec`` bind-mounts ``/etc/netns/<name>/hosts`` over /etc/hosts, so the
agent resolves provider names without any agent-side setting. Everything is
removed by :meth:`close` (deleting the namespace drops its iptables rules and the
veth pair), also when the test failed.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path


def available() -> str | None:
    """Why the namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "setpriv", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make setup installs iproute2, iptables, util-linux, curl)"
    return None


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


class Netns:
    def __init__(self, host_names: list[str] | None = None):
        """``host_names`` resolve, inside the namespace, to the host end of the veth pair."""
        tag = secrets.token_hex(3)
        self.name = f"airlock-t-{tag}"
        self.veth_host, self.veth_ns = f"alh{tag}", f"aln{tag}"
        used = _sh("ip", "-4", "-o", "addr").stdout
        octet = next(n for n in (secrets.randbelow(250) + 1 for _ in range(64)) if f"10.250.{n}." not in used)
        self.host_ip, self.ns_ip = f"10.250.{octet}.1", f"10.250.{octet}.2"
        self.host_names = list(host_names or [])
        self.etc = Path("/etc/netns") / self.name

    def open(self) -> "Netns":
        try:
            _sh("ip", "netns", "add", self.name)
            _sh("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
            _sh("ip", "link", "set", self.veth_ns, "netns", self.name)
            _sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host)
            _sh("ip", "link", "set", self.veth_host, "up")
            self.exec("ip", "link", "set", "lo", "up")
            self.exec("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.veth_ns)
            self.exec("ip", "link", "set", self.veth_ns, "up")
            self.etc.mkdir(parents=True, exist_ok=True)
            names = " ".join(self.host_names)
            (self.etc / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{self.host_ip} {names}\n")
        except Exception:
            self.close()
            raise
        return self

    def close(self) -> None:
        _sh("ip", "netns", "del", self.name, check=False)
        _sh("ip", "link", "del", self.veth_host, check=False)     # gone with the namespace; belt and braces
        shutil.rmtree(self.etc, ignore_errors=True)

    def __enter__(self) -> "Netns":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def exec(self, *cmd: str, uid: int | None = None, env: dict[str, str] | None = None, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the namespace, as ``uid`` (no supplementary groups) when given."""
        argv = ["ip", "netns", "exec", self.name]
        if uid is not None:
            argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        argv += list(cmd)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **(env or {})})
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed in {self.name} ({res.returncode}): "
                               f"{res.stderr.strip() or res.stdout.strip()}")
        return res

    @contextlib.contextmanager
    def entered(self):
        """Move the calling thread into the namespace (as a sidecar container sits in the pod's)
        and back on exit. Processes started meanwhile live in the namespace."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        ns = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            os.setns(ns, os.CLONE_NEWNET)
            yield self
        finally:
            os.setns(back, os.CLONE_NEWNET)
            os.close(ns)
            os.close(back)
