"""The data of action receipts: ``action.checked`` (a decision), ``action.exec`` (a shell
command), and the masked, size-capped summaries and SHA-256 digests they carry.

A receipt never holds a credential: every summary goes through
:func:`agentsess.core.guard.redaction.redact`, and the full value is kept only as a digest.
"""

from agentsess.core.guard.policy import MAIN_ARGUMENT_KEYS, Decision, main_argument
from agentsess.digest import sha256_text
from agentsess.encoding import canonical_text

SUMMARY_CAP = 512
RESULT_CAP = 2048
REDACT_MARGIN = 8192


def capped(text: str, cap: int = SUMMARY_CAP) -> str:
    """``text`` with credentials masked, cut to ``cap`` characters.

    Redaction reads only the part that can be kept (plus a margin), so a tool result of
    several MB costs no more to record than a small one.
    """
    from agentsess.core.guard.redaction import redact

    window = cap + REDACT_MARGIN
    rest = max(0, len(text) - window)
    text = redact(text[:window])
    if len(text) + rest > cap:
        text = text[:cap] + f"… [{len(text) + rest - cap} more characters]"
    return text


def summarise(args, cap: int = SUMMARY_CAP) -> tuple[str, str]:
    """(a masked, size-capped summary of ``args``, the SHA-256 of their full canonical JSON)."""
    full = canonical_text(args)
    digest = sha256_text(full)
    text = full
    if isinstance(args, dict) and any(isinstance(args.get(k), str) for k in MAIN_ARGUMENT_KEYS):
        text = main_argument(args)
    return capped(text, cap), digest


def checked_receipt(decision: Decision, tool: str, args, source: str, extra: dict | None = None) -> dict:
    """The data of an ``action.checked`` receipt: the call (summarised), the decision and why."""
    data: dict = {"tool": tool, "source": source}
    if args is not None:
        data["summary"], data["args_sha256"] = summarise(args)
    data.update({"rule": decision.rule, "scope": decision.scope, "decision": decision.decision,
                 "reason": capped(decision.reason, RESULT_CAP)})  # a reason may quote the command
    if decision.commands and (len(decision.commands) > 1 or decision.commands[0] != data.get("summary")):
        data["commands"] = [capped(c, 256) for c in decision.commands[:32]]
    if extra:
        data.update(extra)
    return data


def exec_receipt(command: str, cwd: str, exit_code, duration, source: str, pid, shown: str | None = None) -> dict:
    """The data of an ``action.exec`` receipt: the command masked and capped (``shown``, when
    given, is a version already masked of exact secrets), and the hash of the full command."""
    return {
        "command": capped(command if shown is None else shown),
        "command_sha256": sha256_text(command),
        "cwd": cwd,
        "exit_code": exit_code,
        "duration": None if duration is None else round(duration, 6),
        "source": source,
        "pid": pid,
    }
