"""The TOML config: built-in default, starter file, validation messages, set, snapshots."""

import json
import os
import stat
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsess.edges.config import (
    BUILTIN,
    PROFILE_KEYS,
    Profile,
    init_config,
    load_config,
    set_value,
)
from agentsess.errors import STATE, USAGE, AgentsessError


@pytest.fixture(autouse=True)
def config_path(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("AGENTSESS_CONFIG", str(path))
    monkeypatch.setenv("AGENTSESS_HOME", str(tmp_path / "home"))
    return path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- missing file ----------------------------------------------------------------------------


def test_missing_file_gives_builtin_default(config_path):
    config = load_config()
    assert config.path == str(config_path)
    assert config.exists is False
    assert config.profile_names() == ["default"]
    profile = config.profile()
    assert profile is config.profile("default")
    assert profile.name == "default"
    assert profile.agent is None  # the command's basename
    assert profile.scopes is None  # no ceiling
    assert profile.default_scopes == []
    assert profile.ttl == 3600
    assert profile.max_ttl == 12 * 3600
    assert profile.max_depth == 8
    assert profile.revoke_grace == 5
    assert profile.on_revoke == "stop"
    assert profile.on_expiry == "keep"
    assert profile.expiry_warning == 120
    assert profile.home_files == [".gitconfig"]
    assert profile.mask_terminal is True
    assert profile.keep_env is False
    assert profile.integration == "auto"
    assert profile.default_decision == "observe"
    assert profile.env == {} and profile.rules == []
    assert not config_path.exists()


def test_empty_file_gives_builtin_default(config_path):
    write(config_path, "")
    config = load_config()
    assert config.exists is True
    assert config.profile().to_dict() == load_config(str(config_path) + ".absent").profile().to_dict()


def test_unknown_profile_lists_available(config_path):
    write(config_path, '[profiles.claude]\n[profiles.codex]\n')
    with pytest.raises(AgentsessError) as info:
        load_config().profile("clause")
    message = info.value.message
    assert info.value.exit_code == USAGE
    assert "unknown profile 'clause'" in message
    assert "claude, codex, default" in message
    assert str(config_path) in message


# --- init ------------------------------------------------------------------------------------


def test_init_writes_a_valid_private_starter(config_path):
    written = init_config()
    assert written == str(config_path)
    assert mode(config_path) == 0o600
    assert mode(config_path.parent) == 0o700
    text = config_path.read_text()
    assert text.startswith("#")
    tomllib.loads(text)  # plain TOML, comments and all

    config = load_config()
    assert config.exists
    assert config.profile_names() == ["aider", "claude", "codex", "default"]
    claude = config.profile("claude")
    assert claude.agent == "claude-code"
    assert claude.integration == "claude-code"
    assert claude.pass_env == ["ANTHROPIC_API_KEY"]
    assert "github:*" in claude.scopes
    assert claude.default_scopes and len(claude.default_scopes) < 10
    decisions = [(r["tool"], r["args"], r["scope"], r["decision"], r["index"]) for r in claude.rules]
    assert decisions == [
        ("Bash", ["rm * /", "rm * / *", "rm * /[*.]*", "rm * //*", "rm * ~", "rm * ~ *", "rm * ~/", "rm * ~/ *",
                  "rm * ~/[*]*"], None, "deny", 0),
        ("Bash", "git push*", "git:push", "ask", 1),
    ]
    assert config.profile("codex").pass_env == ["OPENAI_API_KEY"]
    assert config.profile("aider").pass_env == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    assert "defaults" in tomllib.loads(text)


def test_init_refuses_to_overwrite(config_path):
    write(config_path, "# mine\n")
    with pytest.raises(AgentsessError) as info:
        init_config()
    assert info.value.exit_code == USAGE
    assert "already exists" in info.value.message
    assert "--force" in info.value.message
    assert config_path.read_text() == "# mine\n"
    init_config(force=True)
    assert "[profiles.claude]" in config_path.read_text()
    assert mode(config_path) == 0o600


def test_init_leaves_an_existing_parent_folder_mode_alone(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    init_config(str(folder / "config.toml"))
    assert mode(folder) == 0o755
    assert mode(folder / "config.toml") == 0o600


# --- validation ------------------------------------------------------------------------------

BAD = [
    # (file text, key path, expectation)
    ("[profiles.claude]\nttl = \nagent = 'x'\n", "invalid TOML", "line 2, column 7"),
    ("profile = 1\n", "profile", "unknown key (did you mean profiles?)"),
    ("[profiles.claude]\nttll = '1h'\n", "profiles.claude.ttll", "did you mean ttl?"),
    ("[profiles.claude]\nzzzzzz = 1\n", "profiles.claude.zzzzzz", "valid keys: agent, scopes"),
    (
        "[profiles.claude]\nttl = 'soon'\n",
        "profiles.claude.ttl",
        "expected a duration like 90s, 15m, 4h, 2d or 1h30m, got 'soon'",
    ),
    ("[profiles.claude]\nttl = 3600\n", "profiles.claude.ttl", "expected a duration like 90s"),
    ("[profiles.claude]\nttl = '0s'\n", "profiles.claude.ttl", "longer than zero"),
    ("[defaults]\nrevoke_grace = 'x'\n", "defaults.revoke_grace", "expected a duration"),
    ("[profiles.claude]\nmax_depth = '8'\n", "profiles.claude.max_depth", "expected a whole number"),
    ("[profiles.claude]\nmax_depth = -1\n", "profiles.claude.max_depth", "expected a whole number"),
    ("[profiles.claude]\nmax_depth = true\n", "profiles.claude.max_depth", "got true"),
    ("[profiles.claude]\nkeep_env = 'yes'\n", "profiles.claude.keep_env", "expected true or false, got 'yes'"),
    ("[profiles.claude]\non_revoke = 'kill'\n", "profiles.claude.on_revoke", "expected one of stop, keep, got 'kill'"),
    ("[profiles.claude]\non_expiry = 1\n", "profiles.claude.on_expiry", "expected one of keep, stop"),
    ("[profiles.claude]\nintegration = 'cursor'\n", "profiles.claude.integration", "auto, none, claude-code"),
    ("[profiles.claude]\ndefault_decision = 'maybe'\n", "profiles.claude.default_decision", "observe, allow, deny, ask"),
    ("[profiles.claude]\nscopes = ['fs:*', 'GitHub:x']\n", "profiles.claude.scopes[1]", "bad scope 'GitHub:x'"),
    ("[profiles.claude]\nscopes = 'github:*'\n", "profiles.claude.scopes", "expected a list of scopes"),
    ("[profiles.claude]\ndefault_scopes = [1]\n", "profiles.claude.default_scopes[0]", "expected a string"),
    (
        "[profiles.claude]\nscopes = ['github:*']\ndefault_scopes = ['github:pr', 'aws:s3']\n",
        "profiles.claude.default_scopes",
        "aws:s3 not within scopes github:*",
    ),
    (
        "[defaults]\nscopes = ['fs:*']\n[profiles.claude]\ndefault_scopes = ['git:push']\n",
        "profiles.claude.default_scopes",
        "git:push not within scopes fs:*",
    ),
    ("[profiles.claude]\nttl = '13h'\n", "profiles.claude.ttl", "ttl 13h is longer than max_ttl 12h"),
    ("[defaults]\nttl = '2h'\n[profiles.claude]\nmax_ttl = '1h'\n", "defaults.ttl", "ttl 2h is longer than max_ttl 1h"),
    ("[profiles.Claude]\n", "profiles.Claude", "bad profile name"),
    ('[profiles."a b"]\n', 'profiles."a b"', "bad profile name"),
    ("profiles = 3\n", "profiles", "expected a table of profiles"),
    ("defaults = []\n", "defaults", "expected a table"),
    ("[profiles]\nclaude = 'x'\n", "profiles.claude", "expected a table of profile keys"),
    ("[profiles.claude]\nagent = '../x'\n", "profiles.claude.agent", "expected an agent name"),
    ("[profiles.claude]\nagent = ''\n", "profiles.claude.agent", "expected an agent name"),
    ('[profiles.claude]\ngit_email = "a\\nb"\n', "profiles.claude.git_email", "single-line"),
    ("[profiles.claude]\npass_env = ['GH TOKEN']\n", "profiles.claude.pass_env[0]", "expected a variable name"),
    ("[profiles.claude]\nscrub_env = ['']\n", "profiles.claude.scrub_env[0]", "expected a pattern"),
    ("[profiles.claude]\nhome_files = ['../.ssh/id_rsa']\n", "profiles.claude.home_files[0]", "no '..'"),
    ("[profiles.claude]\nhome_files = ['/etc/passwd']\n", "profiles.claude.home_files[0]", "relative"),
    ("[profiles.claude.env]\n'BAD NAME' = 'x'\n", 'profiles.claude.env."BAD NAME"', "expected a variable name"),
    ("[profiles.claude.env]\n1X = 'x'\n", "profiles.claude.env.1X", "expected a variable name"),
    ("[profiles.claude.env]\nAGENTSESS_TOKEN = 'x'\n", "profiles.claude.env.AGENTSESS_TOKEN", "set by agentsess"),
    ("[profiles.claude.env]\nX = 1\n", "profiles.claude.env.X", "expected a string or { secret"),
    ("[profiles.claude.env]\nX = { secret = 'a', other = 1 }\n", "profiles.claude.env.X", "no other keys"),
    ("[profiles.claude.env]\nX = { secret = '' }\n", "profiles.claude.env.X", "secret-name"),
    ("[profiles.claude]\nenv = 'x'\n", "profiles.claude.env", "expected a table"),
    ("[profiles.claude]\nrules = {}\n", "profiles.claude.rules", "expected a list of rules"),
    ("[[profiles.claude.rules]]\ntool = 'Bash'\n", "profiles.claude.rules[0]", "missing decision (allow, deny or ask)"),
    ("[[profiles.claude.rules]]\ndecision = 'deny'\n", "profiles.claude.rules[0]", "missing tool"),
    (
        "[[profiles.claude.rules]]\ntool = 'Bash'\ndecision = 'allow'\n"
        "[[profiles.claude.rules]]\ntool = 'Bash'\ndecision = 'nope'\n",
        "profiles.claude.rules[1].decision",
        "expected one of allow, deny, ask, got 'nope'",
    ),
    ("[[profiles.claude.rules]]\ntol = 'Bash'\n", "profiles.claude.rules[0].tol", "did you mean tool?"),
    ("[[profiles.claude.rules]]\ntool = ''\ndecision = 'deny'\n", "profiles.claude.rules[0].tool", "tool name"),
    ("[[profiles.claude.rules]]\ntool = 'Bash'\ndecision = 'deny'\nargs = 1\n", "profiles.claude.rules[0].args", "glob"),
    ("[[profiles.claude.rules]]\ntool = 'Bash'\ndecision = 'ask'\nscope = 'Git'\n", "profiles.claude.rules[0].scope", "bad scope 'Git'"),
    ("[[profiles.claude.rules]]\ntool = 'Bash'\ndecision = 'ask'\nreason = []\n", "profiles.claude.rules[0].reason", "expected a string"),
    ("[profiles.claude]\nrules = ['x']\n", "profiles.claude.rules[0]", "expected a table with tool and decision"),
]


@pytest.mark.parametrize("text, keypath, expectation", BAD)
def test_validation_error_names_file_key_and_expectation(config_path, text, keypath, expectation):
    write(config_path, text)
    with pytest.raises(AgentsessError) as info:
        load_config()
    message = info.value.message
    assert info.value.exit_code == USAGE
    assert message.startswith(f"{config_path}: {keypath}")
    assert expectation in message
    assert "\n" not in message


def test_env_literal_values_are_not_echoed(config_path):
    write(config_path, '[profiles.claude.env]\nTOKEN = ["sk-live-very-secret"]\n')
    with pytest.raises(AgentsessError) as info:
        load_config()
    assert "sk-live-very-secret" not in info.value.message


def test_non_utf8_file_is_a_usage_error(config_path):
    config_path.parent.mkdir(parents=True)
    config_path.write_bytes(b"[profiles.claude]\nagent = '\xff'\n")
    with pytest.raises(AgentsessError, match="not UTF-8"):
        load_config()


def test_config_path_that_is_a_folder_is_a_usage_error(config_path):
    config_path.mkdir(parents=True)
    with pytest.raises(AgentsessError, match="is a directory"):
        load_config()


# --- resolution ------------------------------------------------------------------------------


def test_defaults_apply_unless_the_profile_sets_the_key(config_path):
    write(
        config_path,
        """
[defaults]
ttl = "2h"
on_expiry = "stop"
scrub_env = ["*_SECRET"]
env = { A = "1" }

[profiles.claude]
ttl = "30m"
env = { B = { secret = "b" } }

[profiles.codex]
""",
    )
    config = load_config()
    claude, codex, default = (config.profile(n) for n in ("claude", "codex", "default"))
    assert claude.ttl == 1800 and codex.ttl == 7200 and default.ttl == 7200
    assert claude.on_expiry == codex.on_expiry == default.on_expiry == "stop"
    assert codex.scrub_env == ["*_SECRET"]
    assert claude.env == {"B": {"secret": "b"}}  # env is one key: the profile's replaces
    assert codex.env == {"A": "1"}
    assert claude.max_ttl == 12 * 3600  # built-in where neither sets it


def test_agent_defaults_to_profile_name_except_for_default(config_path):
    write(config_path, "[profiles.reviewer]\n[profiles.default]\nttl = '5m'\n")
    config = load_config()
    assert config.profile("reviewer").agent == "reviewer"
    assert config.profile("default").agent is None
    assert config.profile().ttl == 300


def test_scopes_absent_means_no_ceiling_and_are_deduplicated(config_path):
    write(
        config_path,
        "[profiles.open]\n[profiles.shut]\nscopes = ['fs:read', 'fs:read', 'git:*']\n"
        "default_scopes = ['git:commit']\n",
    )
    config = load_config()
    assert config.profile("open").scopes is None
    assert config.profile("shut").scopes == ["fs:read", "git:*"]
    assert config.profile("shut").default_scopes == ["git:commit"]


def test_rules_are_normalised_with_index(config_path):
    write(
        config_path,
        """
[[profiles.claude.rules]]
tool = "mcp:github:*"
decision = "ask"
[[profiles.claude.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "deny"
reason = "no pushing"
""",
    )
    assert load_config().profile("claude").rules == [
        {"tool": "mcp:github:*", "args": None, "scope": None, "decision": "ask", "reason": None, "index": 0},
        {"tool": "Bash", "args": "git push*", "scope": "git:push", "decision": "deny", "reason": "no pushing", "index": 1},
    ]


def test_config_to_dict_is_json(config_path):
    init_config()
    data = json.loads(json.dumps(load_config().to_dict()))
    assert data["exists"] is True
    assert data["path"] == str(config_path)
    assert set(data["profiles"]) == {"aider", "claude", "codex", "default"}
    assert data["profiles"]["claude"]["ttl"] == 3600


# --- snapshots -------------------------------------------------------------------------------


def test_profile_snapshot_round_trips_through_json(config_path):
    init_config()
    set_value("profiles.claude.env.GH_TOKEN", '{ secret = "gh" }')
    set_value("profiles.claude.env.MODE", "fast")
    config = load_config()
    for name in config.profile_names():
        profile = config.profile(name)
        restored = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
        assert restored == profile
        assert restored.to_dict() == profile.to_dict()
        for key in ("name",) + PROFILE_KEYS:
            assert getattr(restored, key) == getattr(profile, key)


def test_snapshot_is_independent_of_the_profile():
    profile = Profile("p", {"scopes": ["fs:*"], "env": {"A": {"secret": "a"}}})
    snap = profile.to_dict()
    snap["scopes"].append("git:*")
    snap["env"]["A"]["secret"] = "changed"
    assert profile.scopes == ["fs:*"]
    assert profile.env == {"A": {"secret": "a"}}


def test_snapshot_from_older_version_gets_builtins():
    restored = Profile.from_dict({"name": "old", "agent": "old-agent", "ttl": 60})
    assert restored.ttl == 60
    assert restored.agent == "old-agent"
    assert restored.max_ttl == BUILTIN["max_ttl"]
    assert restored.rules == []


def test_snapshot_keeps_agent_none():
    restored = Profile.from_dict(Profile("default").to_dict())
    assert restored.agent is None
    restored = Profile.from_dict({**Profile("x").to_dict(), "agent": None})
    assert restored.agent is None


@pytest.mark.parametrize("bad", [None, [], {}, {"name": 3}])
def test_unreadable_snapshot_is_a_state_error(bad):
    with pytest.raises(AgentsessError) as info:
        Profile.from_dict(bad)
    assert info.value.exit_code == STATE


def test_redacted_snapshot_drops_literal_env_values_only():
    profile = Profile("p", {"env": {"K": "sk-secret-value", "G": {"secret": "gh"}}, "ttl": 60})
    snap = profile.to_dict(redact_env=True)
    assert "sk-secret-value" not in json.dumps(snap)
    assert snap["env"] == {"K": None, "G": {"secret": "gh"}}
    assert Profile.from_dict(snap).ttl == 60
    assert profile.env["K"] == "sk-secret-value"


def test_repr_leaves_env_out():
    profile = Profile("p", {"env": {"K": "sk-secret-value"}})
    assert "sk-secret-value" not in repr(profile)


# --- set -------------------------------------------------------------------------------------

HAND_WRITTEN = """\
# my agentsess config
# (kept by hand)

[defaults]
ttl = "1h"   # an hour is plenty

[profiles.claude]
agent = "claude-code"
scopes = ["fs:*", "git:*"]
# rules below
[[profiles.claude.rules]]
tool = "Bash"
decision = "deny"
"""


def test_set_value_keeps_the_rest_of_the_file(config_path):
    write(config_path, HAND_WRITTEN)
    assert set_value("profiles.claude.ttl", "2h") == str(config_path)
    text = config_path.read_text()
    assert "# my agentsess config" in text
    assert "# an hour is plenty" in text
    assert "# rules below" in text
    claude = load_config().profile("claude")
    assert claude.ttl == 7200
    assert claude.scopes == ["fs:*", "git:*"]
    assert claude.agent == "claude-code"
    assert claude.rules[0]["decision"] == "deny"
    assert load_config().profile("default").ttl == 3600
    assert mode(config_path) == 0o600


def test_set_value_replaces_an_existing_key_in_place(config_path):
    write(config_path, HAND_WRITTEN)
    set_value("defaults.ttl", "3h")
    text = config_path.read_text()
    assert 'ttl = "3h"' in text
    assert text.count("ttl =") == 1
    assert "# rules below" in text
    assert load_config().profile("claude").ttl == 3 * 3600


def test_set_value_new_profile_and_typed_values(config_path):
    write(config_path, HAND_WRITTEN)
    set_value("profiles.ci.max_depth", "2")
    set_value("profiles.ci.isolate_home", "true")
    set_value("profiles.ci.scopes", '["github:pr:*", "fs:read"]')
    set_value("profiles.ci.default_scopes", "fs:read")  # a plain string for a list key
    set_value("profiles.ci.pass_env", "OPENAI_API_KEY, ANTHROPIC_API_KEY")
    set_value("profiles.ci.git_name", "CI Agent")
    set_value("profiles.ci.env.GH_TOKEN", '{ secret = "github" }')
    ci = load_config().profile("ci")
    assert ci.max_depth == 2
    assert ci.isolate_home is True
    assert ci.scopes == ["github:pr:*", "fs:read"]
    assert ci.default_scopes == ["fs:read"]
    assert ci.pass_env == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    assert ci.git_name == "CI Agent"
    assert ci.env == {"GH_TOKEN": {"secret": "github"}}
    assert "# my agentsess config" in config_path.read_text()


def test_set_value_over_a_multiline_value_rewrites_correctly(config_path):
    init_config()  # tomli_w writes arrays over several lines
    set_value("profiles.aider.scopes", "fs:*,git:*,github:pr:*")
    config = load_config()
    assert config.profile("aider").scopes == ["fs:*", "git:*", "github:pr:*"]
    assert config.profile("claude").rules[1]["scope"] == "git:push"
    assert config_path.read_text().startswith("# agentsess config")


def test_set_value_does_not_let_a_value_inject_keys(config_path):
    write(config_path, HAND_WRITTEN)
    sneaky = 'x"\nkeep_env = true\n'
    set_value("profiles.claude.env.NOTE", sneaky)
    claude = load_config().profile("claude")
    assert claude.keep_env is False
    assert claude.env == {"NOTE": sneaky}


@pytest.mark.parametrize(
    "key, value, expectation",
    [
        ("profiles.claude.ttll", "2h", "profiles.claude.ttll: unknown key (did you mean ttl?)"),
        ("profiles.claude.ttl", "soon", "profiles.claude.ttl: expected a duration"),
        ("profiles.claude.ttl", "13h", "longer than max_ttl"),
        ("profiles.claude.default_scopes", "aws:*", "not within scopes"),
        ("profiles.claude.agent.x", "1", "profiles.claude.agent: is 'claude-code', not a table"),
        ("profile.claude.ttl", "1h", "expected a dotted key like profiles.claude.ttl"),
        ("ttl", "1h", "expected a dotted key"),
        ("profiles..ttl", "1h", "expected a dotted key"),
        ("profiles.Claude.ttl", "1h", "bad profile name"),
    ],
)
def test_set_value_refuses_and_writes_nothing(config_path, key, value, expectation):
    write(config_path, HAND_WRITTEN)
    before = config_path.read_bytes()
    with pytest.raises(AgentsessError) as info:
        set_value(key, value)
    assert info.value.exit_code == USAGE
    assert expectation in info.value.message
    assert config_path.read_bytes() == before
    assert sorted(os.listdir(config_path.parent)) == ["config.toml"]  # no temp file left


def test_set_value_creates_a_missing_file_privately(config_path):
    set_value("defaults.ttl", "20m")
    assert mode(config_path) == 0o600
    assert mode(config_path.parent) == 0o700
    assert load_config().profile().ttl == 1200


def test_set_value_writes_through_a_symlink(tmp_path, config_path):
    real = tmp_path / "dotfiles" / "agentsess.toml"
    write(real, HAND_WRITTEN)
    config_path.parent.mkdir(parents=True)
    config_path.symlink_to(real)
    set_value("profiles.claude.ttl", "45m")
    assert config_path.is_symlink()
    assert load_config().profile("claude").ttl == 2700
    assert "# my agentsess config" in real.read_text()


def test_set_value_on_invalid_toml_names_the_file(config_path):
    write(config_path, "[profiles.claude\n")
    with pytest.raises(AgentsessError, match=r"invalid TOML.*line 1"):
        set_value("profiles.claude.ttl", "1h")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["ttl", "max_ttl", "revoke_grace", "expiry_warning"]),
    minutes=st.integers(1, 600),
)
def test_set_then_load_gives_the_value(config_path, key, minutes):
    write(config_path, HAND_WRITTEN)
    set_value("profiles.claude.ttl", "1m")
    set_value(f"profiles.claude.{key}", f"{minutes}m")
    claude = load_config().profile("claude")
    assert getattr(claude, key) == minutes * 60
    assert "# rules below" in config_path.read_text()


