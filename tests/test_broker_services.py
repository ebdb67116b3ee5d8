"""Services, pure: the schema and presets, placeholders, host matching, the leak guard."""

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsess.core.credentials import services as svc
from agentsess.core.profiles import check_document
from agentsess.errors import AgentsessError

REAL = "real-value-1234"


def profiles(doc: dict):
    return check_document("config.toml", doc)


def error(doc: dict) -> str:
    with pytest.raises(AgentsessError) as info:
        profiles(doc)
    assert "\n" not in info.value.message
    return info.value.message


def test_presets_as_a_list():
    p = profiles({"profiles": {"claude": {"services": ["anthropic", "github"]}}})["claude"]
    assert p.services == {"anthropic": {}, "github": {}}
    specs = {s.name: s for s in svc.resolve_services(p.services)}
    a = specs["anthropic"]
    assert (a.upstream.host, a.upstream.port, a.env_base_url, a.env_key, a.secret) == (
        "api.anthropic.com", 443, "ANTHROPIC_BASE_URL", ("ANTHROPIC_API_KEY",), "anthropic-key")
    assert a.placeholder.startswith("sk-ant-agentsess-ph-anthropic-")
    g = specs["github"]
    assert g.env_key == ("GH_TOKEN", "GITHUB_TOKEN") and g.serves("github.com", 443) and g.serves("api.github.com", 443)
    assert not g.serves("github.com", 80) and not g.serves("gist.github.com", 443)
    o = svc.resolve_services({"openai": {}})[0]
    assert o.upstream.base_path == "/v1" and o.env_base_url == "OPENAI_BASE_URL"


def test_a_table_overrides_a_preset_key_by_key():
    p = profiles({"profiles": {"c": {"services": {"anthropic": {"secret": "work-key"}}}}})["c"]
    spec = svc.resolve_services(p.services)[0]
    assert spec.secret == "work-key" and spec.upstream.host == "api.anthropic.com"


def test_placeholders_are_fresh_random_and_never_the_secret():
    a, b = (svc.resolve_services({"anthropic": {}})[0].placeholder for _ in range(2))
    assert a != b
    tail = a.rsplit("-", 1)[1]
    assert len(tail) == 32 and tail.isalnum()


@pytest.mark.parametrize(
    ("services", "where", "words"),
    [
        (["nope"], "services[0]", "unknown preset 'nope'"),
        ("anthropic", "services", "expected a list"),
        ({"Bad Name": {}}, "services.'Bad Name'", "bad service name"),
        ({"mine": {"upstream": "https://x.example"}}, "services.mine", "missing secret"),
        ({"mine": {"secret": "k"}}, "services.mine", "missing upstream"),
        ({"mine": {"secret": "k", "upstream": "http://example.com"}}, "services.mine.upstream", "only on loopback"),
        ({"mine": {"secret": "k", "upstream": "ftp://x"}}, "services.mine.upstream", "https://"),
        ({"mine": {"secret": "k", "upstream": "https://u:p@x.example"}}, "services.mine.upstream", "password"),
        ({"mine": {"secret": "k", "upstream": "https://x.example/?q=1"}}, "services.mine.upstream", "no query"),
        ({"mine": {"secret": "k", "upstream": "https://127.1"}}, "services.mine.upstream", "bad host"),
        ({"mine": {"secret": "k", "upstream": "https://x.example", "colour": 1}}, "services.mine.colour", "unknown key"),
        ({"mine": {"secret": "k", "upstream": "https://x.example", "env_key": "1X"}}, "services.mine.env_key", "variable"),
        ({"mine": {"secret": "k", "upstream": "https://x.example", "env_key": "AGENTSESS_TOKEN"}}, "services.mine",
         "set by agentsess"),
        ({"mine": {"secret": "k", "upstream": "https://x.example", "ca_file": "rel.pem"}}, "services.mine.ca_file",
         "absolute path"),
        ({"mine": {"secret": "k", "upstream": "https://x.example", "hosts": ["bad host"]}}, "services.mine.hosts[0]",
         "host name"),
    ],
)
def test_bad_services_name_the_key(services, where, words):
    message = error({"profiles": {"p": {"services": services}}})
    assert message.startswith(f"config.toml: profiles.p.{where}: "), message
    assert words in message


