"""Timestamps as agentsess shows and records them: RFC 3339, UTC, ``Z``."""

import time


def rfc3339(epoch: float | None, micro: bool = False) -> str | None:
    if epoch is None:
        return None
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    if micro:
        return f"{base}.{int((epoch % 1) * 1_000_000):06d}Z"
    return base + "Z"
