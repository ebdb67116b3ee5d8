"""Scopes: what a run may do, and the algebra that keeps sub-agents inside their ceiling.

Grammar::

    scope    = "*" | segment *( ":" segment ) [ ":*" ]
    segment  = 1*( "a"-"z" | "0"-"9" | "." | "_" | "-" | "/" | "@" )

At most 200 characters. Examples: ``fs:write``, ``github:pr:create``, ``github:repo/acme@main``,
``github:*``, ``*``.

Coverage (``covers(granted, requested)``):

- a scope covers itself;
- a bare ``*`` covers every scope;
- ``a:b:*`` covers every scope strictly below ``a:b`` — ``a:b:c``, ``a:b:c:d`` and ``a:b:c:*``
  alike — but NOT ``a:b`` itself: a wildcard grants what lies beneath a name, never the name.
  Grant ``a:b`` and ``a:b:*`` together to have both;
- nothing else: ``a:b`` does not cover ``a:b:c``, and ``a:b:c:*`` does not cover ``a:b:*``.

Coverage is reflexive and transitive, so attenuation (taking a subset of a ceiling) can be
applied any number of times down a chain of sub-agents without ever widening.

This module is on the hot path of ``run``, ``check`` and ``hook``: it imports nothing.
"""

from agentsess.errors import DENIED, AgentsessError

MAX_LENGTH = 200

_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/@")
_SCOPE_CHARS = _SEGMENT_CHARS | {":", "*"}
_EXPECTED = (
    "segments are lowercase letters, digits and ._-/@, separated by ':'; "
    "a final '*' covers everything below"
)


def _shown(text: str) -> str:
    if len(text) > 60:
        return repr(text[:57] + "...")
    return repr(text)


def _bad(text: str, reason: str) -> AgentsessError:
    return AgentsessError(f"bad scope {_shown(text)}: {reason}{_EXPECTED}")


def parse_scope(text: str) -> str:
    """Return ``text`` if it is a valid scope; raise AgentsessError(USAGE) saying what is wrong."""
    if not isinstance(text, str):
        raise AgentsessError(f"bad scope: expected a string, got {type(text).__name__}")
    text = str(text)  # a str subclass is taken as its text
    if len(text) <= MAX_LENGTH and _SCOPE_CHARS.issuperset(text):
        # Fast path: only legal characters; check the structure.
        if text == "*":
            return text
        body = text[:-2] if text.endswith(":*") else text
        if body and "*" not in body and body[0] != ":" and body[-1] != ":" and "::" not in body:
            return text
    raise _bad(text, _reason(text))


def _reason(text: str) -> str:
    if not text:
        return "a scope cannot be empty; "
    if len(text) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters; "
    for segment in text.split(":"):
        if not segment:
            return "empty segment; "
        if segment == "*":
            # a final '*' after good segments is a good scope, which never reaches here
            return "'*' is allowed only as the last segment; "
        for ch in segment:
            if ch == "*":
                return "'*' must be a whole segment of its own, at the end; "
            if ch not in _SEGMENT_CHARS:
                return f"{ch!r} is not allowed; "
    raise AssertionError  # unreachable: the fast path accepts a scope whose every segment passes


def parse_scopes(scopes) -> list[str]:
    """Validate every scope and drop repeats, keeping the first-seen order.

    ``scopes`` is an iterable of strings, or one string of scopes separated by whitespace or
    commas (the form of ``AGENTSESS_SCOPES``, a token's ``scope`` claim and ``--scope a,b``).
    """
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    return list(dict.fromkeys(parse_scope(scope) for scope in scopes))


def covers(granted: str, requested: str) -> bool:
    """True if holding ``granted`` allows ``requested`` (both already valid scopes)."""
    if granted == requested or granted == "*":
        return True
    if granted[-2:] == ":*":
        # "a:b:*" -> prefix "a:b:": matches everything below a:b, never a:b itself
        return requested.startswith(granted[:-1])
    return False


def excess(ceiling, requested) -> list[str]:
    """The requested scopes that no scope of ``ceiling`` covers (none if ``ceiling`` is None)."""
    if ceiling is None:
        return []
    ceiling = list(ceiling)
    out = []
    for scope in requested:
        if scope in ceiling:
            continue
        for granted in ceiling:
            if covers(granted, scope):
                break
        else:
            if scope not in out:
                out.append(scope)
    return out


def within(ceiling, requested) -> bool:
    """True if every requested scope is covered by ``ceiling`` (always, if ``ceiling`` is None)."""
    return not excess(ceiling, requested)


def attenuate(ceiling, requested) -> list[str]:
    """Validate ``requested`` and return it if ``ceiling`` covers all of it.

    Raises AgentsessError(DENIED) naming the exact scopes beyond the ceiling.
    """
    wanted = parse_scopes(requested)
    over = excess(ceiling, wanted)
    if over:
        allowed = " ".join(ceiling) if ceiling else "(none)"
        raise AgentsessError(
            f"scope beyond the ceiling: {' '.join(over)} (allowed: {allowed})", DENIED
        )
    return wanted
