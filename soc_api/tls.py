"""The API's certificate: the one named in config (`api.tls_cert`, `api.tls_key`), or a
self-signed one made on first start in `<data_dir>/api/` (ECDSA P-256: what browsers
accept; SM2 certificates need a TLCP-capable client)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(cfg) -> tuple[str, str]:  # noqa: ANN001 - soc_core Config
    cert, key = cfg.get("api.tls_cert"), cfg.get("api.tls_key")
    if cert or key:
        for path in (cert, key):
            if not path or not Path(path).is_file():
                raise FileNotFoundError(f"api.tls_cert and api.tls_key must both name "
                                        f"readable files (missing: {path or '(unset)'})")
        return str(cert), str(key)
    folder = Path(cfg.data_dir) / "api"
    cert_path, key_path = folder / "tls-cert.pem", folder / "tls-key.pem"
    if not (cert_path.is_file() and key_path.is_file()):
        self_signed(cert_path, key_path)
    return str(cert_path), str(key_path)


def self_signed(cert_path: Path, key_path: Path, days: int = 825) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govsoc"),
                      x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName(host), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
