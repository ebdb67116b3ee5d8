"""Agent integrations set up at run start: each agent's hooks, and shell-command capture.

One module per agent (:mod:`.claude`, :mod:`.codex`, :mod:`.gemini`), each with ``setup``
(what the run adds to the agent's command line and environment) and the agent's hook
protocol; :func:`detect` picks the agent from ``--agent`` or the command name.

Shell capture (``--capture-shell``): ``BASH_ENV`` names a script that every non-interactive
bash sources; it installs a DEBUG trap that appends one line per command to the run's spool
file, which the supervisor turns into ``action.exec`` receipts. Best effort, and documented
as such: it sees only non-interactive bash (not sh, dash, zsh, interactive shells, or
programs run without a shell), the agent can switch it off or write to the spool, nested
shells deeper than 4 and more than 10000 commands per shell are not recorded. Claude Code's
own shells (its hooks and shell snapshot, marked ``AI_AGENT=…_harness``) are not recorded.
"""

import os
import shlex
import sys

from agentsess.edges import paths

MAX_DEPTH = 4
MAX_COMMANDS = 10000


# The entry point called directly: pip's console script imports `re` (4 ms of every hook)
# and `-m` costs runpy's imports; `-c` costs neither.
ENTRY = "from agentsess.cli.entry import main; raise SystemExit(main())"


