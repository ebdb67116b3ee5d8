"""Bypass detection: the actions of a run that no guard decision covers ("unchecked actions").

Hooks do not always fire (sub-agent calls that skip PreToolUse, ``--bare``, a settings file
the agent edited), and a program the agent starts may act without asking. What a run *did*
is recorded apart from what was *checked*: ``action.exec`` (the shell prefix, shell capture,
``agentsess exec``) and ``net.request`` (the broker). An action is matched by an earlier
``action.checked`` that let it through (any decision but ``deny``), in these ways, read off
the receipts the code writes:

- an ``action.exec`` of the shell prefix (source ``claude-code``) names its check: the
  ``checked`` link (seq and hash) of the tool call that ran it, which must be an allowing
  ``action.checked`` of the same stream; no link (``checked: null``) is unchecked;
- an ``action.exec`` of shell capture (one simple command as bash ran it) or of a plain
  ``agentsess exec`` matches a shell call whose command it is: the same command's SHA-256
  (``command_sha256``), or its text among the call's simple commands or within its command
  line; Claude Code's own wrapper around a checked command (its snapshot ``source``,
  ``shopt``, ``eval``, ``pwd -P``) is covered by that command's check;
- a ``net.request`` matches a call that names its host (a command line, a URL, an MCP
  call's summary), in the run or in one of its sub-agents' runs; the agent's own model API
  (the service on its integration's base-URL variable: ``ANTHROPIC_BASE_URL`` for Claude
  Code, ``OPENAI_BASE_URL`` for Codex, ``GOOGLE_GEMINI_BASE_URL`` for Gemini) is the agent
  talking to its model, not an action, and is not flagged.

Best effort by nature (text matching): a flag means "no decision covers this"; no flag is
not a proof that a person or rule saw it.
"""

from __future__ import annotations

import re

MODEL_URL_VARS = {"claude_code": "ANTHROPIC_BASE_URL", "codex": "OPENAI_BASE_URL", "gemini": "GOOGLE_GEMINI_BASE_URL"}
# what Claude Code wraps around the model's command: `source <snapshot> 2>/dev/null && \builtin shopt
# -u extglob && unalias/unset -f of a few names && eval '<cmd>' < /dev/null && pwd -P >| /tmp/claude-…-cwd`,
# run as `<run>/bin/agentsess-exec '<that>'`
_WRAPPER = re.compile(r"^(source \S*shell-snapshots/\S+.*|shopt -u extglob.*|\\builtin (shopt|unalias|unset) .*"
                      r"|pwd -P.*|true|eval .+|\S*/agentsess-exec .+)$", re.S)


def _checks(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") == "action.checked" and (r.get("data") or {}).get("decision") != "deny"]


def _texts(data: dict) -> list[str]:
    out = [t for t in [data.get("summary")] if isinstance(t, str)]
    out += [c for c in data.get("commands") or () if isinstance(c, str)]
    return out


def _model_services(records: list[dict], policy: dict | None) -> set[str]:
    """The services that are the agent's own model API in this run."""
    started = next((r for r in records if r.get("type") == "run.started"), None)
    integration = ((started or {}).get("data") or {}).get("integration") or {}
    wanted = {MODEL_URL_VARS[k] for k in integration if k in MODEL_URL_VARS}
    if not wanted:
        return set()
    from agentsess.core.credentials.services import PRESETS

    services = (policy or {}).get("services") or {}
    tables = {name: {} for name in services} if isinstance(services, list) else dict(services)
    out = set()
    for name, table in tables.items():
        merged = {**PRESETS.get(name, {}), **(table if isinstance(table, dict) else {})}
        if merged.get("env_base_url") in wanted:
            out.add(name)
    return out


def find(records: list[dict], policy: dict | None = None, related: list[dict] | None = None) -> list[dict]:
    """The unchecked actions among ``records`` (one run's stream): ``{"seq", "type", "what",
    "source"}`` each. ``related`` are more records whose checks count for ``net.request``
    (the run's sub-agents' streams); ``policy`` is the run's profile snapshot."""
    checked_at = {}
    allowing: list[dict] = []
    model = None
    out = []
    for rec in records:
        rtype = rec.get("type")
        data = rec.get("data") or {}
        if rtype == "action.checked":
            checked_at[(rec.get("seq"), rec.get("hash"))] = data
            if data.get("decision") != "deny":
                allowing.append(data)
            continue
        if rtype == "action.exec":
            if not _exec_matched(data, checked_at, allowing):
                out.append({"seq": rec.get("seq"), "type": rtype, "what": str(data.get("command"))[:200],
                            "source": data.get("source")})
        elif rtype == "net.request":
            if model is None:
                model = _model_services(records, policy)
            if data.get("service") in model:
                continue
            host = data.get("host")
            if not (isinstance(host, str) and host and any(
                    host in t for c in allowing + [r.get("data") or {} for r in _checks(list(related or ()))]
                    for t in _texts(c))):
                what = f"{data.get('method')} {host}:{data.get('port')}{data.get('path') or ''}"
                out.append({"seq": rec.get("seq"), "type": rtype, "what": what[:200], "source": data.get("service")})
    return out


def _exec_matched(data: dict, checked_at: dict, allowing: list[dict]) -> bool:
    if "checked" in data:  # the shell prefix links the exec to its tool call's check
        link = data.get("checked")
        if not isinstance(link, dict):
            return False
        target = checked_at.get((link.get("seq"), link.get("hash")))
        return target is not None and target.get("decision") != "deny"
    command = data.get("command")
    digest = data.get("command_sha256")
    for check in reversed(allowing):
        if digest and check.get("command_sha256") == digest:
            return True
        if isinstance(command, str) and command and any(command == t or command in t for t in _texts(check)):
            return True
    if data.get("source") == "shell-capture" and isinstance(command, str) and _WRAPPER.match(command):
        return any(c.get("source") == "claude-code" and c.get("command_sha256") for c in allowing)
    return False


def of_run(row: dict, store=None) -> list[dict]:
    """The unchecked actions of run ``row`` (its stream, and its sub-agents' checks)."""
    from agentsess.edges import streams

    try:
        records = streams.load(row["id"])
    except (OSError, ValueError):
        return []
    related: list[dict] = []
    if store is not None and any(r.get("type") == "net.request" for r in records):
        for child in store.descendants(row["id"]):
            try:
                related += streams.load(child["id"])
            except (OSError, ValueError):
                pass
    return find(records, row.get("policy"), related)
