"""Trust Airlock's CA system-wide (``airlock ca install|uninstall``) and build CA bundles.

Only the certificate is ever copied: if the file given also holds the CA's
private key (mitmproxy's ``mitmproxy-ca.pem``), the key is left out.

Supported trust stores: Debian/Ubuntu (``update-ca-certificates``), Fedora/RHEL
(``update-ca-trust``) and macOS (``security``). Every message says how to undo.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CERT_NAME = "airlock-ca"
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.S)
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt",           # Debian, Ubuntu, Alpine
                  "/etc/pki/tls/certs/ca-bundle.crt",              # Fedora, RHEL
                  "/etc/ssl/ca-bundle.pem",                        # openSUSE
                  "/etc/ssl/cert.pem")                             # macOS, BSD


class CaInstallError(Exception):
    """Why the CA could not be (un)installed; the message says what to do."""


def read_certificate(ca_path: str | Path) -> bytes:
    """The PEM certificate(s) in ``ca_path``, without any private key."""
    p = Path(ca_path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CaInstallError(f"{p}: no such file (start Airlock once to create its CA, then "
                             "'airlock ca path' shows where it is)") from None
    except PermissionError:
        raise CaInstallError(f"{p}: permission denied (run as a user that can read Airlock's CA)") from None
    certs = _PEM_CERT.findall(data)
    if not certs:
        raise CaInstallError(f"{p}: no PEM certificate in this file (expected Airlock's mitmproxy-ca-cert.pem)")
    return b"\n".join(certs) + b"\n"


@dataclass(slots=True)
class TrustStore:
    """One OS trust store: where anchors go and the command that rebuilds the bundle."""
    name: str
    anchor: Path                       # file the CA certificate is written to
    refresh: list[str]                 # command run after adding/removing the anchor
    bundle: Path | None = None         # resulting bundle, for the message

    @classmethod
    def debian(cls, local_dir: str | Path = "/usr/local/share/ca-certificates",
               refresh_args: list[str] | None = None, bundle: str | Path = "/etc/ssl/certs/ca-certificates.crt"
               ) -> "TrustStore":
        return cls("debian", Path(local_dir) / f"{CERT_NAME}.crt",
                   ["update-ca-certificates", "--fresh", *(refresh_args or [])], Path(bundle))

    @classmethod
    def redhat(cls) -> "TrustStore":
        return cls("redhat", Path("/etc/pki/ca-trust/source/anchors") / f"{CERT_NAME}.pem",
                   ["update-ca-trust", "extract"], Path("/etc/pki/tls/certs/ca-bundle.crt"))


def detect() -> TrustStore | None:
    """The trust store of this machine, or None on macOS/unknown systems."""
    if shutil.which("update-ca-certificates"):
        return TrustStore.debian()
    if shutil.which("update-ca-trust"):
        return TrustStore.redhat()
    return None


def _run(cmd: list[str]) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CaInstallError(f"{cmd[0]} not found: install the ca-certificates package") from None
    if res.returncode != 0:
        raise CaInstallError(f"'{' '.join(cmd)}' failed: {(res.stderr or res.stdout).strip()}")


def _macos(ca_path: Path, remove: bool) -> str:
    keychain = "/Library/Keychains/System.keychain"
    if remove:
        _run(["security", "delete-certificate", "-c", "mitmproxy", keychain])
        return f"removed the Airlock CA from {keychain}"
    _run(["security", "add-trusted-cert", "-d", "-r", "trustRoot", "-k", keychain, str(ca_path)])
    return (f"added {ca_path} to {keychain} as a trusted root\n"
            f"undo: airlock ca uninstall   (or: sudo security delete-certificate -c mitmproxy {keychain})")


def install(ca_path: str | Path, store: TrustStore | None = None) -> str:
    """Add the CA to the system trust store; returns what was done and how to undo it."""
    cert = read_certificate(ca_path)
    if store is None:
        if sys.platform == "darwin":
            return _macos(Path(ca_path), remove=False)
        store = detect()
        if store is None:
            raise CaInstallError("no supported trust store found (Debian update-ca-certificates, Fedora "
                                 f"update-ca-trust, macOS security); add {ca_path} to your OS trust store by hand")
    try:
        store.anchor.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.anchor.with_suffix(".tmp")
        tmp.write_bytes(cert)
        os.chmod(tmp, 0o644)
        os.replace(tmp, store.anchor)
    except PermissionError:
        raise CaInstallError(f"cannot write {store.anchor}: run 'sudo airlock ca install'") from None
    _run(store.refresh)
    where = f" (bundle {store.bundle})" if store.bundle else ""
    return (f"installed the Airlock CA as {store.anchor} and ran '{' '.join(store.refresh)}'{where}\n"
            f"undo: airlock ca uninstall   (or: sudo rm {store.anchor} && sudo {' '.join(store.refresh)})\n"
            "note: Node.js ignores the system store: also set NODE_EXTRA_CA_CERTS (see 'airlock env')")


def uninstall(store: TrustStore | None = None) -> str:
    """Remove the CA installed by :func:`install`; harmless when it is not installed."""
    if store is None:
        if sys.platform == "darwin":
            return _macos(Path("-"), remove=True)
        store = detect()
        if store is None:
            raise CaInstallError("no supported trust store found: remove the Airlock CA from your OS trust "
                                 "store by hand")
    if not store.anchor.exists():
        return f"the Airlock CA is not installed ({store.anchor} does not exist); nothing to do"
    try:
        store.anchor.unlink()
    except PermissionError:
        raise CaInstallError(f"cannot remove {store.anchor}: run 'sudo airlock ca uninstall'") from None
    _run(store.refresh)
    return f"removed {store.anchor} and ran '{' '.join(store.refresh)}'"


def system_bundle() -> Path | None:
    """The OS CA bundle, or certifi's when the OS has none."""
    for p in SYSTEM_BUNDLES:
        if Path(p).is_file():
            return Path(p)
    try:
        import certifi
        return Path(certifi.where())
    except ImportError:
        return None


def write_bundle(ca_path: str | Path, out: str | Path, base: Path | None = None) -> Path:
    """Write ``out`` = the system CAs + Airlock's CA, for tools whose CA variable *replaces* the system
    store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE): hosts Airlock passes through untouched
    keep verifying against their real CAs. Rewritten only when its content changes."""
    cert = read_certificate(ca_path)
    base = base if base is not None else system_bundle()
    body = (base.read_bytes().rstrip(b"\n") + b"\n" if base else b"") + cert
    out = Path(out)
    if out.exists() and out.read_bytes() == body:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(body)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


def register(ca_app) -> None:
    """Add ``install`` and ``uninstall`` to the lead's ``airlock ca`` command group."""
    import typer

    from .cli.common import fail, load_config

    @ca_app.command("install")
    def install_cmd(ca: str = typer.Option(None, "--ca", help="CA certificate to install "
                                           "(default: this Airlock's, see 'airlock ca path')")) -> None:
        """Add Airlock's CA to the system trust store (root); prints how to undo it."""
        if ca is None:
            # never create the CA here: under sudo it would belong to root and Airlock could not read it
            from .server import ca_cert_path
            ca = str(ca_cert_path(load_config()))
        try:
            typer.echo(install(ca))
        except CaInstallError as e:
            fail(str(e), 1)

    @ca_app.command("uninstall")
    def uninstall_cmd() -> None:
        """Remove Airlock's CA from the system trust store (root)."""
        try:
            typer.echo(uninstall())
        except CaInstallError as e:
            fail(str(e), 1)
