"""``airlock ca install|uninstall`` against a real update-ca-certificates run in a sandboxed store,
and the CA bundle that ``airlock env`` hands to agents."""
from __future__ import annotations

import shutil
import socket
import ssl
import threading

import pytest

from proxy import ca_install
from tests.deploy.certs import make_ca_and_leaf
from tests.harness import run_cli

needs_debian_store = pytest.mark.skipif(shutil.which("update-ca-certificates") is None,
                                        reason="update-ca-certificates (package ca-certificates) not installed")


def sandbox_store(root, system_ca) -> ca_install.TrustStore:
    """Debian's layout under ``root`` holding one distribution CA: same tool, same steps, no change
    to this machine's trust."""
    for d in ("share", "local", "etc", "hooks"):
        (root / d).mkdir(parents=True)
    shutil.copy(system_ca, root / "share" / "distro-ca.crt")
    (root / "ca-certificates.conf").write_text("distro-ca.crt\n")
    return ca_install.TrustStore.debian(
        local_dir=root / "local", bundle=root / "etc" / "ca-certificates.crt",
        refresh_args=["--certsconf", str(root / "ca-certificates.conf"), "--certsdir", str(root / "share"),
                      "--localcertsdir", str(root / "local"), "--etccertsdir", str(root / "etc"),
                      "--hooksdir", str(root / "hooks")])


def handshake_ok(bundle, leaf, key, host: str = "api.provider.test") -> bool:
    """A real TLS handshake against a server presenting ``leaf``, verified with ``bundle`` only."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(leaf, key)
    client_ctx = ssl.create_default_context(cafile=str(bundle))
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve():
        conn, _ = lsock.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=host):
                return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        t.join(10)
        lsock.close()


@needs_debian_store
def test_install_makes_the_ca_trusted_and_uninstall_undoes_it(tmp_path):
    distro_ca, _, _ = make_ca_and_leaf(tmp_path / "distro", ["real.example"])
    ca, leaf, key = make_ca_and_leaf(tmp_path / "pki", ["api.provider.test"])
    store = sandbox_store(tmp_path / "store", distro_ca)
    msg = ca_install.install(ca, store)
    assert str(store.anchor) in msg and "undo: airlock ca uninstall" in msg
    assert "NODE_EXTRA_CA_CERTS" in msg                          # Node ignores the system store
    assert store.bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert handshake_ok(store.bundle, leaf, key)
    # installing again replaces, never duplicates
    ca_install.install(ca, store)
    assert store.bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 2

    msg = ca_install.uninstall(store)
    assert "removed" in msg and not store.anchor.exists()
    assert store.bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 1
    assert not handshake_ok(store.bundle, leaf, key)
    assert "nothing to do" in ca_install.uninstall(store)


def test_only_the_certificate_is_copied_never_the_key(tmp_path):
    ca, _, key = make_ca_and_leaf(tmp_path / "pki", ["x.test"])
    combined = tmp_path / "mitmproxy-ca.pem"                     # mitmproxy's key+cert file
    combined.write_bytes(key.read_bytes() + ca.read_bytes())
    cert = ca_install.read_certificate(combined)
    assert b"PRIVATE KEY" not in cert
    assert cert.strip() == ca.read_bytes().strip()


def test_bad_ca_files_are_explained(tmp_path):
    with pytest.raises(ca_install.CaInstallError, match="no such file.*airlock ca path"):
        ca_install.read_certificate(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ca_install.CaInstallError, match="no PEM certificate"):
        ca_install.install(junk, ca_install.TrustStore.debian(local_dir=tmp_path / "local"))
    assert not (tmp_path / "local").exists()                     # nothing written for a bad input


def test_refresh_failure_is_reported(tmp_path):
    ca, _, _ = make_ca_and_leaf(tmp_path / "pki", ["x.test"])
    store = ca_install.TrustStore("test", tmp_path / "anchors" / "airlock-ca.crt", ["false"])
    with pytest.raises(ca_install.CaInstallError, match="'false' failed"):
        ca_install.install(ca, store)


def test_bundle_keeps_the_system_cas_and_adds_airlocks(tmp_path):
    system_ca, sys_leaf, sys_key = make_ca_and_leaf(tmp_path / "system", ["real.example"])
    airlock_ca, leaf, key = make_ca_and_leaf(tmp_path / "airlock", ["api.provider.test"])
    out = ca_install.write_bundle(airlock_ca, tmp_path / "out" / "ca-bundle.pem", base=system_ca)
    assert handshake_ok(out, leaf, key)                               # intercepted hosts
    assert handshake_ok(out, sys_leaf, sys_key, "real.example")      # passed-through hosts
    before = out.stat().st_mtime_ns
    ca_install.write_bundle(airlock_ca, out, base=system_ca)          # unchanged: not rewritten
    assert out.stat().st_mtime_ns == before
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_cli_install_with_a_missing_ca_fails_cleanly(tmp_path):
    res = run_cli("ca", "install", "--ca", str(tmp_path / "missing.pem"))
    assert res.returncode == 1
    assert "no such file" in res.stderr and "Traceback" not in res.stderr


def test_cli_install_never_creates_the_ca(tmp_path):
    res = run_cli("ca", "install", cwd=tmp_path)
    assert res.returncode == 1
    assert "start Airlock once" in res.stderr
    assert not (tmp_path / "var").exists()          # no root-owned CA left behind
