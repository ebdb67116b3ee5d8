"""A run's receipts in a shared store's mirror: the fallback when its stream is on another
machine, and the check that the local stream and the mirror tell the same story.

The mirror holds each receipt's canonical line under ``PRIMARY KEY (run_id, seq)`` (see
:mod:`agentsess.edges.store.postgres`). With SQLite there is no mirror: every function here
then answers from the local stream alone.
"""

import json
import os

from agentsess.edges import paths


def local(run_id: str) -> bool:
    return os.path.exists(paths.receipts_file(run_id))


def records(store, run_id: str) -> tuple[list[dict], str]:
    """The run's receipts for display and their source: ``local`` or ``mirror``."""
    from agentsess.edges import streams

    if local(run_id) or not getattr(store, "shared", False):
        return streams.load(run_id), "local"
    out = []
    for line in store.mirrored(run_id):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out, "mirror"


def divergence(local_lines: list[bytes], mirrored: list[bytes]) -> str | None:
    """How the local stream and the mirror differ, in one sentence; None when they agree."""
    for seq, (mine, theirs) in enumerate(zip(local_lines, mirrored, strict=False)):
        if mine != theirs:
            return (f"the local stream and the store's mirror differ at seq {seq} "
                    "(one of them was rewritten)")
    if len(mirrored) > len(local_lines):
        return (f"the store's mirror holds {len(mirrored)} receipts but the local stream only "
                f"{len(local_lines)} (records removed from the local stream)")
    if len(local_lines) > len(mirrored):
        return (f"the local stream holds {len(local_lines)} receipts but the store's mirror only "
                f"{len(mirrored)} (the mirror is behind: the store was unreachable, or records were "
                "appended outside agentsess)")
    return None


def verify(store, row: dict) -> dict:
    """`agentsess verify` for one run: its stream (local, else the mirror) and, with a shared
    store, the comparison of the two. The dict of :meth:`Integrity.as_dict` plus ``source``
    (``local`` or ``mirror``) and ``mirror`` (``agrees``, ``differs``, or None without one)."""
    from agentsess.core.receipts.verify import verify_run
    from agentsess.edges import streams

    shared = getattr(store, "shared", False)
    if not shared:
        out = verify_run(row).as_dict()
        out.update(source="local", mirror=None)
        return out
    mirrored = store.mirrored(row["id"])
    if not local(row["id"]):
        if not mirrored:
            out = verify_run(row).as_dict()
            out.update(source="local", mirror=None)
            return out
        # the stream is on another machine: check the mirror's chain and seal (not the output
        # log, which stays where the run was)
        out = verify_run(row, check_output=False, lines=mirrored).as_dict()
        out.update(source="mirror", mirror="agrees")
        return out
    result = verify_run(row)
    out = result.as_dict()
    out.update(source="local", mirror="agrees")
    local_lines = [line for _, line in streams.read(row["id"])]
    problem = divergence(local_lines, mirrored)
    if problem:
        out["mirror"] = "differs"
        if out["ok"]:
            out.update(ok=False, result="FAIL", failure=problem)
        else:
            out["failure"] = f"{out['failure']}; {problem}"
    return out
