"""The shape of the tree as a contract: layering (by walking the imports), one home for file
names, canonical JSON, base64url and timestamps, complete plans, and docs/architecture.md."""

import ast
import json
import os
import re
import subprocess
import sys

import pytest

import agentsess

PACKAGE = os.path.dirname(agentsess.__file__)
ROOT = os.path.dirname(PACKAGE)
LEAVES = ("errors.py", "ids.py", "digest.py", "encoding.py", "timefmt.py")


def modules() -> dict[str, str]:
    """{path relative to agentsess/: source} of every module of the package."""
    out = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    out[os.path.relpath(path, PACKAGE)] = fh.read()
    return out


def _dotted(rel: str) -> str:
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["agentsess", *parts])


def imports(rel: str, source: str) -> set[str]:
    """Every module ``rel`` imports, at any depth (in functions too), outside ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    package = _dotted(rel) if rel.endswith("__init__.py") else _dotted(rel).rpartition(".")[0]

    def visit(node):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _hits(found: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in found if any(m == p or m.startswith(p + ".") for p in prefixes))


def layering_problems(tree: dict[str, str]) -> list[str]:
    problems = []
    for rel, source in sorted(tree.items()):
        found = imports(rel, source)
        layer = rel.split(os.sep)[0] if os.sep in rel else None
        rules = []
        if layer == "core":
            rules.append((("typer", "rich", "click", "agentsess.cli"), "core never imports typer, rich or the CLI"))
        if layer == "edges":
            rules.append((("agentsess.cli", "typer", "rich", "click"), "edges never import the CLI"))
        if layer == "cli":
            rules.append((("agentsess.edges.store",), "the CLI never opens the store"))
        if rel in LEAVES:
            rules.append((("agentsess",), "leaf modules import no other agentsess module"))
        if not (rel == os.path.join("edges", "store.py") or rel.startswith(os.path.join("edges", "store", ""))):
            rules.append((("sqlite3",), "only the store (edges/store.py, or an edges/store/ package) opens the database"))
        for banned, why in rules:
            for hit in _hits(found, banned):
                problems.append(f"{rel} imports {hit}: {why}")
    return problems


def test_the_layering_holds():
    assert layering_problems(modules()) == []


@pytest.mark.parametrize(
    "rel, source",
    [
        (os.path.join("core", "x.py"), "def f():\n    from rich.text import Text\n"),
        (os.path.join("core", "x.py"), "import typer\n"),
        (os.path.join("core", "runs", "x.py"), "from ...cli import render\n"),
        (os.path.join("edges", "x.py"), "def f():\n    __import__('agentsess.cli.app')\n"),
        (os.path.join("cli", "x.py"), "from agentsess.edges.store import Store\n"),
        (os.path.join("cli", "x.py"), "from agentsess.edges import store\n"),
        (os.path.join("cli", "x.py"), "import agentsess.edges.store as s\n"),
        ("timefmt.py", "from agentsess import ids\n"),
        (os.path.join("core", "x.py"), "import sqlite3\n"),
    ],
)
def test_the_layering_check_catches_each_spelling(rel, source):
    assert layering_problems({rel: source}), source


def test_type_checking_imports_are_not_runtime_imports():
    source = "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import typer\nelse:\n    import json\n"
    assert imports(os.path.join("core", "x.py"), source) == {"json"}


# -- one home each -----------------------------------------------------------------------------

FILE_NAME = re.compile(r"\.(json|jsonl|log|db|toml|lock|cache|spool|bash|sock)$")


def test_file_names_are_built_only_in_paths():
    offenders = []
    for rel, source in modules().items():
        if rel in (os.path.join("edges", "paths.py"), os.path.join("edges", "homes.py")):  # homes: the human's files
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FILE_NAME.search(node.value):
                if "\n" not in node.value and " " not in node.value:  # a name, not a message or a docstring
                    offenders.append(f"{rel}: {node.value!r}")
    assert offenders == []


def _calls(source: str, name: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                yield node


def test_one_canonical_json_one_base64url_one_timestamp_format():
    offenders = []
    for rel, source in modules().items():
        if rel != "encoding.py":
            for call in _calls(source, "dumps"):
                keys = {k.arg for k in call.keywords}
                if {"sort_keys", "separators"} <= keys:
                    offenders.append(f"{rel}: a second canonical JSON")
            for name in ("urlsafe_b64encode", "urlsafe_b64decode"):
                if list(_calls(source, name)):
                    offenders.append(f"{rel}: a second base64url ({name})")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef) and "b64url" in node.name:
                    offenders.append(f"{rel}: a second base64url ({node.name})")
        if rel != "timefmt.py":
            for name in ("strftime", "isoformat"):
                if list(_calls(source, name)):
                    offenders.append(f"{rel}: a second timestamp format ({name})")
    assert offenders == []


# -- complete values ---------------------------------------------------------------------------


def test_plans_and_requests_are_frozen_and_complete(tmp_path):
    from agentsess.core.profiles import Profile
    from agentsess.core.runs.plan import Plan, Request

    for cls in (Plan, Request):
        assert cls.__slots__ and not hasattr(cls(*(["true"] if cls is Request else [Profile("p"), "n", "a", 1.0, [], None, 60, 61.0])), "__dict__"), cls
    request = Request(["true"])
    assert request.cwd == os.getcwd() and request.env == dict(os.environ) and request.scopes == []
    assert Request(["true"]).scopes is not request.scopes  # a fresh list each time, as a default_factory gives
    plan = Plan(profile=Profile("p"), name="n", agent="a", issued_at=1.0, scopes=[], ceiling=None, ttl=60,
                expires_at=61.0)
    with pytest.raises(AttributeError):
        plan.expires_at = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del request.argv
    assert plan.replace(ttl=30).ttl == 30 and plan.ttl == 60 and plan.replace() == plan
    assert "expires_at=61.0" in repr(plan)
    with pytest.raises(TypeError):
        Plan(profile=Profile("p"), name="n")  # type: ignore[call-arg]  # half a plan cannot be built


def test_a_refused_plan_is_complete(tmp_path):
    from agentsess.core.runs.plan import Refused, Request, make_plan
    from agentsess.edges.config import load_config
    from agentsess.edges.store import Store

    config_path = tmp_path / "c.toml"
    config_path.write_text('[profiles.p]\nscopes = ["a:*"]\nmax_ttl = "1h"\n')
    request = Request(["/bin/echo", "x"], profile="p", scopes=["b:c"], ttl="2h", env={})
    with Store() as store, pytest.raises(Refused) as info:
        make_plan(request, load_config(str(config_path)), store, now=1000.5)
    plan = info.value.plan
    assert (plan.name, plan.agent, plan.scopes, plan.ceiling) == ("echo", "p", ["b:c"], ["a:*"])
    assert plan.expires_at == 1000 + 7200 and plan.parent is None and plan.chain == [] and plan.depth == 0
    assert "b:c" in info.value.message and "max_ttl" in info.value.message


def test_decisions_are_immutable():
    from agentsess.core.guard.policy import Decision

    d = Decision("ask", "why", 0, "git:push")
    for name in ("decision", "reason", "rule", "scope", "other"):
        with pytest.raises(AttributeError):
            setattr(d, name, "allow")
    assert d.replace(decision="deny") == Decision("deny", "why", 0, "git:push")
    assert d.decision == "ask" and not d.allowed and Decision("allow", "").allowed


# -- the starter config and the architecture page ------------------------------------------------


def test_the_starter_config_is_the_schema():
    from agentsess.core.profiles import PROFILE_KEYS, RULE_KEYS
    from agentsess.edges import paths

    with open(paths.starter_config(), encoding="utf-8") as fh:
        text = fh.read()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for key in PROFILE_KEYS + RULE_KEYS:
        assert re.search(rf"\b{key}\b", comments), f"starter.toml does not describe {key}"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        assert "agentsess/data/starter.toml" in fh.read()


def test_config_init_writes_the_starter_byte_for_byte(tmp_path):
    from agentsess.edges import paths
    from agentsess.edges.config import init_config

    target = tmp_path / "config.toml"
    init_config(str(target))
    with open(paths.starter_config(), "rb") as fh:
        assert target.read_bytes() == fh.read()


def test_the_architecture_page_lists_every_module_and_nothing_else():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as fh:
        page = fh.read()
    listed = set(re.findall(r"^- `([\w/]+\.(?:py|toml))`", page, re.M))
    present = {rel.replace(os.sep, "/") for rel in modules() if not rel.endswith(os.sep + "__init__.py")}
    present.add("data/starter.toml")
    assert sorted(present - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - present) == [], "docs/architecture.md lists modules that do not exist"
    packages = {os.path.dirname(rel).replace(os.sep, "/") for rel in modules() if os.sep in rel}
    for package in packages:
        assert f"`{package}/`" in page, f"docs/architecture.md has no section for {package}/"


@pytest.mark.parametrize("env", [
    {}, {"XDG_DATA_HOME": "/srv/data", "XDG_CONFIG_HOME": "/srv/config"}, {"XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""},
    {"XDG_DATA_HOME": "relative/data", "XDG_CONFIG_HOME": "rel"}, {"HOME": "/home/someone/"}, {"HOME": "/"},
    {"HOME": "relative-home"}, {"XDG_DATA_HOME": "/srv/data/", "HOME": "/home/x"},
], ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()) or "defaults")
def test_the_default_data_root_and_config_are_platformdirs_own(env):
    # paths reads the XDG folders itself (platformdirs' import is ~10 ms of every run): they must agree
    code = ("import json, platformdirs, os; from agentsess.edges import paths; "
            "print(json.dumps([paths.data_root(), platformdirs.user_data_dir('agentsess'), paths.config_file(), "
            "os.path.join(platformdirs.user_config_dir('agentsess'), 'config.toml')]))")
    base = {k: v for k, v in os.environ.items() if k not in ("AGENTSESS_HOME", "AGENTSESS_CONFIG", "XDG_DATA_HOME",
                                                            "XDG_CONFIG_HOME")}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    ours, theirs, our_config, their_config = json.loads(proc.stdout)
    assert (ours, our_config) == (theirs, their_config)
