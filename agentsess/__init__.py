"""agentsess: every AI-agent run gets its own session identity.

Python API for tool authors::

    import agentsess
    verdict = agentsess.verify_token(token, scopes=["github:pr:create"])
    if not verdict:
        raise PermissionError(verdict.detail)   # verdict.reason: "expired", "revoked run", ...
"""

__version__ = "0.1.0"
__all__ = ["verify_token", "__version__"]


def verify_token(token: str, scopes=(), now: float | None = None):
    """Verify an agentsess token (signature, time, revocation, scopes); see :mod:`agentsess.core.credentials.verify`."""
    from agentsess.core.credentials.verify import verify_token as _verify

    return _verify(token, scopes, now)
