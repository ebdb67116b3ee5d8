"""Verifying an agentsess token on this machine: signature, time, and the store's revocation list."""

from agentsess.core.credentials.tokens import Verdict


def verify_token(token: str, scopes=(), now: float | None = None) -> Verdict:
    """Verify ``token`` as `agentsess token verify` does; the Python API for tool authors.

    Valid means: a good EdDSA signature by a known agentsess key, within its time window, its
    run and every ancestor run neither revoked nor abandoned, and (when ``scopes`` is given)
    each requested scope covered by the token's scopes. Returns a :class:`Verdict`
    (truthy when valid; ``reason`` and ``detail`` say why not; ``claims`` once signed).
    """
    from agentsess.core.credentials import tokens
    from agentsess.core.runs.abandonment import reap_abandoned
    from agentsess.core.runs.revocation import revoked_in
    from agentsess.edges.store import Store

    with Store() as store:
        reap_abandoned(store)
        return tokens.verify(token, scopes, is_revoked=lambda ids: revoked_in(store, ids), now=now)
