"""A private certificate authority for a local cluster's HTTPS endpoints.

kubectl (client-go) never sends a bearer token over plain HTTP, so each master also serves the API over
TLS; `hacluster up` calls `ensure_pki` to create a CA and one server certificate for localhost, 127.0.0.1
and every master's `host` in `STATE_DIR/pki/`, and the kubeconfig carries the CA. Keys never leave the state
directory — except where masters run on several hosts: `hacluster pki --config` makes the files once, and
each host gets a copy of `pki/` beside its config (README, "Beyond one machine").
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365


def pki_paths(state_dir: Path) -> dict[str, Path]:
    d = state_dir / "pki"
    return {"dir": d, "ca_cert": d / "ca.crt", "ca_key": d / "ca.key", "cert": d / "server.crt",
            "key": d / "server.key"}


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _subject_alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def ensure_pki(state_dir: Path, hosts: tuple[str, ...] = ()) -> dict[str, Path]:
    """Create the CA and a server certificate valid for localhost, 127.0.0.1 and `hosts` unless they exist;
    return their paths."""
    p = pki_paths(state_dir)
    if p["cert"].exists() and p["key"].exists() and p["ca_cert"].exists():
        return p
    p["dir"].mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hacluster-ca")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hacluster-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(
                [_subject_alt_name(h) for h in dict.fromkeys(("localhost", "127.0.0.1", *hosts))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(p["ca_key"], ca_key)
    p["ca_cert"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(p["key"], key)
    p["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return p
