"""Services: what a profile's ``services`` and ``network`` tables mean. Pure: no sockets.

A *service* is an upstream API the run may call with a credential it never holds. The
child gets a **placeholder** (a random per-run value, never derived from the secret) and,
in base-URL mode, a broker URL; the broker (:mod:`agentsess.edges.broker`) swaps the
placeholder for the real value only on requests towards that service's own upstream.

This module holds the pieces that need no socket: the schema and presets, placeholders,
host and allowlist matching, the leak-guard decision over a request's headers and target,
and the data of a ``net.request`` receipt (never a header value or a body).
"""

import base64
import binascii
import ipaddress
import secrets as _random
from dataclasses import dataclass, field

# The schema of one entry of ``[profiles.P.services.NAME]``.
SERVICE_KEYS = ("secret", "upstream", "env_base_url", "env_key", "ca_file", "hosts", "git_user")
NETWORK_KEYS = ("proxy", "allow_hosts", "ca_file")
NETWORK_DEFAULTS = {"proxy": False, "allow_hosts": [], "ca_file": None}

# Well-known services: ``services = ["anthropic", "openai", "github"]`` needs no table. A
# table under a preset's name overrides its keys one by one.
PRESETS: dict[str, dict] = {
    "anthropic": {
        "secret": "anthropic-key",
        "upstream": "https://api.anthropic.com",
        "env_base_url": "ANTHROPIC_BASE_URL",
        "env_key": ["ANTHROPIC_API_KEY"],
        "hosts": [],
        "prefix": "sk-ant-",
    },
    "openai": {
        "secret": "openai-key",
        "upstream": "https://api.openai.com/v1",
        "env_base_url": "OPENAI_BASE_URL",
        "env_key": ["OPENAI_API_KEY"],
        "hosts": [],
        "prefix": "sk-",
    },
    "github": {
        "secret": "github-token",
        "upstream": "https://api.github.com",
        "env_base_url": "GITHUB_API_URL",
        "env_key": ["GH_TOKEN", "GITHUB_TOKEN"],
        "hosts": ["github.com"],  # git over HTTPS, in proxy mode
        "git_user": "x-access-token",  # git is handed the placeholder as this user's password
        "prefix": "ghp_",
    },
}

PLACEHOLDER_MARK = "agentsess-ph-"
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LOWER_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST = _LOWER_DIGITS | frozenset("_-")
_VAR_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_VAR_REST = _VAR_FIRST | frozenset("0123456789")
_LABEL = _LOWER_DIGITS | frozenset("-_")


class SpecError(Exception):
    """A bad value in the schema: ``where`` is the key path below the table, e.g. ``.upstream``."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class Upstream:
    scheme: str  # "https" or "http" (http only on loopback)
    host: str  # normalized: lowercase, no trailing dot; IPv6 without brackets
    port: int
    base_path: str  # "" or "/v1": no trailing slash

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Service:
    """One resolved service of a run. ``placeholder`` is what the child holds."""

    name: str
    secret: str  # the secret's name in `agentsess secret`, never its value
    upstream: Upstream
    env_base_url: str | None
    env_key: tuple[str, ...]
    ca_file: str | None
    hosts: tuple[str, ...]  # extra hosts (proxy mode) where the secret may go
    placeholder: str
    git_user: str | None = None  # proxy mode: git gets user + placeholder for these hosts

    def serves(self, host: str, port: int, scheme: str = "https") -> bool:
        """True if the real secret may be attached to a request towards ``scheme://host:port``.

        The scheme counts: a secret whose upstream is https never goes out in clear text,
        even to the right host and port (``http://api.example.com:443/`` through the proxy).
        """
        if host == self.upstream.host and port == self.upstream.port:
            return scheme == self.upstream.scheme
        return scheme == "https" and port == 443 and host in self.hosts


@dataclass(frozen=True, slots=True)
class Network:
    proxy: bool = False
    allow_hosts: tuple[str, ...] = ()
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the leak guard says about one request."""

    allow: bool
    reason: str | None = None
    headers: list = field(default_factory=list)  # rewritten (name, value) byte pairs
    target: bytes = b""
    attached: tuple[str, ...] = ()  # names of the secrets attached (never their values)


# -- names, hosts and URLs ------------------------------------------------------------


def is_service_name(name) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 64
        and name[0] in _LOWER_DIGITS
        and _NAME_REST.issuperset(name)
    )