def agentsess_command() -> str:
    """How a hook or script inside the run calls this agentsess: this interpreter, straight
    into the entry point."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(ENTRY)}"


def guarded(hook: str) -> str:
    """A hook command that blocks (exit 2, in all three agents' conventions) when agentsess
    itself dies without answering, killed by a signal or crashed: a hook that ends any other
    way than 0 or 2 lets the call through in Claude Code and Gemini CLI."""
    return f"{hook} || {{ echo 'agentsess: denied: the hook failed' >&2; exit 2; }}"


AGENTS = {"claude-code": ("claude", "claude-code"), "codex": ("codex",), "gemini": ("gemini",)}
PROTOCOLS = {"claude-code": "claude", "codex": "codex", "gemini": "gemini"}


def detect(argv: list[str], integration: str | None) -> str | None:
    """The agent integration for ``argv``: ``--agent``/the profile's ``integration`` when it names
    one, none for ``none``, else from the command's name."""
    if integration == "none":
        return None
    if integration in AGENTS:
        return integration
    name = os.path.basename(argv[0])
    for agent, names in AGENTS.items():
        if name in names:
            return agent
    return None


def protocol(agent: str):
    """The module that speaks ``agent``'s hook protocol (``SOURCE``, ``EVENTS``, ``tool_name``,
    ``pre_answer``, ``result_of``)."""
    if agent not in AGENTS:
        from agentsess.errors import USAGE, AgentsessError

        raise AgentsessError(f"hook: unknown agent '{agent}': expected claude-code, codex or gemini", USAGE)
    import importlib

    return importlib.import_module(f"agentsess.core.guard.agents.{PROTOCOLS[agent]}")


def wants_claude_code(argv: list[str], integration: str | None) -> bool:
    return detect(argv, integration) == "claude-code"


def preflight(argv: list[str], integration: str | None, env: dict, cwd: str) -> None:
    """Refuse (AgentsessError) an agent invocation whose hooks could not run or would be
    dropped, before the run is created."""
    agent = detect(argv, integration)
    if agent is not None:
        protocol(agent).preflight(argv, env, cwd)


def setup(agent: str, run_id: str, argv: list[str], env: dict, held: int = 0) -> tuple[list[str], dict, dict]:
    """(argv to exec, extra environment, facts for the run.started receipt) for ``agent``;
    ``held``: how long a tool call may be held for a person's approval (Claude's hook waits)."""
    folder = paths.run_dir(run_id)
    if agent == "claude-code":
        from agentsess.core.guard.agents import claude

        return claude.setup(run_id, argv, env, folder, agentsess_command(), paths.write_private, held)
    if agent == "codex":
        from agentsess.core.guard.agents import codex

        return codex.setup(run_id, argv, env, folder, agentsess_command(), paths.write_private)
    if agent == "gemini":
        from agentsess.core.guard.agents import gemini

        return gemini.setup(run_id, argv, env, folder, agentsess_command(), paths.write_private)
    raise ValueError(agent)


def setup_claude_code(run_id: str, argv: list[str], env: dict | None = None) -> tuple[list[str], dict, dict]:
    """(argv with --settings, extra environment, facts for the receipt)."""
    return setup("claude-code", run_id, argv, dict(os.environ) if env is None else env)


def setup_shell_capture(run_id: str) -> tuple[dict, str]:
    """(environment for the child, the spool path) for --capture-shell."""
    spool = paths.shell_spool(run_id)
    os.close(paths.open_private(spool, os.O_WRONLY | os.O_CREAT))
    script = paths.capture_script(run_id)
    body = f"""# agentsess shell capture for run {run_id} (best effort; see `agentsess run --help`)
case "${{AI_AGENT:-}}" in *_harness) __agentsess_capturing=$$;; esac  # Claude Code's own shells (hooks, snapshot)
if [ -n "${{BASH_VERSION:-}}" ] && [ "${{__agentsess_capturing:-}}" != "$$" ]; then
  __agentsess_capturing=$$
  export AGENTSESS_CAPTURE_DEPTH=$(( ${{AGENTSESS_CAPTURE_DEPTH:-0}} + 1 ))
  if [ "$AGENTSESS_CAPTURE_DEPTH" -le {MAX_DEPTH} ]; then
    __agentsess_spool={shlex.quote(spool)}
    __agentsess_n=0
    __agentsess_cmd=
    __agentsess_t0=
    __agentsess_flush() {{
      local rc=$1
      if [ -n "$__agentsess_cmd" ]; then
        local c=${{__agentsess_cmd//\\\\/\\\\\\\\}}
        c=${{c//$'\\n'/\\\\n}}
        c=${{c//$'\\t'/\\\\t}}
        printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$__agentsess_t0" "${{EPOCHREALTIME:-$(date +%s)}}" "$rc" "$$" "$PWD" "$c" >> "$__agentsess_spool" 2>/dev/null
      fi
      __agentsess_cmd=
    }}
    __agentsess_debug() {{
      local rc=$?
      case "$BASH_COMMAND" in __agentsess_*|"trap '__agentsess_"*) return $rc;; esac
      __agentsess_flush "$rc"
      if [ "$__agentsess_n" -lt {MAX_COMMANDS} ]; then
        __agentsess_n=$(( __agentsess_n + 1 ))
        __agentsess_cmd=$BASH_COMMAND
        __agentsess_t0=${{EPOCHREALTIME:-$(date +%s)}}
      fi
      return $rc
    }}
    trap '__agentsess_flush $?' EXIT  # before the DEBUG trap, which would record this line
    trap '__agentsess_debug' DEBUG
  fi
fi
"""
    paths.write_private(script, body.encode())
    return {"BASH_ENV": script}, spool


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def _unescape(text: str) -> str:
    """Undo the capture script's escaping of backslash, newline and tab, in one pass."""
    if "\\" not in text:
        return text
    import re

    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


class SpoolReader:
    """Turns new lines of the shell-capture spool into ``action.exec`` receipt data."""

    def __init__(self, path: str, mask=None):
        self.path = path
        self.offset = 0
        self.mask = mask

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        from agentsess.core.guard.actions import exec_receipt
        from agentsess.core.guard.redaction import mask_receipt

        for line in data[: end + 1].decode("utf-8", "replace").splitlines():
            parts = line.split("\t", 5)
            if len(parts) != 6:
                continue
            t0, t1, rc, pid, cwd, command = parts
            command = _unescape(command)
            try:
                duration = float(t1) - float(t0)
            except ValueError:
                duration = None
            out.append(
                exec_receipt(
                    command, cwd, int(rc) if rc.isdigit() else None, duration, "shell-capture",
                    int(pid) if pid.isdigit() else None, self.mask(command) if self.mask else None,
                )
            )
        return [mask_receipt(d, self.mask) for d in out] if self.mask else out  # every field: cwd too
