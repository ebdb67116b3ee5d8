"""Agent integrations set up at run start: Claude Code hooks and shell-command capture.

Claude Code (detected by the command name ``claude``, or ``--agent claude-code``): the run
gets its own settings file, passed with ``--settings FILE`` (the user's own settings files
are never touched), whose hooks call ``agentsess hook claude-code --run RUN`` for
PreToolUse/PostToolUse (all tools) and SessionStart/SessionEnd; and
``CLAUDE_CODE_SHELL_PREFIX`` points at a small per-run script that runs each shell command
through ``agentsess exec`` (an ``action.exec`` receipt each).

Shell capture (``--capture-shell``): ``BASH_ENV`` names a script that every non-interactive
bash sources; it installs a DEBUG trap that appends one line per command to the run's spool
file, which the supervisor turns into ``action.exec`` receipts. Best effort, and documented
as such: it sees only non-interactive bash (not sh, dash, zsh, interactive shells, or
programs run without a shell), the agent can switch it off or write to the spool, nested
shells deeper than 4 and more than 10000 commands per shell are not recorded.
"""

import json
import os
import shlex
import sys

from agentsess.edges import paths

CLAUDE_EVENTS = ("PreToolUse", "PostToolUse", "SessionStart", "SessionEnd")
MAX_DEPTH = 4
MAX_COMMANDS = 10000


def agentsess_command() -> str:
    """How a hook or script inside the run calls this agentsess: the console script installed
    beside this interpreter (no `-m` start-up cost), else this interpreter with `-m`."""
    script = os.path.join(os.path.dirname(sys.executable), "agentsess")
    if os.access(script, os.X_OK):
        return shlex.quote(script)
    return f"{shlex.quote(sys.executable)} -m agentsess"


def wants_claude_code(argv: list[str], integration: str | None) -> bool:
    if integration == "none":
        return False
    if integration == "claude-code":
        return True
    return os.path.basename(argv[0]) in ("claude", "claude-code")


def setup_claude_code(run_id: str, argv: list[str]) -> tuple[list[str], dict, dict]:
    """(argv with --settings, extra environment, facts for the receipt)."""
    hook = f"{agentsess_command()} hook claude-code --run {run_id}"
    entry = [{"type": "command", "command": hook, "timeout": 60}]
    hooks = {}
    for event in CLAUDE_EVENTS:
        hooks[event] = [{"matcher": "*", "hooks": entry}] if event.endswith("ToolUse") else [{"hooks": entry}]
    settings = paths.claude_settings(run_id)
    paths.write_private(settings, json.dumps({"hooks": hooks}, indent=2).encode())
    paths.ensure_dir(paths.run_bin_dir(run_id))
    prefix = paths.shell_prefix(run_id)
    script = (
        "#!/bin/sh\n"
        "# agentsess: records each shell command of this Claude Code run, then runs it unchanged\n"
        f"AGENTSESS_RUN_ID={shlex.quote(run_id)} exec {agentsess_command()} exec --source claude-code -c \"$*\"\n"
    )
    paths.write_private(prefix, script.encode())
    os.chmod(prefix, 0o700)
    new_argv = [argv[0], "--settings", settings, *argv[1:]]
    return new_argv, {"CLAUDE_CODE_SHELL_PREFIX": prefix}, {"settings": settings, "shell_prefix": prefix}


def setup_shell_capture(run_id: str) -> tuple[dict, str]:
    """(environment for the child, the spool path) for --capture-shell."""
    spool = paths.shell_spool(run_id)
    os.close(paths.open_private(spool, os.O_WRONLY | os.O_CREAT))
    script = paths.capture_script(run_id)
    body = f"""# agentsess shell capture for run {run_id} (best effort; see `agentsess run --help`)
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
      case "$BASH_COMMAND" in __agentsess_*) return $rc;; esac
      __agentsess_flush "$rc"
      if [ "$__agentsess_n" -lt {MAX_COMMANDS} ]; then
        __agentsess_n=$(( __agentsess_n + 1 ))
        __agentsess_cmd=$BASH_COMMAND
        __agentsess_t0=${{EPOCHREALTIME:-$(date +%s)}}
      fi
      return $rc
    }}
    trap '__agentsess_debug' DEBUG
    trap '__agentsess_flush $?' EXIT
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
        return out