@pytest.mark.parametrize(
    ("network", "where", "words"),
    [
        ({"proxy": "yes"}, "network.proxy", "true or false"),
        ({"allow_hosts": "github.com"}, "network.allow_hosts", "a list"),
        ({"allow_hosts": ["ok.example", "*"]}, "network.allow_hosts[1]", "expected a host"),
        ({"allow_hosts": ["a.*.example"]}, "network.allow_hosts[0]", "expected a host"),
        ({"allow_hosts": ["x.example:99999"]}, "network.allow_hosts[0]", "expected a host"),
        ({"allow_hosts": ["127.1"]}, "network.allow_hosts[0]", "expected a host"),
        ({"ca_file": 3}, "network.ca_file", "absolute path"),
        ({"proxyy": True}, "network.proxyy", "unknown key"),
    ],
)
def test_bad_network_names_the_key(network, where, words):
    message = error({"profiles": {"p": {"network": network}}})
    assert message.startswith(f"config.toml: profiles.p.{where}: "), message
    assert words in message


def test_network_defaults_and_normalized_patterns():
    p = profiles({"profiles": {"p": {"network": {"proxy": True, "allow_hosts": ["GitHub.com.", "*.Example.org:*"]}}}})["p"]
    assert p.network == {"proxy": True, "allow_hosts": ["github.com", "*.example.org:*"], "ca_file": None}
    assert profiles({})["default"].network == {} and profiles({})["default"].services == {}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("API.Example.COM", "api.example.com"), ("api.example.com.", "api.example.com"), ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"), ("::1", "::1"), ("127.1", None), ("2130706433", None), ("0x7f.0.0.1", None),
        ("127.0.0.01", None), ("a..b", None), ("-a.b", None), ("a b", None), ("ex\u0430mple.com", None),
        ("a.b\x00", None), ("", None), (".", None), ("[1.2.3.4]", None),
    ],
)
def test_normalize_host(text, want):
    assert svc.normalize_host(text) == want


@given(st.text(max_size=40))
def test_normalize_host_never_raises_and_is_idempotent(text):
    out = svc.normalize_host(text)
    if out is not None:
        assert svc.normalize_host(out if ":" not in out else f"[{out}]") == out


@pytest.mark.parametrize(
    ("patterns", "host", "port", "allowed"),
    [
        (["github.com"], "github.com", 443, True), (["github.com"], "github.com", 80, True),
        (["github.com"], "github.com", 8443, False), (["github.com:8443"], "github.com", 8443, True),
        (["github.com:*"], "github.com", 1, True), (["github.com"], "api.github.com", 443, False),
        (["*.github.com"], "api.github.com", 443, True), (["*.github.com"], "github.com", 443, False),
        (["*.github.com"], "evilgithub.com", 443, False), (["*.github.com"], "a.b.github.com", 443, True),
        (["[::1]:*"], "::1", 5, True), ([], "github.com", 443, False),
    ],
)
def test_host_allowed(patterns, host, port, allowed):
    checked = [svc.check_host_pattern(p) for p in patterns]
    assert svc.host_allowed(checked, host, port) is allowed


def _two():
    specs = svc.resolve_services(svc.check_services({
        "a": {"secret": "ka", "upstream": "https://a.example"},
        "b": {"secret": "kb", "upstream": "https://b.example"},
    }))
    return specs, {"a": "REAL-A", "b": "REAL-B"}


def test_guard_swaps_only_towards_the_own_upstream():
    specs, values = _two()
    a = specs[0].placeholder.encode()
    d = svc.guard(specs, values, [(b"authorization", b"Bearer " + a), (b"x-other", b"k=" + a)], b"/x", "a.example", 443)
    assert d.allow and d.attached == ("ka",)
    assert d.headers == [(b"authorization", b"Bearer REAL-A"), (b"x-other", b"k=REAL-A")]
    d = svc.guard(specs, values, [(b"authorization", b"Bearer " + a)], b"/x", "b.example", 443)
    assert not d.allow and "placeholder of service a" in d.reason
    d = svc.guard(specs, values, [(b"authorization", b"Bearer " + a)], b"/x", "a.example", 8443)
    assert not d.allow  # another port is another service


def test_guard_basic_auth_and_target():
    specs, values = _two()
    a = specs[0].placeholder.encode()
    basic = b"Basic " + base64.b64encode(b"x-access-token:" + a)
    d = svc.guard(specs, values, [(b"authorization", basic)], b"/q?key=" + a, "a.example", 443)
    assert d.allow
    assert base64.b64decode(d.headers[0][1].split()[1]) == b"x-access-token:REAL-A"
    assert d.target == b"/q?key=REAL-A"
    assert not svc.guard(specs, values, [(b"authorization", basic)], b"/", "b.example", 443).allow
    assert not svc.guard(specs, values, [], b"/q?key=" + a, "b.example", 443).allow


