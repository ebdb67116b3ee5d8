"""Writing a run's receipts: append to its stream, keep the store's chain head, seal at the end.

Who may append: the run's supervisor while the run lives, and agentsess's own revocation and
abandonment. A sealed stream accepts only a revocation record (:data:`AFTER_SEAL`) and a new
seal; anything else is refused under the stream's lock and nothing is written. An agent's
action (a hook, ``check``, ``exec``, an MCP call) is recorded only while its run is live:
naming a finished run (``--run`` or ``AGENTSESS_RUN_ID``) is refused and writes nothing.
"""

from agentsess.edges import streams
from agentsess.edges.streams import SEAL, ReceiptError, canonical
from agentsess.encoding import b64url_encode
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError

REVOKED = "run.revoked"
# the only records a sealed stream accepts (each followed by a new seal)
AFTER_SEAL = (REVOKED, SEAL)
# statuses of a run whose supervisor has finished with it
ENDED = ("exited", "abandoned", "denied")


class RunEnded(AgentsessError):
    """An action named a run that is no longer live: refused, nothing recorded."""

    def __init__(self, message: str):
        super().__init__(message, CHECK_FAILED)


def record(store, run_id: str, rtype: str, data) -> dict | None:
    """Append one receipt to the run's stream and move the store's chain head to it.

    Refused (:class:`ReceiptError`, nothing written) when the stream ends in a seal and
    ``rtype`` is not one of :data:`AFTER_SEAL`.
    """

    def guarded(last):
        if last is not None and last.get("type") == SEAL and rtype not in AFTER_SEAL:
            raise ReceiptError(
                f"run {run_id} is sealed: its stream accepts only a revocation and a new seal, "
                f"not {rtype[:40]!r}"
            )
        return data(last) if callable(data) else data

    rec = streams.append(run_id, rtype, guarded)
    if rec is not None:
        store.record_receipt(run_id, rec)  # the chain head, and the fleet mirror
    return rec


def live(row: dict) -> bool:
    """True while the run's supervisor has not finished with it and is still there (a revoked
    run being stopped is live: its denials are recorded until its seal)."""
    if row.get("ended_at") is not None or row["status"] in ENDED:
        return False
    from agentsess.core.runs.abandonment import supervisor_alive

    return supervisor_alive(row)


_action_mask: list = []  # set by the supervisor, which holds the run's secret values


def mask_actions(mask) -> None:
    """Pass the data of every action receipt this process writes through ``mask`` from now on
    (the supervisor sets it: see :func:`agentsess.core.guard.redaction.secret_masker`)."""
    _action_mask[:] = [mask]


def record_action(store, run_id: str, rtype: str, data) -> dict | None:
    """A receipt of an agent's action (a tool call, its result, a shell command).

    Only a live run records actions: for a run that has ended (exited, revoked and stopped,
    abandoned, denied) this raises :class:`RunEnded` and writes nothing, so nothing can be
    appended to a finished run's record, whatever ``--run`` or ``AGENTSESS_RUN_ID`` says.
    """
    row = store.get_run(run_id)
    if row is None:
        raise AgentsessError(f"no run {run_id} in this store", USAGE)
    if not live(row):
        status = "revoked" if row.get("revoked_at") is not None else row["status"]
        raise RunEnded(f"run {run_id} has ended ({status}); nothing is allowed or recorded for it")
    if _action_mask:
        data = _action_mask[0](data)  # the run's exact secret values, whatever their shape
    return record(store, run_id, rtype, data)


def seal_payload(run_id: str, count: int, head: str, output_bytes, output_sha256) -> bytes:
    """The bytes a seal signs: the run, how many records precede the seal, and what they end in."""
    return canonical(
        {
            "run": run_id,
            "count": count,
            "head": head,
            "output_bytes": output_bytes,
            "output_sha256": output_sha256,
        }
    )


def seal(store, run_id: str) -> dict | None:
    """Append the final, signed receipt over the chain so far and the output log's digest.

    Idempotent: a stream that already ends in a seal is left as it is.
    """
    from agentsess.edges import keys

    row = store.get_run(run_id)

    def sealed(last):
        if last is not None and last.get("type") == SEAL:
            return None
        count = 0 if last is None else last["seq"] + 1
        head = streams.GENESIS if last is None else last["hash"]
        out_bytes, out_sha = row.get("output_bytes"), row.get("output_sha256")
        kid, sig = keys.sign(seal_payload(run_id, count, head, out_bytes, out_sha))
        return {
            "count": count,
            "head": head,
            "output_bytes": out_bytes,
            "output_sha256": out_sha,
            "kid": kid,
            "sig": b64url_encode(sig),
        }

    return record(store, run_id, SEAL, sealed)
