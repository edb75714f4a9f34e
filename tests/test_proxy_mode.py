"""Explicit HTTPS proxy mode: governed provider hosts are intercepted with Airlock's CA
and go through the same addons; every other host passes through untouched (no TLS
interception), so the rest of the machine keeps working."""
from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import Airlock
from tests.upstreams import Upstream

PROVIDER_KEY = "sk-provider-proxy-mode-key"


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "up.pem", tmp_path / "up.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return cert_path, ctx


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxymode")
    cert_path, ctx = self_signed(tmp)
    up = Upstream(tls=ctx).start()
    a = Airlock({"providers": {"openai": {"base_url": f"https://localhost:{up.port}/v1",
                                          "api_key_env": "PM_OPENAI_KEY"}},
                 "tls": {"ssl_insecure": True}},           # the test upstream's certificate is self-signed
                env={"PM_OPENAI_KEY": PROVIDER_KEY}, workdir=tmp / "airlock").start()
    token = a.mint("acme", agent="curl")
    yield a, up, cert_path, token
    a.stop()
    up.stop()


def curl(a: Airlock, url: str, cacert, *extra: str) -> tuple[int, str]:
    r = subprocess.run(["curl", "-sS", "-x", a.proxy_url, "--cacert", str(cacert), "-o", "-", "-w", "\n%{http_code}",
                        "-H", "content-type: application/json", "-d", "{}", *extra, url],
                       capture_output=True, text=True, timeout=30)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body + r.stderr


def test_governed_host_is_intercepted_and_handled_by_the_addons(setup):
    a, up, _, token = setup
    url = f"https://localhost:{up.port}/v1/json/chat/completions"
    up.requests.clear()
    code, body = curl(a, url, a.ca_path, "--proxy-user", f"agent:{token}")
    assert code == 200, body
    assert json.loads(body)["path"] == "/v1/json/chat/completions"
    seen = up.requests[-1]["headers"]
    assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"      # custody: the real key is injected
    assert token not in json.dumps(seen) and "proxy-authorization" not in seen


def test_governed_host_without_a_token_gets_401_from_airlock(setup):
    a, up, _, _ = setup
    up.requests.clear()
    code, body = curl(a, f"https://localhost:{up.port}/v1/json/x", a.ca_path)
    assert code == 401 and "gateway token" in body
    assert up.requests == []                                        # never reached the provider


def test_token_as_bearer_inside_the_tunnel_is_accepted(setup):
    a, up, _, token = setup
    code, body = curl(a, f"https://localhost:{up.port}/v1/json/x", a.ca_path, "-H", f"authorization: Bearer {token}")
    assert code == 200, body


def test_other_hosts_pass_through_without_interception(setup):
    a, up, upstream_cert, _ = setup
    other = f"https://127.0.0.1:{up.port}/v1/json/other"
    # the client sees the upstream's own certificate: only that CA validates it...
    code, body = curl(a, other, upstream_cert)
    assert code == 200, body
    # ...and Airlock's CA does not, so Airlock did not terminate TLS for this host
    code, body = curl(a, other, a.ca_path)
    assert code == 0 and "certificate" in body.lower()
