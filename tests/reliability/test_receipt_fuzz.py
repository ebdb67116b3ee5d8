"""Fuzzing the receipt reader: any byte edit of a real receipt stream is caught by verification.

(Targeted edits, forged records and seals are in tests/test_tamper.py; token mutations in
tests/test_tokens.py; masking in tests/test_masking.py.)
"""

import json
import os
import sys

import pytest
from helpers import ag
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONFIG = """
[profiles.p]
scopes = ["repo:*"]
default_scopes = ["repo:read"]
"""


@pytest.fixture
def stream():
    """A finished, sealed run with a few kinds of receipts: (row, path, original bytes)."""
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write(CONFIG)
    me = f"{sys.executable} -m agentsess"
    script = f"{me} check repo:read; {me} check repo:write; {me} exec -c 'echo hi'; echo done"
    proc = ag("run", "--profile", "p", "--", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    (listed,) = json.loads(ag("runs", "--json").stdout)
    from agentsess.core.receipts.verify import verify_run
    from agentsess.edges import paths
    from agentsess.edges.store import Store

    with Store() as store:
        row = store.get_run(listed["id"])
    path = paths.receipts_file(row["id"])
    with open(path, "rb") as fh:
        original = fh.read()
    types = [json.loads(line)["type"] for line in original.splitlines()]
    assert {"action.checked", "action.exec", "run.exited", "run.sealed"} <= set(types), types
    result = verify_run(row)
    assert result.ok and result.sealed
    return row, path, original


EDIT = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "flip", "truncate", "duplicate-line", "drop-line", "swap-lines"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


def _apply(data: bytes, edits) -> bytes:
    raw = bytearray(data)
    for kind, where, byte in edits:
        if kind in ("duplicate-line", "drop-line", "swap-lines"):
            lines = bytes(raw).splitlines(keepends=True)
            if not lines:
                continue
            i = where % len(lines)
            if kind == "duplicate-line":
                lines.insert(i, lines[i])
            elif kind == "drop-line" and len(lines) > 1:
                del lines[i]
            elif kind == "swap-lines" and len(lines) > 1:
                j = (i + 1 + byte % (len(lines) - 1)) % len(lines)
                lines[i], lines[j] = lines[j], lines[i]
            raw = bytearray(b"".join(lines))
            continue
        if not raw:
            raw.append(byte)
            continue
        i = where % (len(raw) + (1 if kind == "insert" else 0))
        if kind == "replace":
            raw[i] = byte
        elif kind == "insert":
            raw.insert(i, byte)
        elif kind == "delete":
            del raw[i]
        elif kind == "flip":
            raw[i] ^= 1 << (byte % 8)
        elif kind == "truncate":
            del raw[i:]
    return bytes(raw)


@pytest.mark.timeout(120)
def test_any_byte_edit_of_a_receipt_stream_is_detected(stream):
    from agentsess.core.receipts.verify import verify_run

    row, path, original = stream

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(EDIT, min_size=1, max_size=3))
    def edited(edits):
        mutated = _apply(original, edits)
        if mutated == original:
            return
        with open(path, "wb") as fh:
            fh.write(mutated)
        try:
            result = verify_run(row)
        finally:
            with open(path, "wb") as fh:
                fh.write(original)
        assert not result.ok, (edits, mutated[-300:])
        assert result.failure

    edited()
    assert verify_run(row).ok


@pytest.mark.timeout(120)
def test_appending_a_copy_of_any_record_is_detected(stream):
    """A record copied to the end keeps a valid hash of its own; the chain and the store catch it."""
    from agentsess.core.receipts.verify import verify_run

    row, path, original = stream
    for line in original.splitlines(keepends=True):
        with open(path, "wb") as fh:
            fh.write(original + line)
        try:
            assert not verify_run(row).ok, line
        finally:
            with open(path, "wb") as fh:
                fh.write(original)
