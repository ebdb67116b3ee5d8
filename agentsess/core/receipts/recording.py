"""Writing a run's receipts: append to its stream, keep the store's chain head, seal at the end."""

from agentsess.edges import streams
from agentsess.edges.streams import SEAL, canonical


def record(store, run_id: str, rtype: str, data) -> dict | None:
    """Append one receipt to the run's stream and move the store's chain head to it."""
    rec = streams.append(run_id, rtype, data)
    if rec is not None:
        store.record_receipt(run_id, rec)  # the chain head, and the fleet mirror
    return rec


def record_action(store, run_id: str, rtype: str, data) -> dict | None:
    """A receipt of an agent's action (a tool call, its result, a shell command).

    Such receipts can arrive after the run ended (a hook or an MCP proxy outliving the
    supervisor); the stream of a finished run is then sealed again, as a revocation does.
    """
    rec = record(store, run_id, rtype, data)
    row = store.get_run(run_id)
    if row is not None and row["status"] != "running":
        seal(store, run_id)
    return rec


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


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
            "sig": b64url(sig),
        }

    return record(store, run_id, SEAL, sealed)
