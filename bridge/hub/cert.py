"""The hub's TLS certificate: a self-signed one made on first run (or the operator's), TLS 1.3 only."""
from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path
from typing import NamedTuple

from bridge.errors import ConfigError
from bridge.hublink import fingerprint


class CertFiles(NamedTuple):
    """A certificate and its key on disk, and the fingerprint clients pin."""

    cert: Path
    key: Path
    fingerprint: str


def ensure_self_signed(state: Path, hostnames: list[str]) -> CertFiles:
    """The state dir's certificate, made on first run (ECDSA P-256, ten years: the pin, not a CA, is the trust).

    P-256, not Ed25519: browsers (the web terminal at `/`) accept no Ed25519 server certificate.
    """
    import fcntl

    cert, key = state / "tls.crt", state / "tls.key"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    # under a lock: a `hub token` run while the hub's first start makes the certificate would otherwise
    # make a second one, and its tokens would carry a pin the serving hub does not show (tests/hub/test_units.py)
    with open(state / "tls.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert.is_file() and key.is_file()):
            _write_self_signed(cert, key, hostnames)
        return load(cert, key)


def load(cert: Path, key: Path) -> CertFiles:
    """The operator's (or our) certificate; raises ConfigError when either file cannot be read as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
        key.read_bytes()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the hub certificate {cert} / key {key}: {e}",
                          hint="pass PEM files with --cert and --key, or neither to use a self-signed one") from e
    return CertFiles(cert, key, fingerprint(der))


def _write_self_signed(cert: Path, key: Path, hostnames: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else "bridge-hub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(h) for h in hostnames or ["bridge-hub"]]
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .sign(private, hashes.SHA256()))
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def server_context(files: CertFiles) -> ssl.SSLContext:
    """A server context that speaks TLS 1.3 and nothing older."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No TLS 1.3 session tickets: no peer of the hub resumes a session, so each would be bytes and work
    # spent per connection for nothing. They also exposed a race in the CLI's former sync WebSocket client
    # (two threads on one OpenSSL connection); bridge/ssh/hubsock.py now keeps all TLS I/O on one thread,
    # since a proxy in front of the hub sends tickets of its own. tests/hub/test_serve.py checks none is sent.
    context.num_tickets = 0
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"the hub certificate {files.cert} and key {files.key} do not load: {e}",
                          hint="check that the key belongs to the certificate") from e
    return context
