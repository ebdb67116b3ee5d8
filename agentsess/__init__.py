"""agentsess: every AI-agent run gets its own session identity.

Python API for tool authors::

    import agentsess
    verdict = agentsess.verify_token(token, scopes=["github:pr:create"])
    if not verdict:
        raise PermissionError(verdict.detail)   # verdict.reason: "expired", "revoked run", ...
"""

TYPE_CHECKING = False  # not typing's: importing typing costs 5 ms of every hook and check
if TYPE_CHECKING:
    from collections.abc import Iterable

    from agentsess.core.credentials.tokens import Verdict

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it)
__all__ = ["verify_token", "__version__"]


def verify_token(token: str, scopes: "str | Iterable[str]" = (), now: float | None = None) -> "Verdict":
    """Verify an agentsess token (signature, time, revocation, scopes); see :mod:`agentsess.core.credentials.verify`."""
    from agentsess.core.credentials.verify import verify_token as _verify

    return _verify(token, scopes, now)
