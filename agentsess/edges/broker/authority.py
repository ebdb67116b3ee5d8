"""The run's own certificate authority, for proxy mode's TLS interception.

Minted with ``cryptography`` when the broker starts: an EC P-256 key that exists only in the
supervisor's memory (handed to OpenSSL through an anonymous ``memfd``, never a file on disk),
a CA certificate valid from a minute ago until the run's expiry, name-constrained to the
hosts that carry a placeholder (so the bundle the child trusts vouches for nothing else, even
if it is copied out of the run). Leaf certificates are minted on demand for the hosts that carry a
placeholder, one per host, signed by that CA.

The child trusts the CA through a bundle file (system CAs, any bundle the child already
named, then the run's CA): the certificate is public, so the bundle may live where the child
can read it.
"""

import datetime
import ipaddress
import os
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Variables a TLS client reads for its trust store; the bundle is given in each of them.
BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_path(data: bytes, name: str) -> tuple[int, str]:
    """An in-memory file holding ``data``: (fd, a path OpenSSL can open). Close fd after use."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


def _subtrees(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in sorted(set(hosts)):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            out.append(x509.DNSName(host))
            continue
        out.append(x509.IPAddress(ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")))
    return out or [x509.DNSName("invalid")]


def system_ca_file() -> str | None:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


class RunAuthority:
    def __init__(self, run_id: str, not_after: float, hosts: list[str]):
        self.run_id = run_id
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        self.not_after = min(
            datetime.datetime.fromtimestamp(not_after, datetime.UTC),
            now + datetime.timedelta(days=30),
        )
        self.name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentsess"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"agentsess run {run_id} broker CA"),
            ]
        )
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.NameConstraints(permitted_subtrees=_subtrees(hosts), excluded_subtrees=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def write_bundle(self, extra_files: list[str], folder: str | None = None) -> str:
        """Write the child's trust bundle (system CAs, ``extra_files``, the run CA); its path.

        ``folder`` must be one the child can read (a contained run binds it in); by default
        a fresh private folder under the system's temporary directory.
        """
        from agentsess.edges import paths

        folder = tempfile.mkdtemp(prefix=f"agentsess-{self.run_id}-", dir=folder)
        path = paths.ca_bundle(folder)
        parts = []
        for source in [system_ca_file(), *extra_files]:
            if not source:
                continue
            try:
                with open(source, "rb") as fh:
                    parts.append(fh.read().rstrip(b"\n") + b"\n")
            except OSError:
                continue
        parts.append(self.cert_pem)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(parts))
        return path

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a leaf certificate for ``host`` (cached per host)."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = self._contexts[host] = self._mint(host)
            return ctx

    def _mint(self, host: str) -> ssl.SSLContext:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        now = _now()
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.name)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(self.not_after)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        key = self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        cert_fd, cert_path = _pem_path(chain, "agentsess-leaf")
        key_fd, key_path = _pem_path(key, "agentsess-leaf-key")
        try:
            ctx.load_cert_chain(cert_path, key_path)
        finally:
            os.close(cert_fd)
            os.close(key_fd)
        return ctx
