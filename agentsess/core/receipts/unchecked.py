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
  (``command_sha256``), or its text as one of the call's simple commands (not a substring:
  ``sh`` is not in ``git push``); Claude Code's own wrapper around a checked command (its
  snapshot ``source``, ``shopt``, ``pwd -P``) is covered by that command's check, and its
  ``eval '…'`` by the check of the command it runs;
- a ``net.request`` matches a call that names its upstream (its host, or its service's
  variables: ``$API_URL``, ``$GH_TOKEN``, the base URL and key the run gave the agent) and
  its path (a command line, a URL), in the run or in one of its sub-agents' runs (so
  does a shell-capture or plain exec: a Codex sub-agent's command runs as the orchestrator's); git's
  smart-HTTP requests match a checked ``git`` command that makes them (a push ``git push``,
  a fetch ``git fetch``, ``pull``, ``clone``…); the agent's own model API
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
                      r"|pwd -P.*|true|\S*/agentsess-exec .+)$", re.S)


def _checks(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") == "action.checked" and (r.get("data") or {}).get("decision") != "deny"]


def _texts(data: dict) -> list[str]:
    out = [t for t in [data.get("summary")] if isinstance(t, str)]
    out += [c for c in data.get("commands") or () if isinstance(c, str)]
    return out


def _services(policy: dict | None) -> dict[str, dict]:
    """The run's services as their profile snapshot gives them (presets filled in)."""
    services = (policy or {}).get("services") or {}
    if not services:
        return {}
    from agentsess.core.credentials.services import PRESETS

    tables = {name: {} for name in services} if isinstance(services, list) else dict(services)
    return {name: {**PRESETS.get(name, {}), **(table if isinstance(table, dict) else {})}
            for name, table in tables.items()}


def _model_services(records: list[dict], services: dict[str, dict]) -> set[str]:
    """The services that are the agent's own model API in this run."""
    started = next((r for r in records if r.get("type") == "run.started"), None)
    integration = ((started or {}).get("data") or {}).get("integration") or {}
    wanted = {MODEL_URL_VARS[k] for k in integration if k in MODEL_URL_VARS}
    return {name for name, spec in services.items() if spec.get("env_base_url") in wanted}


def _names(service: dict | None, host) -> list[str]:
    """What a command that reaches a request's upstream says: its host, or the service's
    variables (``$API_URL``, ``${GH_TOKEN}``: the base URL and key the agent was given)."""
    out = [host] if isinstance(host, str) and host else []
    if service:
        keys = service.get("env_key") or []
        for var in [service.get("env_base_url"), *([keys] if isinstance(keys, str) else keys)]:
            if isinstance(var, str) and var:
                out += ["$" + var, "${" + var]
    return out


def find(records: list[dict], policy: dict | None = None, related: list[dict] | None = None) -> list[dict]:
    """The unchecked actions among ``records`` (one run's stream): ``{"seq", "type", "what",
    "source"}`` each. ``related`` are more records whose checks count for ``net.request``
    and for shell-capture and plain ``action.exec`` (the run's sub-agents' streams); ``policy``
    is the run's profile snapshot."""
    checked_at = {}
    allowing: list[dict] = []
    model: set[str] | None = None
    services: dict[str, dict] = {}
    others: list[dict] | None = None  # the sub-agents' allowing checks, read once when needed
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
            if others is None:
                others = [r.get("data") or {} for r in _checks(list(related or ()))]
            # a shell-capture or plain exec of a command a sub-agent's hook let through (Codex's
            # sub-agents' commands run as the orchestrator's) is checked, in the sub-agent's run;
            # a shell-prefix exec must name its own check
            if not _exec_matched(data, checked_at, allowing) and not (
                    others and "checked" not in data and _exec_matched(data, {}, others)):
                out.append({"seq": rec.get("seq"), "type": rtype, "what": str(data.get("command"))[:200],
                            "source": data.get("source")})
        elif rtype == "net.request":
            if model is None:
                services = _services(policy)
                model = _model_services(records, services)
                if others is None:
                    others = [r.get("data") or {} for r in _checks(list(related or ()))]
            if data.get("service") in model:
                continue
            host = data.get("host")
            service = data.get("service")
            names = _names(services.get(service) if isinstance(service, str) else None, host)
            if not any(_covers(t, names, data.get("path")) for c in allowing + (others or []) for t in _texts(c)):
                what = f"{data.get('method')} {host}:{data.get('port')}{data.get('path') or ''}"
                out.append({"seq": rec.get("seq"), "type": rtype, "what": what[:200], "source": data.get("service")})
    return out


# git's smart-HTTP requests, and the git commands that make them
_GIT_PUSH = re.compile(r"(^|[\s;&|(])git\s+(\S+\s+)*?push\b")
_GIT_FETCH = re.compile(r"(^|[\s;&|(])git\s+(\S+\s+)*?(fetch|pull|clone|ls-remote|remote\s+update|submodule)\b")


def _covers(text: str, names: list[str], path) -> bool:
    """Does a checked call's ``text`` cover a request: it names the upstream (host or service
    variable) and the request's path (``/`` needs none); git's smart-HTTP requests are
    covered by a checked git command that makes them (``git push`` a push, ``git fetch``,
    ``pull``, ``clone``… a fetch)."""
    full = path if isinstance(path, str) else ""
    path = full.split("?", 1)[0]
    if path.endswith("/git-receive-pack") or (path.endswith("/info/refs") and "service=git-receive-pack" in full):
        return bool(_GIT_PUSH.search(text))
    if path.endswith("/git-upload-pack") or path.endswith("/info/refs"):
        return bool(_GIT_FETCH.search(text) or _GIT_PUSH.search(text))
    if not any(n in text for n in names):
        return False
    return path in ("", "/") or path in text


def _among(command: str, text: str) -> bool:
    """``command`` is ``text``, or one of the simple commands in it (bounded by the start or
    end, blanks, ``;``, ``&``, ``|`` or parentheses): not a mere substring (``sh`` is not in
    ``git push``)."""
    if command == text:
        return True
    return re.search(r"(^|[\s;&|()])" + re.escape(command) + r"($|[\s;&|()])", text) is not None


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
        if isinstance(command, str) and command and any(_among(command, t) for t in _texts(check)):
            return True
    if data.get("source") == "shell-capture" and isinstance(command, str):
        if command.startswith("eval "):  # Claude Code's wrapper runs the model's command with eval '…'
            inner = _unquoted(command[5:])
            if inner is None:
                return False
            from agentsess.digest import sha256_text

            return _exec_matched({"command": inner, "command_sha256": sha256_text(inner)}, checked_at, allowing)
        if _WRAPPER.match(command):
            return any(c.get("source") == "claude-code" and c.get("command_sha256") for c in allowing)
    return False


def _unquoted(words: str) -> str | None:
    """The command ``eval WORDS`` runs: its words unquoted and joined, up to a redirection
    (Claude Code's ``eval '…' < /dev/null``); None if they do not parse."""
    import shlex

    lexer = shlex.shlex(words, posix=True, punctuation_chars="<>|&;")
    lexer.whitespace_split = True
    out = []
    try:
        for token in lexer:
            if token and not token.strip("<>|&;"):
                break
            out.append(token)
    except ValueError:
        return None
    return " ".join(out)


def of_run(row: dict, store=None) -> list[dict]:
    """The unchecked actions of run ``row`` (its stream, and its sub-agents' checks); with a
    shared store, a stream on another machine is read from the store's mirror."""
    records = _load(row["id"], store)
    related: list[dict] = []
    if store is not None and any(r.get("type") in ("net.request", "action.exec") for r in records):
        for child in store.descendants(row["id"]):
            related += _load(child["id"], store)
    return find(records, row.get("policy"), related)


def _load(run_id: str, store) -> list[dict]:
    try:
        if store is None:
            from agentsess.edges import streams

            return streams.load(run_id)
        from agentsess.core.receipts import mirror

        return mirror.records(store, run_id)[0]
    except (OSError, ValueError):
        return []
