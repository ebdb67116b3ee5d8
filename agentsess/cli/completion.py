"""Shell completion for bash, zsh and fish: ``--show-completion SHELL`` prints a script,
``--install-completion SHELL`` writes it where the shell looks. The scripts ask
``agentsess --complete INDEX WORD...`` for the candidates of word INDEX, so completion
follows the command table: commands, a group's subcommands, a command's options, help
topics, and run ids (the 20 newest and ``last``) where a RUN is taken.
"""

import os
import sys

from agentsess.errors import USAGE, AgentsessError

SHELLS = ("bash", "zsh", "fish")

BASH = """\
# agentsess completion for bash
_agentsess() {
    local IFS=$'\\n'
    COMPREPLY=($(agentsess --complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null))
}
complete -o default -F _agentsess agentsess
"""

ZSH = """\
#compdef agentsess
# agentsess completion for zsh
_agentsess() {
    local -a candidates
    candidates=("${(@f)$(agentsess --complete $((CURRENT - 1)) "${words[@]}" 2>/dev/null)}")
    candidates=(${candidates:#})
    if (( ${#candidates} )); then
        compadd -a candidates
    else
        _default  # a FILE, or the child's command line after `run --`: the shell's own
    fi
}
if [ "$funcstack[1]" = "_agentsess" ]; then
    _agentsess "$@"
else
    compdef _agentsess agentsess
fi
"""

FISH = """\
# agentsess completion for fish
function __agentsess_complete
    set -l words (commandline -opc) (commandline -ct)
    agentsess --complete (math (count $words) - 1) $words 2>/dev/null
end
complete -c agentsess -f -n 'test -n "$(__agentsess_complete)"' -a '(__agentsess_complete)'
complete -c agentsess -F -n 'test -z "$(__agentsess_complete)"'  # a FILE: the shell's own
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

# commands whose first argument is a run
TAKES_RUN = {"show-run", "verify", "export", "revoke"}
RUN_OPTIONS = {"--parent"}


def install_path(shell: str) -> str:
    home = os.path.expanduser("~")
    if shell == "bash":
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
        return os.path.join(base, "bash-completion", "completions", "agentsess")
    if shell == "zsh":
        return os.path.join(home, ".zfunc", "_agentsess")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(base, "fish", "completions", "agentsess.fish")


def _shell(argv: list[str]) -> str:
    shell = argv[1] if len(argv) > 1 else os.path.basename(os.environ.get("SHELL", ""))
    if shell not in SHELLS:
        raise AgentsessError(f"{argv[0]}: give a shell: bash, zsh or fish (not '{shell[:20]}')", USAGE)
    return shell


def show(argv: list[str]) -> int:
    sys.stdout.write(SCRIPTS[_shell(argv)])
    return 0


def install(argv: list[str]) -> int:
    shell = _shell(argv)
    path = install_path(shell)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(SCRIPTS[shell])
        os.replace(tmp, path)
    except OSError as exc:
        raise AgentsessError(f"cannot write {path}: {exc.strerror or exc}", 4) from None
    hint = {
        "bash": "new bash shells load it (with the bash-completion package)",
        "zsh": "add `fpath+=~/.zfunc; autoload -U compinit; compinit` to ~/.zshrc",
        "fish": "new fish shells load it",
    }[shell]
    sys.stderr.write(f"agentsess: wrote {path}; {hint}\n")
    return 0


def _subcommands(name: str) -> list[str]:
    from agentsess.cli.commands import BY_NAME

    app = BY_NAME[name].load()
    return [c.name for c in app.registered_commands if c.name]


def _options(words: list[str]) -> list[str]:
    """The options of the command ``words`` name (``["key", "rotate"]``, ``["runs"]``)."""
    from agentsess.cli.commands import BY_NAME

    command = BY_NAME[words[0]]
    if command.hot:
        import argparse
        import importlib

        module = importlib.import_module(command.module)
        make = getattr(module, f"{command.name.replace('-', '_')}_parser", None) or getattr(module, "parser", None)
        if make is None:
            return ["--help"]
        parser: argparse.ArgumentParser = make()
        return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))
    import typer.main

    from agentsess.cli.app import build

    group = typer.main.get_command(build([command.name]))
    cmd = group.commands.get(command.name) if hasattr(group, "commands") else None
    if cmd is not None and len(words) > 1 and hasattr(cmd, "commands"):
        cmd = cmd.commands.get(words[1])
    if cmd is None:
        return ["--help"]
    return sorted({o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("--")} | {"--help"})


def _run_ids() -> list[str]:
    try:
        from agentsess.core.runs.history import list_runs

        return ["last"] + [r["id"] for r in list_runs(limit=20)]
    except Exception:  # completion never fails loudly
        return ["last"]


def candidates(index: int, words: list[str]) -> list[str]:
    """What word ``index`` of the command line ``words`` (``words[0]`` is agentsess) may be."""
    from agentsess.cli.commands import BY_NAME, COMMANDS

    current = words[index] if 0 <= index < len(words) else ""
    before = words[1:index]
    if not before:
        found = [c.name for c in COMMANDS] if not current.startswith("-") else [
            "--help", "--version", "--debug", "--show-completion", "--install-completion"]
    elif before[-1] in ("--show-completion", "--install-completion"):
        found = list(SHELLS)
    elif before[0] not in BY_NAME:
        found = []
    elif before[0] == "help":
        from agentsess.cli.topics import TOPICS

        found = list(TOPICS) + [c.name for c in COMMANDS if c.name != "help"] if len(before) == 1 else []
    elif "--" in before:
        return []  # the child's command line: the shell's own completion (-o default)
    elif BY_NAME[before[0]].group and len(before) == 1 and not current.startswith("-"):
        found = _subcommands(before[0])
    elif current.startswith("-"):
        found = _options(before[:2] if BY_NAME[before[0]].group else before[:1])
    elif before[-1] in RUN_OPTIONS or (before[0] in TAKES_RUN and len(before) == 1):
        found = _run_ids()
    else:
        found = []
    return [c for c in found if c.startswith(current)]


def complete(argv: list[str]) -> int:
    """``--complete INDEX WORD...``: one candidate a line."""
    try:
        index = int(argv[1])
    except (IndexError, ValueError):
        return USAGE
    for word in candidates(index, argv[2:]):
        if word.isprintable():
            sys.stdout.write(word + "\n")
    return 0
