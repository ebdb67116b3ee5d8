"""Run mutmut over one group of security-critical modules, with the narrowest tests that cover it.

    .venv/bin/python tests/mutation/run.py verify        # or tokens, scopes, masking, rules, hooks
    .venv/bin/python tests/mutation/run.py verify --max-children 2

Each group runs in its own copy of the worktree (``.cache/mutation/GROUP``, ignored by git),
with ``[tool.mutmut]`` of ``pyproject.toml`` narrowed to the group's modules and tests, under
``nice -n 19``. mutmut keeps its results there, so a second run only tries what changed; the
summary line printed at the end (killed, survived, no tests, timeout) goes in
docs/mutation-testing.md. ``mutmut show NAME`` / ``mutmut results`` work from that folder.
Not collected by pytest (no ``test_`` prefix); needs ``pip install mutmut`` (3.x).
"""

import os
import re
import resource
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# group: (modules mutated, tests run against them)
GROUPS = {
    "verify": (["agentsess/core/receipts/verify.py"], ["tests/mutation/test_verify_mutants.py"]),
    "tokens": (
        ["agentsess/core/credentials/tokens.py"],
        ["tests/test_tokens.py", "tests/test_mutants.py", "tests/mutation/test_token_mutants.py"],
    ),
    "scopes": (
        ["agentsess/core/credentials/scopes.py"],
        ["tests/test_scopes.py", "tests/test_mutants.py", "tests/mutation/test_scope_mutants.py"],
    ),
    # test_masking_holds.py, test_guard.py and tests/agents/ reach these modules only inside
    # `python -m agentsess` processes, which mutmut cannot see: they would only slow a run
    "masking": (["agentsess/core/guard/masking.py"], ["tests/mutation/test_masking_mutants.py", "tests/test_masking.py"]),
    "rules": (
        ["agentsess/core/guard/policy.py", "agentsess/core/guard/commands.py"],
        ["tests/mutation/test_rule_mutants.py", "tests/test_commands.py"],
    ),
    "hooks": (
        ["agentsess/core/guard/agents/*", "agentsess/cli/guard.py", "agentsess/core/runs/authority.py"],
        ["tests/mutation/test_hook_boundary.py"],
    ),
}

MEMORY_LIMIT = 2 << 30  # bytes of address space for mutmut and each mutant it runs

# the trampolines mutmut adds import modules of their own: import-cost tests do not apply
DESELECT = ["tests/test_tokens.py::test_mint_does_not_import_pyjwt_or_keyring"]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def prepare(group: str) -> str:
    modules, tests = GROUPS[group]
    tests = [t for t in tests if os.path.exists(os.path.join(ROOT, t))]
    work = os.path.join(ROOT, ".cache", "mutation", group)
    os.makedirs(work, exist_ok=True)
    for folder in ("agentsess", "tests"):
        target = os.path.join(work, folder)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, folder), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(ROOT, "pyproject.toml")) as fh:
        project = fh.read()
    head, _, _ = project.partition("[tool.mutmut]")
    # on a test's timeout, end the whole test process (exit 1: killed): the default (a signal
    # raising inside the test) lets hypothesis catch it and re-run the endless example for ever
    head = head.replace("[tool.pytest.ini_options]\n", '[tool.pytest.ini_options]\ntimeout_method = "thread"\n', 1)
    args = ["-p", "no:cacheprovider", "-q", "-x"]
    for test in DESELECT:
        args += ["--deselect", test]
    config = (
        "[tool.mutmut]\n"
        'source_paths = ["agentsess"]\n'
        f"only_mutate = {_toml_list(modules)}\n"
        f"pytest_add_cli_args = {_toml_list(args)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
    )
    with open(os.path.join(work, "pyproject.toml"), "w") as fh:
        fh.write(head.rstrip() + "\n\n" + config)
    return work


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in GROUPS:
        print(f"usage: run.py {{{','.join(GROUPS)}}} [mutmut run options]", file=sys.stderr)
        return 2
    work = prepare(argv[0])
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    # a mutant that loops for ever waits out pytest-timeout's limit (120 s in pyproject.toml):
    # 30 s is still 15 times the slowest of these tests on a loaded machine (set outside
    # [tool.mutmut], so mutmut's cached results, keyed by its own configuration, stay valid)
    env.setdefault("PYTEST_TIMEOUT", "30")
    # a mutant that loops appending (``while j == -1``) would take the machine's memory: cap it
    limit = (MEMORY_LIMIT, MEMORY_LIMIT)
    code = subprocess.call(["nice", "-n", "19", mutmut, "run", *argv[1:]], cwd=work, env=env,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, limit))
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
    counts: dict[str, int] = {}
    for line in out.stdout.splitlines():
        found = re.match(r"\s*(\S+): (\w[\w ]*)$", line)
        if found:
            counts[found.group(2)] = counts.get(found.group(2), 0) + 1
    print(f"{argv[0]}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
