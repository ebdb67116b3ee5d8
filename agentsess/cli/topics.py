"""`agentsess help [TOPIC|COMMAND]`: the reference a user needs at the terminal, without
the README: scopes, rules, exit codes, the environment, receipts, sub-agents, approvals,
shell completion.

A hot command (no typer, no rich): `help COMMAND` is `agentsess COMMAND --help`.
"""

import sys

from agentsess.errors import USAGE, AgentsessError

TOPICS = {
    "scopes": (
        "What a scope is and how ceilings nest.",
        """\
A scope is segment(:segment)*, e.g. github:pr:create or fs:write. A segment is lowercase
letters, digits and ._-/@. A final * segment covers everything below it: github:* covers
github:pr:create but not github itself; a bare * covers everything.

A run's scopes are its ceiling. They must be covered by its profile's `scopes` (the
profile's ceiling) and, for a sub-agent, by its parent run's scopes; its expiry is capped
at its parent's. A request beyond the ceiling is refused before anything starts, naming
each excess scope, and recorded as a denied run (exit 125).

  agentsess run --scope github:pr:create --ttl 20m -- ./agent.sh
  agentsess check github:pr:create        # inside a run: exit 0 yes, 1 no
""",
    ),
    "rules": (
        "How tool calls (hooks, MCP, check) are decided.",
        """\
Each profile's [[profiles.NAME.rules]] are checked in order; the first whose `tool` and
`args` match decides. `tool` is exact or a glob: Bash, Edit, mcp:SERVER:TOOL (calls
through `agentsess mcp-proxy --name SERVER`, and the agents' own MCP tools: Claude Code's
mcp__SERVER__TOOL is checked as mcp:SERVER:TOOL). `args` is a glob over the call's main argument: `command` for Bash,
else file_path, path, url, pattern or query, else the JSON of the input.

  [[profiles.claude.rules]]
  tool = "Bash"
  args = "git push*"
  scope = "git:push"      # allowed only while the run is live and holds git:push
  decision = "allow"      # allow, deny or ask

A matched rule applies only while the run is live and holds its `scope`; otherwise the
call is denied. Calls no rule matches get the profile's default_decision. Every decision
is a receipt (action.checked) of the run. The hook fails closed: any failure is exit 2,
which Claude Code treats as "blocked".

`ask` goes to the agent's own prompt (approval = "agent"), or, with approval = "human", the
call is held until you answer from a terminal outside the run, for approval_timeout at most:
  agentsess approvals                     # what waits: RUN, REQUEST, tool, what it would do
  agentsess approve RUN REQ [--for 10m]   # that exact call, once (or again until then)
  agentsess deny RUN REQ --reason TEXT
""",
    ),
    "exit-codes": (
        "What each exit code of run and the other commands means.",
        """\
run:    the child's own exit code
        128+N   the child died of signal N
        124     agentsess stopped it (revoked, or expired under on_expiry = "stop")
        125     agentsess failed or refused (bad option or config, a scope or ttl beyond
                the ceiling, a dead parent, a data root it cannot use)
        126     the command is not executable
        127     the command was not found
others: 0       ok
        1       a check said no: invalid token, failed verification, denied, doctor
                found a failure
        2       usage: bad arguments or config, unknown or ambiguous run, outside a run
        4       the data root, store or config file cannot be used (unwritable,
                read-only, corrupted, shared with other users, another user's)
hook:   2 on every failure, so that Claude Code blocks the call.

Errors are one line on stderr: `agentsess: error: ...`; AGENTSESS_DEBUG=1 (or
`agentsess --debug COMMAND`) shows tracebacks.
""",
    ),
    "environment": (
        "The settings agentsess reads, and what a run's child gets.",
        """\
Settings (read by agentsess, never passed to the agent):
  AGENTSESS_HOME       the data root (default ~/.local/share/agentsess). An existing folder
                       is used as it is, never chmodded; one others may write to, or that
                       belongs to another user, is refused. On read-only media, runs,
                       show-run, verify and export still read it.
  AGENTSESS_CONFIG     the config file (default ~/.config/agentsess/config.toml)
  AGENTSESS_KEYRING    system (require an OS keyring) or file (a 0600 file in the data root)
  AGENTSESS_DEBUG=1    tracebacks of unexpected errors
  NO_COLOR             no colours

A run's child gets AGENTSESS_RUN_ID, AGENTSESS_TOKEN, AGENTSESS_SCOPES,
AGENTSESS_EXPIRES_AT, AGENTSESS_AGENT, AGENTSESS_PARENT_RUN_ID and AGENTSESS_CONTROL, and
your environment with credential-shaped variables scrubbed. A profile's pass_env (or
--pass-env NAME) lets a variable through; agentsess says which it kept back.
""",
    ),
    "receipts": (
        "What a run records, and how to check it on another machine.",
        """\
Each run has one receipt stream: JSON Lines, hash-chained (each record holds the hash of
the one before), ending in a seal signed with agentsess's Ed25519 key. Terminal output goes
to a separate masked log whose digest the seal covers.

  agentsess show-run RUN                  # the timeline (first and last receipts; --all)
  agentsess verify RUN | --all            # chain, store head, seal, output digest
  agentsess export RUN --format bundle -o run.bundle.json
  agentsess verify run.bundle.json --jwks jwks.json     # on any machine
  agentsess verify --strict RUN           # also fail on unchecked actions

An unchecked action is an action.exec or net.request that no allowing action.checked
covers: a hook that did not fire, a command or program that never asked. show-run and
verify list them; runs --json counts them (unchecked_actions).

A bundle holds the stream and the signer's JWKS, but is not trusted by its own keys:
--jwks names the keys you trust (`agentsess jwks` on the signing machine, or the bundle
itself when you got it from a place you trust).
""",
    ),
    "subagents": (
        "A child run per sub-agent an agent spawns inside itself.",
        """\
A sub-agent Claude Code (its Agent/Task tool) or Codex (spawn_agent) spawns gets a child run
of its own on its first tool call (the hook's agent_id/agent_type): its own run id, receipt
stream and token (whose act claim is the delegation chain: the sub-agent acting for the
orchestrator acting for you), scopes = the parent's narrowed by the profile's table, expiry
no later than the parent's. Its calls are decided against its scopes and recorded in its
run; the orchestrator's planning loop stays in the parent. SubagentStop (or the parent's
end) ends the child run and seals its stream.

  [profiles.claude.subagents]
  scopes = ["fs:read", "git:status"]    # every sub-agent's (cut down to the parent's)
  [profiles.claude.subagents.types]
  Explore = ["fs:read"]                 # one agent_type's, instead

  agentsess runs --tree                 # sub-agents under their parents
  agentsess show-run RUN                # its children
  agentsess revoke SUBRUN --reason TEXT # that sub-agent only: its later calls denied with
                                        # the reason, its running commands killed (on_revoke)

An agent_id with control characters or over 128 characters, an agent_type that changes, or
an id used again after SubagentStop (without a new SubagentStart, which gives it a new run)
is refused; a revoked or expired sub-agent never comes back.
""",
    ),
    "approval": (  # not "approvals": that is a command, and `help COMMAND` is its --help
        "Calls a rule asks about, held for your answer (approval = \"human\").",
        """\
A rule's decision = "ask" goes to the agent's own prompt (approval = "agent", the default:
Claude Code asks in its terminal; Codex, Gemini, the MCP proxy and `check` deny). With
approval = "human" the run's supervisor holds the call, records approval.requested (tool,
masked summary, SHA-256 of the exact arguments, a six-letter request id), prints one line on
the run's terminal (held while a full-screen program is up) and notifies the desktop where
notify-send exists. Answer from any terminal outside the run:

  agentsess approvals [RUN] [--json]           # what waits, oldest first
  agentsess approve RUN REQ [--for 10m]        # that exact call, once (or again until then)
  agentsess deny RUN REQ --reason TEXT         # the agent is told the reason

An answer is for one request of one run and the hash of its exact arguments: approving
`git push origin main` does not approve `git push --force`. Nobody answers within
approval_timeout (default 5m): denied, saying so. Receipts: approval.requested,
approval.granted (by user@host, when, for how long), approval.denied, approval.expired.
approvals, approve and deny are refused inside a run.
""",
    ),
    "completion": (
        "Tab completion for bash, zsh and fish.",
        """\
  agentsess --show-completion bash|zsh|fish     # print the script
  agentsess --install-completion bash|zsh|fish  # write it where the shell looks

Installed places: bash ~/.local/share/bash-completion/completions/agentsess, zsh
~/.zfunc/_agentsess (add `fpath+=~/.zfunc; autoload -U compinit; compinit` to ~/.zshrc),
fish ~/.config/fish/completions/agentsess.fish. Commands, subcommands and help topics
complete; so do run ids after `show-run`, `verify`, `export` and `revoke`. Where agentsess
has nothing to offer (a FILE, the command after `run --`), the shell completes file names.
""",
    ),
}


