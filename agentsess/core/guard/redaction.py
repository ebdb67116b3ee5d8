"""Redaction of secrets in tool-call summaries and results.

Two layers. Where the run's secret values are at hand (the supervisor, which holds them),
:func:`secret_masker` masks those exact values and their encodings, whatever their shape (a
database password looks like nothing in particular), and :func:`mask_receipt` applies it to
every string of a receipt's data. The guard, paid on every tool call, has no secret values
to hand when it runs in the agent's process tree, so receipts of tool calls also mask what
looks like a credential (:func:`redact`): JWTs
(agentsess tokens among them), well-known token prefixes (GitHub, OpenAI/Anthropic, AWS,
Slack, npm, PyPI), bearer and basic credentials, URL passwords, private key blocks, and the
value of any ``NAME=value`` / ``"name": "value"`` whose name says token, secret, password or
key.
"""

import re

MASK = "[masked]"
# what actions.capped appends to a summary it cut
_CUT = re.compile(r"… \[\d+ more characters\]\Z")

_PATTERNS = (
    r"""
      eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+          # JWT
    | \b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})     # GitHub
    | \bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}                             # OpenAI, Anthropic
    | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b                                      # AWS access key id
    | \bxox[abposr]-[A-Za-z0-9-]{10,}                                    # Slack
    | \bnpm_[A-Za-z0-9]{30,}                                             # npm
    | \bpypi-[A-Za-z0-9_-]{30,}                                          # PyPI
    | -----BEGIN[A-Z ]*PRIVATE\ KEY-----.*?-----END[A-Z ]*PRIVATE\ KEY-----
    """,
    re.VERBOSE | re.DOTALL,
)
_LABELLED = (
    r"""
      (?P<bearer>\b(?:[Bb]earer|[Bb]asic|[Tt]oken)\s+)[A-Za-z0-9._~+/=-]{8,}
    | (?<![A-Za-z0-9+.-])(?P<url>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?=@)
    | (?<![A-Za-z0-9_.-])(?P<named>["']?[A-Za-z0-9_.-]*(?:token|TOKEN|Token|secret|SECRET|Secret|passw(?:or)?d|PASSW(?:OR)?D|Passw(?:or)?d|api_?key|API_?KEY|ApiKey|private_?key|PRIVATE_?KEY)[A-Za-z0-9_.-]*["']?\s*[:=]\s*)(?P<q>["']?)(?!\[masked)[^\s"',;&|]{4,}(?P=q)
    """,
    re.VERBOSE,
)


def _labelled(match: "re.Match") -> str:
    for group in ("bearer", "url"):
        if match.group(group):
            return match.group(group) + MASK
    q = match.group("q") or ""
    return match.group("named") + q + MASK + q


_compiled: "tuple[re.Pattern[str], re.Pattern[str]] | None" = None


def redact(text: str) -> str:
    """``text`` with credential-shaped substrings replaced by ``[masked]``."""
    global _compiled
    if not text:
        return text
    # compiled on first use (the guard's start-up does not pay for it), bound in one assignment:
    # the supervisor's control-socket threads redact at once (held approvals), and two first
    # uses must not both add to a shared list (that left it four long, and every later call of
    # the run failed closed on unpacking it)
    compiled = _compiled
    if compiled is None:
        compiled = _compiled = (re.compile(*_PATTERNS), re.compile(*_LABELLED))
    patterns, labelled = compiled
    return labelled.sub(_labelled, patterns.sub(MASK, text))


def secret_masker(secrets: dict):
    """``mask(text) -> text`` that replaces the run's exact secret values (``{name: value}``)
    and their encodings by ``[masked:NAME]``, as the output tee does (line breaks and escape
    sequences inside them included). A summary cut by a cap (``… [N more characters]``) is
    also masked where a secret may begin at the cut: the part shown would reveal its start."""
    from agentsess.core.guard.masking import Masker

    masker = Masker(secrets)

    def mask(text: str) -> str:
        if not text:
            return text
        cut = _CUT.search(text)
        if cut is None:
            return masker.mask_text(text)
        return masker.mask_text(text[: cut.start()], cut=True) + text[cut.start() :]

    return mask


def mask_receipt(data, mask):
    """A copy of receipt ``data`` (dicts, lists, strings) with every string value passed
    through ``mask`` (a :func:`secret_masker`); keys and other values are kept."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {key: mask_receipt(value, mask) for key, value in data.items()}
    if isinstance(data, list):
        return [mask_receipt(value, mask) for value in data]
    return data
