"""Verifying an agentsess token on this machine: signature, time, and the store's record of it.

A token is valid only while the store says so: the store minted exactly this token (its run's
row holds the token's ``jti`` and SHA-256, and no earlier expiry than the token claims), and
its run and every ancestor run are still running and not revoked. A good signature alone is
not enough: a token made with a stolen or planted key, or re-signed with a later ``exp``,
names a run this store never minted it for. A run's token dies with its run (exited,
revoked, abandoned or denied), whatever its ``exp`` says.
"""

from agentsess.core.credentials import tokens
from agentsess.core.credentials.tokens import Verdict
from agentsess.digest import sha256_hex


def _ended(row: dict, of: str | None = None) -> tuple[str, str] | None:
    """Why the run in ``row`` can no longer back a token (None if it is live); ``of`` names
    the run whose token is checked when ``row`` is one of its ancestors."""
    rid = tokens._shown(row["id"])
    who = f"run {rid}" if of is None else f"ancestor run {rid} of run {of}"
    status = row["status"]
    if row.get("revoked_at") is not None or status == "revoked":
        why = row.get("revoke_reason")
        why = f": {tokens._shown(why)}" if why else ""
        return (tokens.REVOKED_RUN if of is None else tokens.REVOKED_ANCESTOR), f"{who} was revoked{why}"
    if status == "running":
        return None
    said = {"exited": "exited", "abandoned": "been abandoned (its supervisor died)", "denied": "been denied"}
    text = f"{who} has {said.get(status, 'ended')}; the token died with it"
    if of is not None:
        return tokens.ENDED_ANCESTOR, text
    reason = {"exited": tokens.EXITED_RUN, "abandoned": tokens.ABANDONED_RUN, "denied": tokens.DENIED_RUN}
    return reason.get(status, tokens.EXITED_RUN), text


def registry_check(store):
    """The ``registry`` argument of :func:`tokens.verify` for ``store``."""

    def check(claims: dict, token: str) -> tuple[str, str] | None:
        sid = tokens._shown(claims["sid"])
        row = store.get_run(claims["sid"])
        if row is not None and row["status"] == "denied":
            return tokens.DENIED_RUN, f"run {sid} was denied: it never had a token"
        if row is None or not row.get("jti"):
            return tokens.NOT_MINTED, f"this store never minted a token for run {sid}"
        if row["jti"] != claims["jti"]:
            return tokens.NOT_MINTED, f"token {tokens._shown(claims['jti'])} is not the one this store minted for run {sid}"
        recorded = row.get("expires_at")
        if recorded is None or claims["exp"] > recorded:
            return (
                tokens.EXPIRY_BEYOND_RECORD,
                f"token of run {sid} claims an expiry {claims['exp'] - int(recorded or 0)} s later than the store recorded",
            )
        if row.get("token_sha256") != sha256_hex(token.encode()):
            return tokens.NOT_MINTED, f"token of run {sid} differs from the one this store minted"
        ended = _ended(row)
        if ended:
            return ended
        for ancestor in reversed(claims["chain"]):  # the nearest ancestor first
            up = store.get_run(ancestor)
            if up is None:
                return tokens.ENDED_ANCESTOR, f"ancestor run {tokens._shown(ancestor)} of run {sid} is not in this store"
            ended = _ended(up, sid)
            if ended:
                return ended
        return None

    return check


def verify_in_store(store, token, scopes=(), now: float | None = None) -> Verdict:
    """:func:`tokens.verify` against ``store``'s record (the caller reaps abandoned runs)."""
    return tokens.verify(token, scopes, now=now, registry=registry_check(store))


def verify_token(token: str, scopes=(), now: float | None = None) -> Verdict:
    """Verify ``token`` as `agentsess token verify` does; the Python API for tool authors.

    Valid means: a good EdDSA signature by a key in agentsess's own key store, within its
    time window, exactly the token this store minted (``jti``, digest, no later expiry), its
    run and every ancestor run still running and not revoked, and (when ``scopes`` is given)
    each requested scope covered by the token's scopes. Returns a :class:`Verdict` (truthy
    when valid; ``reason`` and ``detail`` say why not; ``claims`` once signed).

    Inside a run (a tool the agent started calls it) the run's supervisor verifies, as for
    `token verify`: no process of a run opens the store or the keys (``now`` is then the
    supervisor's).
    """
    from agentsess.edges.control import find_socket

    socket = find_socket() if now is None else None
    if socket is not None:
        return _ask_supervisor(socket, token, scopes)
    return verify_here(token, scopes, now)


def verify_here(token: str, scopes=(), now: float | None = None) -> Verdict:
    """:func:`verify_token` against this process's own store (a supervisor's, or outside runs)."""
    from agentsess.core.runs.abandonment import reap_abandoned
    from agentsess.edges.store import Store

    with Store() as store:
        reap_abandoned(store)
        return verify_in_store(store, token, scopes, now)


def _ask_supervisor(socket: str, token: str, scopes) -> Verdict:
    from agentsess.edges.control import ControlError, request

    wanted = [scopes] if isinstance(scopes, str) else [str(s) for s in scopes]
    try:
        answer = request(socket, {"op": "token_verify", "token": token, "scopes": wanted})
    except ControlError as exc:
        return Verdict(False, tokens.NOT_MINTED, f"cannot ask the run's supervisor: {exc}")
    shown = answer.get("verdict") if answer.get("ok") else None
    if not isinstance(shown, dict):
        return Verdict(False, tokens.NOT_MINTED, str(answer.get("error") or "the run's supervisor refused"))
    return Verdict(bool(shown.get("valid")), shown.get("reason"), str(shown.get("detail") or ""),
                   shown.get("claims"), shown.get("kid"))