# --- nothing cached ------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    return root


def test_loading_writes_no_derived_file(config_path, data_root):
    init_config()
    first = load_config()
    assert load_config().to_dict() == first.to_dict()
    assert list(data_root.iterdir()) == []


def test_every_edit_is_seen(config_path, data_root):
    init_config()
    assert load_config().profile("claude").ttl == 3600
    set_value("profiles.claude.ttl", "2h")
    assert load_config().profile("claude").ttl == 7200
    # an edit by hand that keeps the size and even the mtime is still seen
    text = config_path.read_text().replace('ttl = "2h"', 'ttl = "3h"')
    st = os.stat(config_path)
    config_path.write_text(text)
    os.utime(config_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_config().profile("claude").ttl == 3 * 3600


def test_each_config_path_is_its_own(tmp_path, config_path, data_root):
    other = tmp_path / "other.toml"
    write(config_path, "[profiles.one]\n")
    write(other, "[profiles.one]\n")
    assert load_config().path == str(config_path)
    assert load_config(str(other)).path == str(other)


def test_a_leftover_cache_file_is_ignored(config_path, data_root):
    write(config_path, "[profiles.one]\nttl = '5m'\n")
    (data_root / "config.cache").write_bytes(b"not marshal at all")
    assert load_config().profile("one").ttl == 300
    (data_root / "config.cache").unlink()
    (data_root / "config.cache").mkdir()
    assert load_config().profile("one").ttl == 300


def test_invalid_config_is_always_refused(config_path, data_root):
    write(config_path, "[profiles.one]\nttl = '5m'\n")
    load_config()
    write(config_path, "[profiles.one]\nttl = 'soon'\n")
    with pytest.raises(AgentsessError, match="profiles.one.ttl"):
        load_config()


def test_reading_creates_no_data_root(config_path, tmp_path):
    write(config_path, "[profiles.one]\n")
    load_config()
    assert not (tmp_path / "home").exists()