def test_guard_drops_hop_by_hop_and_proxy_credentials():
    specs, values = _two()
    headers = [(b"connection", b"keep-alive, x-secret"), (b"proxy-authorization", b"Basic eA=="), (b"te", b"trailers"),
               (b"upgrade", b"websocket"), (b"expect", b"100-continue"), (b"x-keep", b"1")]
    d = svc.guard(specs, values, headers, b"/", "a.example", 443)
    assert d.headers == [(b"x-keep", b"1")]


@given(st.lists(st.tuples(st.sampled_from([b"authorization", b"x-api-key", b"x-custom", b"cookie"]),
                          st.binary(max_size=60)), max_size=5),
       st.sampled_from(["a.example", "b.example", "c.example"]))
def test_guard_never_lets_a_real_value_go_to_the_wrong_host(headers, host):
    specs, values = _two()
    a, b = (s.placeholder.encode() for s in specs)
    mixed = [(n, v + a) if i % 2 else (n, b + v) for i, (n, v) in enumerate(headers)]
    d = svc.guard(specs, values, mixed, b"/", host, 443)
    if d.allow:
        blob = b"".join(v for _, v in d.headers)
        if host != "a.example":
            assert b"REAL-A" not in blob
        if host != "b.example":
            assert b"REAL-B" not in blob


def test_masked_path():
    specs, _ = _two()
    ph = specs[0].placeholder
    assert svc.masked_path("/v1/x?token=abc&b=2") == "/v1/x?token=…&b=…"
    assert svc.masked_path(f"/bot{ph}/send", specs) == "/bot<placeholder:a>/send"
    assert len(svc.masked_path("/" + "x" * 5000)) <= 512


def test_services_module_is_pure():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(svc))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"socket", "ssl", "threading", "select", "typer", "rich", "h11"}
    assert not any(name.startswith("agentsess") and "edges" in name for name in imported)


def test_guard_never_sends_an_https_secret_in_clear_text():
    specs, values = _two()
    a = specs[0].placeholder.encode()
    d = svc.guard(specs, values, [(b"x-api-key", a)], b"/", "a.example", 443, "http")
    assert not d.allow
    assert not specs[0].serves("a.example", 443, "http")
    gh = svc.resolve_services({"github": {}})[0]
    assert gh.serves("github.com", 443) and not gh.serves("github.com", 443, "http")
    local = svc.resolve_services(svc.check_services({"l": {"secret": "k", "upstream": "http://127.0.0.1:8080"}}))[0]
    assert local.serves("127.0.0.1", 8080, "http") and not local.serves("127.0.0.1", 8080, "https")


@settings(max_examples=500)
@given(st.lists(st.binary(min_size=4, max_size=12), min_size=1, max_size=3),
       st.lists(st.binary(max_size=30), max_size=6), st.data())
def test_reflection_blanks_every_secret_whatever_the_chunking(secrets_, parts, data):
    body = b"".join(p + (data.draw(st.sampled_from(secrets_)) if i % 2 else b"") for i, p in enumerate(parts))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=5)))
    back = svc.Reflection(secrets_)
    out = b""
    last = 0
    for cut in [*cuts, len(body)]:
        out += bytes(back.feed(body[last:cut]))
        last = cut
    out += back.flush()
    assert len(out) == len(body)
    assert out == svc.Reflection(secrets_).blank(body)  # the same as blanking it whole


def test_github_preset_gives_git_the_placeholder():
    gh = svc.resolve_services({"github": {}})[0]
    env = svc.git_credentials([gh])
    assert env["GIT_CONFIG_COUNT"] == "4"
    assert [env[f"GIT_CONFIG_KEY_{i}"] for i in range(4)] == [
        "credential.https://api.github.com.helper"] * 2 + ["credential.https://github.com.helper"] * 2
    assert env["GIT_CONFIG_VALUE_0"] == env["GIT_CONFIG_VALUE_2"] == ""
    assert gh.placeholder in env["GIT_CONFIG_VALUE_3"]
    assert svc.git_credentials(svc.resolve_services({"anthropic": {}})) == {}
    message = error({"profiles": {"p": {"services": {"github": {"git_user": "a:b"}}}}})
    assert "profiles.p.services.github.git_user" in message
