"""TLS for a job that spans hosts: rank 0's self-signed certificate, made in memory at the start of a fit.

The private key never leaves rank 0's memory: gRPC takes it as bytes, so it is never written to a file and
never put in the store. Only the certificate travels (through the job's torch.distributed store); each
other rank trusts exactly that certificate, so no certificate authority is involved.

``cryptography`` makes the certificate. It is an optional dependency (the ``multinode`` extra): only jobs
whose ranks run on several hosts need it, and the standard library cannot make a certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import Sequence

MULTINODE_INSTALL = "pip install 'onthefly[multinode]'"

# Long enough for any run: the key dies with the process, so a long validity exposes nothing.
VALID_DAYS = 400


@dataclass(frozen=True)
class ServerIdentity:
    """rank 0's TLS identity: ``certificate`` (PEM) may be shared; ``private_key`` (PEM) stays in memory."""

    certificate: bytes
    private_key: bytes = field(repr=False)


def self_signed(names: Sequence[str]) -> ServerIdentity:
    """A fresh EC P-256 key and a certificate for it, valid for every host name or IP address in ``names``
    (its subject alternative names: what the other ranks dial). Raises ImportError naming the install
    when ``cryptography`` is missing."""
    if not names:
        raise ValueError("a certificate needs at least one host name or IP address")
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise ImportError(
            "onthefly: this job's ranks run on several hosts, so rank 0's coordinator listens with TLS, and "
            f"making its certificate needs the 'cryptography' package: {MULTINODE_INSTALL} "
            "(on every host)") from exc
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "onthefly coordinator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # hosts' clocks differ a little
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(x509, n) for n in dict.fromkeys(names)]),
                       critical=False)
        # Its own trust anchor: the ranks trust this one certificate and nothing it could sign.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServerIdentity(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()))


def _general_name(x509, name: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
