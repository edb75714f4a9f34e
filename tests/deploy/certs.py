"""A throwaway CA and server certificate, and the TLS upstream that stands in for a provider."""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.upstreams import Upstream


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_leaf(out: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Write ca.pem, leaf.pem and leaf.key in ``out``; the leaf covers ``hosts`` (names or IPs)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"test CA for {hosts[0]} {x509.random_serial_number() % 10**6}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    leaf = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "ca.pem", out / "leaf.pem", out / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class BoundUpstream(Upstream):
    """The replay upstream (tests.upstreams) over TLS, bound to a chosen address."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext):
        super().__init__(tls=tls)
        self._bind = (host, port)

    async def _start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        await super()._start(self._bind[1], self._bind[0])


def start_tls_upstream(host: str, port: int, names: list[str], folder: Path) -> tuple[BoundUpstream, Path]:
    """A running TLS replay upstream on host:port with a certificate for ``names``; returns it and its CA."""
    ca, leaf, key = make_ca_and_leaf(folder, names)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf, key)
    return BoundUpstream(host, port, ctx).start(), ca