def is_var_name(name) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 256
        and name[0] in _VAR_FIRST
        and _VAR_REST.issuperset(name)
    )


def normalize_host(text) -> str | None:
    """A host as the broker compares it, or None when it is not a host an honest client sends.

    Lowercase, one trailing dot dropped, IPv6 without brackets. IPv4 only as a plain dotted
    quad: ``127.1``, ``0x7f.0.0.1`` and ``2130706433`` (which a resolver would accept) are
    refused, as is anything that is neither an IP address nor an ASCII DNS name.
    """
    if not isinstance(text, str) or not text or len(text) > 253 + 2:
        return None
    host = text.lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    host = host.removesuffix(".")
    if not host:
        return None
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    labels = host.split(".")
    for label in labels:
        if not label or len(label) > 63 or not _LABEL.issuperset(label):
            return None
        if label.startswith("-") or label.endswith("-"):
            return None
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        try:
            return str(ipaddress.IPv4Address(host))  # strict: four decimal parts, no leading zeros
        except ValueError:
            return None
    return host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_upstream(url) -> Upstream:
    """``https://api.example.com/v1`` -> Upstream; raises SpecError (where="")."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.isprintable() or " " in url:
        raise SpecError("", 'expected a URL like "https://api.example.com"')
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SpecError("", f"not a URL: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise SpecError("", f'expected an https:// URL, got {url!r}')
    if parts.username is not None or parts.password is not None:
        raise SpecError("", "a URL with a user or password in it: put the credential in `agentsess secret set`")
    if parts.query or parts.fragment:
        raise SpecError("", f"an upstream URL has no query or fragment, got {url!r}")
    raw_host = parts.netloc.rsplit("@", 1)[-1]
    if raw_host.startswith("["):
        raw_host = raw_host[: raw_host.index("]") + 1] if "]" in raw_host else raw_host
    elif ":" in raw_host:
        raw_host = raw_host.rsplit(":", 1)[0]
    host = normalize_host(raw_host)
    if host is None:
        raise SpecError("", f"bad host in {url!r}")
    if scheme == "http" and not is_loopback(host):
        raise SpecError("", f"http:// upstreams only on loopback (127.0.0.1, ::1, localhost); use https, got {url!r}")
    path = parts.path.rstrip("/")
    if path and not path.startswith("/"):
        raise SpecError("", f"bad path in {url!r}")
    return Upstream(scheme, host, port or (443 if scheme == "https" else 80), path)


def parse_host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """``host``, ``host:port``, ``[v6]:port`` (a CONNECT target or a Host header) -> (host, port)."""
    if not isinstance(text, str) or not text:
        return None
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[: end + 1], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        else:
            port_text = None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        return None  # a bare IPv6 address needs brackets here
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5:
            return None
        port = int(port_text)
    if not 0 < port < 65536:
        return None
    norm = normalize_host(host)
    return None if norm is None else (norm, port)


def check_host_pattern(pattern) -> str:
    """An ``allow_hosts`` entry: ``host``, ``*.domain``, optionally ``:port`` or ``:*``."""
    expected = 'expected a host like "api.example.com", "*.example.com" or "example.com:8443"'
    if not isinstance(pattern, str) or not pattern:
        raise SpecError("", expected)
    text = pattern.lower()
    port = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SpecError("", f"{expected}, got {pattern!r}")
        host, port = text[: end + 1], text[end + 1 :]
    elif text.count(":") == 1:
        host, port = text.split(":")
        port = ":" + port
    else:
        host = text
    if port and port != ":*" and not (port[1:].isdigit() and 0 < int(port[1:]) < 65536):
        raise SpecError("", f"{expected}, got {pattern!r}")
    wild = host.startswith("*.")
    norm = normalize_host(host[2:] if wild else host)
    if norm is None or "*" in (host[2:] if wild else host):
        raise SpecError("", f"{expected}, got {pattern!r}")
    if wild and ":" in norm:
        raise SpecError("", f"{expected}, got {pattern!r}")
    shown = f"[{norm}]" if ":" in norm else norm
    return ("*." if wild else "") + shown + port


def host_allowed(patterns, host: str, port: int) -> bool:
    """True if ``host:port`` is matched by one of the (checked) ``allow_hosts`` patterns.

    ``host`` means ports 80 and 443; ``host:*`` any port; ``*.example.com`` any name below
    ``example.com`` (not ``example.com`` itself).
    """
    for pattern in patterns:
        name, want = pattern, None
        if pattern.startswith("["):
            end = pattern.index("]")
            name, rest = pattern[1:end], pattern[end + 1 :]
            want = rest[1:] if rest else None
        elif ":" in pattern:
            name, want = pattern.rsplit(":", 1)
        if want is None:
            if port not in (80, 443):
                continue
        elif want != "*" and int(want) != port:
            continue
        if name.startswith("*."):
            if host.endswith(name[1:]) and len(host) > len(name) - 1:
                return True
        elif host == name:
            return True
    return False


# -- the schema -----------------------------------------------------------------------


def check_services(value) -> dict:
    """Validate ``services``: a list of preset names, or a table of service tables.

    Returns ``{name: {key: value}}`` holding only what the user wrote (presets are applied
    by :func:`resolve_services`, so a cached validation never freezes a preset's values).
    """
    if isinstance(value, list):
        out: dict[str, dict] = {}
        for i, name in enumerate(value):
            if not isinstance(name, str) or name not in PRESETS:
                shown = repr(name) if isinstance(name, str) else "a " + type(name).__name__
                raise SpecError(
                    f"[{i}]",
                    f"unknown preset {shown} (presets: {', '.join(PRESETS)}); "
                    "declare other services as [profiles.P.services.NAME] tables",
                )
            out[name] = {}
        return out
    if not isinstance(value, dict):
        raise SpecError("", 'expected a list of presets like ["anthropic"] or a table of services')
    out = {}
    for name, table in value.items():
        where = "." + (name if is_service_name(name) else repr(name))
        if not is_service_name(name):
            raise SpecError(where, "bad service name: expected lowercase letters, digits, '_' and '-'")
        if not isinstance(table, dict):
            raise SpecError(where, "expected a table with secret and upstream")
        out[name] = _check_service(name, table, where)
    return out


def _check_service(name: str, table: dict, where: str) -> dict:
    for key in table:
        if key not in SERVICE_KEYS:
            raise SpecError(f"{where}.{key}", f"unknown key (valid keys: {', '.join(SERVICE_KEYS)})")
    merged = {**PRESETS.get(name, {}), **table}
    for key in ("secret", "upstream"):
        if key not in merged:
            raise SpecError(where, f"missing {key} (only the presets {', '.join(PRESETS)} have one built in)")
    out = dict(table)
    secret = merged["secret"]
    if not isinstance(secret, str) or not secret or not secret.isprintable():
        raise SpecError(f"{where}.secret", 'expected a secret name like "anthropic-key"')
    try:
        parse_upstream(merged["upstream"])
    except SpecError as e:
        raise SpecError(f"{where}.upstream", e.message) from None
    base = merged.get("env_base_url")
    if base is not None and not is_var_name(base):
        raise SpecError(f"{where}.env_base_url", "expected a variable name like ANTHROPIC_BASE_URL")
    if "env_key" in table:
        keys = table["env_key"]
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list) or not all(is_var_name(k) for k in keys):
            raise SpecError(f"{where}.env_key", 'expected a variable name like "ANTHROPIC_API_KEY" or a list of them')
        out["env_key"] = list(keys)
    for var in ([base] if base else []) + list(out.get("env_key", merged.get("env_key", []))):
        if var.startswith("AGENTSESS_"):
            raise SpecError(where, f"{var}: AGENTSESS_* variables are set by agentsess itself")
    ca = merged.get("ca_file")
    if ca is not None and (not isinstance(ca, str) or not ca.startswith("/") or "\0" in ca):
        raise SpecError(f"{where}.ca_file", "expected an absolute path to a PEM file")
    user = table.get("git_user")
    if user is not None and (not isinstance(user, str) or not user or not user.isprintable() or ":" in user):
        raise SpecError(f"{where}.git_user", 'expected a user name like "x-access-token"')
    if "hosts" in table:
        hosts = table["hosts"]
        if not isinstance(hosts, list):
            raise SpecError(f"{where}.hosts", 'expected a list of host names like ["github.com"]')
        normalized = []
        for i, h in enumerate(hosts):
            norm = normalize_host(h) if isinstance(h, str) else None
            if norm is None:
                raise SpecError(f"{where}.hosts[{i}]", 'expected a host name like "github.com"')
            normalized.append(norm)
        out["hosts"] = normalized
    return out


def check_network(value) -> dict:
    """Validate ``[profiles.P.network]``; returns it with every key present."""
    if not isinstance(value, dict):
        raise SpecError("", "expected a table with proxy, allow_hosts and ca_file")
    for key in value:
        if key not in NETWORK_KEYS:
            raise SpecError(f".{key}", f"unknown key (valid keys: {', '.join(NETWORK_KEYS)})")
    out = {**NETWORK_DEFAULTS, **value}
    if type(out["proxy"]) is not bool:
        raise SpecError(".proxy", "expected true or false")
    hosts = out["allow_hosts"]
    if not isinstance(hosts, list):
        raise SpecError(".allow_hosts", 'expected a list of hosts like ["api.anthropic.com", "*.github.com"]')
    checked = []
    for i, pattern in enumerate(hosts):
        try:
            checked.append(check_host_pattern(pattern))
        except SpecError as e:
            raise SpecError(f".allow_hosts[{i}]", e.message) from None
    out["allow_hosts"] = checked
    ca = out["ca_file"]
    if ca is not None and (not isinstance(ca, str) or not ca.startswith("/") or "\0" in ca):
        raise SpecError(".ca_file", "expected an absolute path to a PEM file")
    return out


def make_placeholder(service: str, prefix: str = "") -> str:
    """A fresh random stand-in: ``<prefix>agentsess-ph-<service>-<32 random letters and digits>``."""
    tail = "".join(_random.choice(_ALNUM) for _ in range(32))
    return f"{prefix}{PLACEHOLDER_MARK}{service}-{tail}"


def resolve_services(declared: dict) -> list[Service]:
    """The run's services from a profile's validated ``services``, each with a new placeholder."""
    out = []
    for name, table in sorted(declared.items()):
        merged = {**PRESETS.get(name, {}), **table}
        keys = merged.get("env_key") or []
        out.append(
            Service(
                name=name,
                secret=merged["secret"],
                upstream=parse_upstream(merged["upstream"]),
                env_base_url=merged.get("env_base_url"),
                env_key=tuple([keys] if isinstance(keys, str) else keys),
                ca_file=merged.get("ca_file"),
                hosts=tuple(merged.get("hosts") or ()),
                placeholder=make_placeholder(name, PRESETS.get(name, {}).get("prefix", "")),
                git_user=merged.get("git_user"),
            )
        )
    return out


def resolve_network(value: dict) -> Network:
    value = {**NETWORK_DEFAULTS, **(value or {})}
    return Network(bool(value["proxy"]), tuple(value["allow_hosts"]), value["ca_file"])


# -- the leak guard -------------------------------------------------------------------

# Headers that belong to one hop and never travel upstream as they came.
HOP_BY_HOP = frozenset(
    (
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
        b"proxy-authenticate", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect",
    )
)


def _basic_swap(value: bytes, swaps: dict[bytes, bytes]) -> tuple[bytes, set[bytes]] | None:
    """Inside ``Basic <base64>``: the value with placeholders swapped, and those found."""
    scheme, _, b64 = value.strip().partition(b" ")
    if scheme.lower() != b"basic" or not b64:
        return None
    try:
        decoded = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    found = {ph for ph in swaps if ph in decoded}
    if not found:
        return None
    for ph in found:
        decoded = decoded.replace(ph, swaps[ph])
    return b"Basic " + base64.b64encode(decoded), found


def guard(
    services: list[Service],
    values: dict[str, str],
    headers: list[tuple[bytes, bytes]],
    target: bytes,
    host: str,
    port: int,
    scheme: str = "https",
) -> Decision:
    """The leak-guard decision for a request towards ``scheme://host:port``.

    A placeholder of a service that serves ``host:port`` is swapped for the real value
    (``values``: service name -> secret) in any header, inside ``Basic`` credentials and in
    the request target; a placeholder of any other service anywhere in the headers or the
    target refuses the whole request. Hop-by-hop headers are dropped. Bodies are not read.
    """
    placeholders = {s.placeholder.encode(): s for s in services}
    own = {ph: values[s.name].encode() for ph, s in placeholders.items() if s.serves(host, port, scheme)}
    attached: set[str] = set()

    def scan(blob: bytes) -> Decision | None:
        for ph, svc in placeholders.items():
            if ph in blob and ph not in own:
                return Decision(
                    False,
                    f"the placeholder of service {svc.name} may only go to {svc.upstream.authority}, "
                    f"not to {host}:{port}",
                )
        return None

    out = []
    for name, value in headers:
        if name in HOP_BY_HOP:
            continue
        refused = scan(value)
        if refused is None and name == b"authorization":
            try:
                inner = base64.b64decode(value.strip().partition(b" ")[2].strip(), validate=True)
            except (binascii.Error, ValueError):
                inner = b""
            refused = scan(inner)
        if refused is not None:
            return refused
        if own:
            swapped = _basic_swap(value, own) if name == b"authorization" else None
            if swapped is not None:
                value, found = swapped
                attached.update(placeholders[ph].secret for ph in found)
            for ph, real in own.items():
                if ph in value:
                    value = value.replace(ph, real)
                    attached.add(placeholders[ph].secret)
        out.append((name, value))
    refused = scan(target)
    if refused is not None:
        return refused
    for ph, real in own.items():
        if ph in target:
            target = target.replace(ph, real)
            attached.add(placeholders[ph].secret)
    return Decision(True, None, out, target, tuple(sorted(attached)))


# -- the receipt ----------------------------------------------------------------------


def masked_path(target: str, services: list[Service] = ()) -> str:  # type: ignore[assignment]
    """A request target for a receipt: the path, each query value replaced by ``…``."""
    path, sep, query = target.partition("?")
    for svc in services:
        path = path.replace(svc.placeholder, f"<placeholder:{svc.name}>")
    if len(path) > 512:
        path = path[:509] + "..."
    if not sep:
        return path
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    shown = "&".join(f"{n[:64]}=…" for n in names[:32])
    return f"{path}?{shown}"


def request_receipt(
    *,
    mode: str,
    service: str | None,
    method: str,
    host: str,
    port: int,
    path: str,
    status: int | None,
    sent: int,
    received: int,
    duration: float,
    secret: tuple[str, ...] = (),
    decision: str = "allow",
    reason: str | None = None,
    error: str | None = None,
) -> dict:
    """The data of one ``net.request`` receipt: what was asked where, and what came of it."""
    data = {
        "mode": mode,
        "service": service,
        "method": method,
        "host": host,
        "port": port,
        "path": path,
        "status": status,
        "bytes_sent": sent,
        "bytes_received": received,
        "duration": round(duration, 6),
        "secret": list(secret) or None,
        "decision": decision,
    }
    if reason is not None:
        data["reason"] = reason
    if error is not None:
        data["error"] = error
    return data


# -- the way back ---------------------------------------------------------------------


class Reflection:
    """Blanks any real secret in what an upstream sends back, keeping every length.

    An API that echoes a credential (in an error message, an echo endpoint) would hand the
    child the value it must never hold. Each occurrence is replaced by as many ``*``, so a
    Content-Length stays exact; a chunk's tail that could begin a secret is held back until
    the next chunk (usually nothing is held, so streams are not delayed).
    """

    __slots__ = ("_held", "_longest", "_search", "_secrets")

    def __init__(self, secrets):
        self._secrets = sorted({s.encode() if isinstance(s, str) else s for s in secrets if s}, key=len, reverse=True)
        self._longest = max((len(s) for s in self._secrets), default=0)
        self._held = b""
        self._search = None
        if self._secrets:
            try:  # a vectorised search: a bytes.find per secret costs ~2 ms per MiB on some data
                from ahocorasick_rs import BytesAhoCorasick, MatchKind

                self._search = BytesAhoCorasick(self._secrets, matchkind=MatchKind.LeftmostLongest)
            except ImportError:  # pragma: no cover - a dependency; bytes.replace still works
                self._search = None

    def blank(self, data: bytes) -> bytes:
        if not self._secrets:
            return data
        if self._search is not None:
            hits = self._search.find_matches_as_indexes(data)
            if not hits:
                return data
            out = bytearray(data)
            for _, start, end in hits:
                out[start:end] = b"*" * (end - start)
            return bytes(out)
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, b"*" * len(secret))
        return data

    def feed(self, chunk):
        """What may go on now (bytes, or ``chunk`` itself when it holds nothing to change)."""
        if not self._secrets:
            return chunk
        if (
            not self._held
            and self._search is not None
            and not self._search.find_matches_as_indexes(chunk)
            and not self._tail(chunk)
        ):
            return chunk  # the common case: no copy
        data = self.blank(self._held + bytes(chunk) if self._held else bytes(chunk))
        keep = self._tail(data)
        self._held = data[len(data) - keep:] if keep else b""
        return data[: len(data) - keep] if keep else data

    def _tail(self, data) -> int:
        """How many bytes at the end of ``data`` could be the start of a secret."""
        for n in range(min(self._longest - 1, len(data)), 0, -1):
            tail = bytes(data[len(data) - n:])
            if any(s.startswith(tail) for s in self._secrets):
                return n
        return 0

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


def git_credentials(services: list[Service], existing: int = 0) -> dict:
    """Variables that make git answer its credential prompt for each service's hosts with the
    service's ``git_user`` and placeholder (``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n``, after
    the ``existing`` entries). The broker swaps the placeholder inside the Basic credentials."""
    env = {}
    n = existing
    for service in services:
        if not service.git_user or service.upstream.scheme != "https":
            continue
        urls = [f"https://{service.upstream.authority}"] + [f"https://{h}" for h in service.hosts]
        answer = f"username={service.git_user}\\npassword={service.placeholder}\\n"
        for url in dict.fromkeys(urls):
            # an empty helper first empties the list, so no helper of the human's answers instead
            for value in ("", f"!f() {{ test \"$1\" = get && printf '{answer}'; }}; f"):
                env[f"GIT_CONFIG_KEY_{n}"] = f"credential.{url}.helper"
                env[f"GIT_CONFIG_VALUE_{n}"] = value
                n += 1
    if n != existing:
        env["GIT_CONFIG_COUNT"] = str(n)
    return env
