"""Timestamps as agentsess shows and records them: RFC 3339, UTC, ``Z``."""

import time

TYPE_CHECKING = False  # not typing's: this module is on every hot path, typing costs 5 ms
if TYPE_CHECKING:
    from typing import overload
else:
    def overload(fn):
        return fn


@overload
def rfc3339(epoch: float, micro: bool = False) -> str: ...
@overload
def rfc3339(epoch: None, micro: bool = False) -> None: ...  # noqa: F811
def rfc3339(epoch: float | None, micro: bool = False) -> str | None:  # noqa: F811
    """``epoch`` (UNIX seconds) as ``2026-12-01T09:45:03Z`` (``micro``: ``.123456Z``); None stays None."""
    if epoch is None:
        return None
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    if micro:
        return f"{base}.{int((epoch % 1) * 1_000_000):06d}Z"
    return base + "Z"