def overview() -> str:
    from agentsess.cli.commands import BY_NAME

    width = max(len(name) for name in TOPICS) + 2
    lines = ["Usage: agentsess help [TOPIC | COMMAND]", "", "  " + BY_NAME["help"].summary, "", "Topics:"]
    lines += [f"  {name.ljust(width)}{summary.lower()[:1] + summary[1:]}" for name, (summary, _) in TOPICS.items()]
    lines += ["", "`agentsess help COMMAND` is `agentsess COMMAND --help`; `agentsess --help` lists the commands."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from agentsess.cli.commands import BY_NAME

    words = [a for a in argv if a not in ("-h", "--help")]
    if not words:
        sys.stdout.write(overview())
        return 0
    if len(words) > 1:
        raise AgentsessError("help takes one TOPIC or COMMAND (see `agentsess help`)", USAGE)
    topic = words[0]
    if topic in ("exit", "exitcodes", "exit_codes", "codes"):
        topic = "exit-codes"
    if topic in TOPICS:
        summary, body = TOPICS[topic]
        sys.stdout.write(f"{topic}: {summary}\n\n{body}")
        return 0
    if topic in BY_NAME and topic != "help":
        from agentsess.cli.entry import main as agentsess

        return agentsess([topic, "--help"])
    shown = topic if topic.isprintable() and len(topic) <= 40 else repr(topic[:40])
    raise AgentsessError(
        f"no help topic or command '{shown}': topics are {', '.join(TOPICS)} (see `agentsess help`)", USAGE
    )
