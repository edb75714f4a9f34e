"""The sidecar pattern end to end, in a private network namespace standing in for a pod.

Inside the namespace: Airlock (``airlock run --sidecar``, root) and an "agent" (curl running
as uid 65534). ``airlock sidecar rules --apply`` redirects the agent's outbound 80/443 to
Airlock's transparent listener. On the host side of a veth pair, a TLS server with its own CA
stands in for the provider (it replays a recorded OpenAI stream) and for an unrelated host.

The agent is configured with nothing but trust in Airlock's CA (CURL_CA_BUNDLE, as
``airlock env`` exports it) and its gateway token as its API key.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from proxy import ca_install
from tests.deploy.certs import start_tls_upstream
from tests.deploy.netns import Netns, available
from tests.harness import ROOT, Airlock, wait_until
from tests.upstreams import stream_bytes

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

PROVIDER = "api.provider.test"
OTHER = "other.test"
AGENT_UID = 65534
RECORDING = "openai-chat-text-include-usage"
PROVIDER_KEY = "sk-provider-secret-for-sidecar-test"
SIDECAR_PORT = 15001
POLICY = """
version: "1.0"
defaults: {action: allow, justification: none}
models:
  - match: {account: acme}
    allow: ["gpt-4o"]
"""


@pytest.fixture
def public_dir():
    """A folder the unprivileged agent can read (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="airlock-sidecar-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pod(public_dir, tmp_path):
    """(namespace, stand-in provider, Airlock, public dir) with the sidecar rules applied.
    Torn down in reverse order even when a step fails."""
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(Netns(host_names=[PROVIDER, OTHER]))
        upstream, up_ca = start_tls_upstream(ns.host_ip, 443, [PROVIDER, OTHER], tmp_path / "upstream-tls")
        stack.callback(upstream.stop)
        shutil.copy(up_ca, public_dir / "upstream-ca.pem")
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        config = {
            "listen": {"gateway": None, "proxy": None, "sidecar": f"0.0.0.0:{SIDECAR_PORT}"},
            "policies": [str(policy)],
            "providers": {"openai": {"base_url": f"https://{PROVIDER}/{RECORDING}/v1",
                                     "api_key_env": "OPENAI_API_KEY"}},
            "tls": {"ssl_insecure": True},     # the stand-in provider's certificate is self-signed
        }
        airlock = Airlock(config, env={"OPENAI_API_KEY": PROVIDER_KEY}, workdir=tmp_path / "airlock",
                          args=["--sidecar"])
        stack.callback(airlock.stop)
        with ns.entered():                     # Airlock starts inside the pod's namespace
            airlock.start()
        # what the init container of the Kubernetes example does
        ns.exec(sys.executable, "-m", "proxy.cli.main", "sidecar", "rules", "--agent-uid", str(AGENT_UID),
                "--proxy-port", str(SIDECAR_PORT), "--proxy-uid", "0", "--apply", env={"PYTHONPATH": str(ROOT)})
        ca_install.write_bundle(airlock.ca_path, public_dir / "ca-bundle.pem")
        shutil.copy(airlock.ca_path, public_dir / "airlock-ca.pem")
        yield ns, upstream, airlock, public_dir


CURL_CERT_UNTRUSTED = 60          # curl's exit code for "SSL certificate problem"


def agent_curl(ns: Netns, url: str, *args: str, ca: Path) -> tuple[int, str]:
    """curl as the agent user: no proxy settings, only a CA bundle in CURL_CA_BUNDLE.
    Returns (HTTP status, body), or (-curl exit code, stderr) when no response came back."""
    res = ns.exec("curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", *args, url,
                  uid=AGENT_UID, env={"CURL_CA_BUNDLE": str(ca)}, check=False)
    if res.returncode != 0:
        return -res.returncode, res.stderr
    body, _, status = res.stdout.rpartition("\n")
    return int(status), body


def chat(token: str | None, model: str = "gpt-4o") -> list[str]:
    args = ["-X", "POST", "-H", "content-type: application/json",
            "-d", json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "hi"}]})]
    if token:
        args += ["-H", f"authorization: Bearer {token}"]
    return args


def test_agent_https_call_is_intercepted_decided_and_audited(pod):
    ns, upstream, airlock, public = pod
    with ns.entered():
        token = airlock.mint("acme", agent="sidecar-agent")
    url = f"https://{PROVIDER}/{RECORDING}/v1/chat/completions"

    # 1. allowed: Airlock terminated TLS with its CA, swapped the gateway token for the provider key
    status, body = agent_curl(ns, url, *chat(token), ca=public / "ca-bundle.pem")
    assert status == 200, body
    assert body.encode() == stream_bytes(RECORDING)
    seen = upstream.requests[-1]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == f"/{RECORDING}/v1/chat/completions"
    assert headers.get("authorization") == f"Bearer {PROVIDER_KEY}", headers
    assert token not in json.dumps(headers)

    # 2. decided: no token / a forged token is refused by Airlock and never reaches the provider
    before = len(upstream.requests)
    status, body = agent_curl(ns, url, *chat(None), ca=public / "ca-bundle.pem")
    assert status == 401, body
    assert "gateway token" in body
    status, body = agent_curl(ns, url, *chat("alk_0000000000000000_forgedforgedforgedforged"),
                              ca=public / "ca-bundle.pem")
    assert status == 401, body
    # ... and so is a model the policy does not allow for this account
    status, body = agent_curl(ns, url, *chat(token, model="o1-preview"), ca=public / "ca-bundle.pem")
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "model_not_allowed"
    assert len(upstream.requests) == before

    # 3. the agent cannot skip Airlock: trusting only the provider's real CA fails, because the
    #    connection is intercepted whether the agent wants it or not
    status, err = agent_curl(ns, url, *chat(token), ca=public / "upstream-ca.pem")
    assert status == -CURL_CERT_UNTRUSTED, err

    # 4. audited: one row per call, on the sidecar listener, without the token or the provider key
    with ns.entered():
        rows = wait_until(lambda: _sidecar_rows(airlock, 4), 30, "4 sidecar audit rows")
    rows = rows[:4]     # in call order; a refused TLS handshake (step 3) sends no request to audit
    assert [r["status"] for r in rows] == [200, 401, 401, 403], rows
    ok = rows[0]
    assert (ok["account"], ok["agent"], ok["route_kind"], ok["route_name"]) == \
        ("acme", "sidecar-agent", "openai", "openai"), ok
    assert ok["path"] == "/chat/completions"
    assert [r["outcome"] for r in rows[1:]] == ["invalid_token", "invalid_token", "model_not_allowed"], rows
    with ns.entered():
        everything = airlock.admin("POST", "/v1/audit/query", {"sql": "SELECT * FROM events"}).text
    assert '"sidecar"' in everything
    assert token not in everything and PROVIDER_KEY not in everything


def test_ungoverned_hosts_and_other_users_pass_through(pod):
    ns, upstream, airlock, public = pod
    # a host Airlock does not govern: TLS is relayed untouched, so its real certificate verifies
    status, body = agent_curl(ns, f"https://{OTHER}/json/ping", ca=public / "upstream-ca.pem")
    assert status == 200, body
    assert json.loads(body)["path"] == "/json/ping"
    assert upstream.requests[-1]["path"] == "/json/ping"
    # ... and no certificate was minted for it: Airlock's CA alone does not verify it
    status, err = agent_curl(ns, f"https://{OTHER}/json/ping", ca=public / "airlock-ca.pem")
    assert status == -CURL_CERT_UNTRUSTED, err
    # a user the rules do not name (root here) reaches the provider directly, real certificate and all
    res = ns.exec("curl", "-sS", "--max-time", "20", "--cacert", str(public / "upstream-ca.pem"),
                  f"https://{PROVIDER}/json/direct")
    assert json.loads(res.stdout)["path"] == "/json/direct"


def _sidecar_rows(airlock: Airlock, n: int) -> list[dict] | None:
    r = airlock.admin("POST", "/v1/audit/query", {
        "sql": "SELECT ts, kind, listener, account, agent, route_kind, route_name, path, outcome, status, data "
               "FROM events WHERE kind = 'request' AND listener = 'sidecar' ORDER BY ts"})
    r.raise_for_status()
    rows = r.json()["rows"]
    return rows if len(rows) >= n else None
