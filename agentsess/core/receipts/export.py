"""Exporting a run: its output as an asciicast v2 recording, its receipt stream as JSON Lines.

``asciicast`` replays ``output.log`` by the byte counts in ``timing.log``: one ``[t, "o",
text]`` event per recorded chunk (stdout and stderr alike: asciicast v2 has only "o" for
output) and one ``[t, "r", "COLSxROWS"]`` per window resize, so ``asciinema play`` shows
the run as it happened. The logs are streamed (constant memory on any size) and decoded
with an incremental UTF-8 decoder, so a character split across two chunks stays whole;
bytes that are not UTF-8 become U+FFFD. Output is exported exactly as logged (masked):
a pipes-mode run's ``\\n`` is not turned into ``\\r\\n``.

``jsonl`` copies the receipt stream byte for byte; ``agentsess verify`` checks it.
``bundle`` is one JSON file with the stream (its seal included, one string per record) and
the JWKS of this machine's keys, the CI artefact: ``agentsess verify FILE --jwks FILE``
checks it on any machine.
"""

import json
import os

from agentsess.edges import paths, streams
from agentsess.edges.outputlog import read_timing
from agentsess.errors import USAGE, AgentsessError

PIECE = 1 << 16  # at most this many bytes of output per read (and per event)
DEFAULT_SIZE = (80, 24)
DEFAULT_TERM = "xterm-256color"
# line breaks to str.splitlines() that JSON leaves raw: escaped, so a cast is one event a line
# for any reader
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _line(obj) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    if "\u2028" in text or "\u2029" in text or "\x85" in text:  # rare; translate is slow
        text = text.translate(_LINE_BREAKS)
    return text.encode() + b"\n"


def _first_size(timing_path: str) -> tuple[int, int]:
    for _, kind, value in read_timing(timing_path):
        if kind == "r" and value[0] > 0 and value[1] > 0:
            return value
    return DEFAULT_SIZE


def _events(output_path: str, timing_path: str):
    """Yield asciicast events from the output log, read sequentially by the timing log."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        data = open(output_path, "rb")
    except FileNotFoundError:
        return
    t = 0.0
    with data:
        exhausted = False
        for secs, kind, value in read_timing(timing_path):
            t = round(secs, 6)
            if kind == "r":
                yield [t, "r", f"{value[0]}x{value[1]}"]
                continue
            left = value
            while left > 0 and not exhausted:
                block = data.read(min(left, PIECE))
                if not block:
                    exhausted = True  # the log is shorter than its timing says
                    break
                left -= len(block)
                text = decoder.decode(block)
                if text:
                    yield [t, "o", text]
        # bytes the timing log does not cover yet (a live run's timing is buffered)
        while not exhausted:
            block = data.read(PIECE)
            if not block:
                break
            text = decoder.decode(block)
            if text:
                yield [t, "o", text]
    rest = decoder.decode(b"", final=True)
    if rest:
        yield [t, "o", rest]


def _shared(store) -> bool:
    """Whether ``store`` (or, for None, the configured store) is a shared (PostgreSQL) one."""
    if store is not None:
        return bool(getattr(store, "shared", False))
    from agentsess.edges.store import is_shared

    return is_shared()


def _row(run_id: str, store) -> dict:
    if store is None:
        from agentsess.edges.store import Store

        with Store() as own:
            row = own.get_run(run_id)
    else:
        row = store.get_run(run_id)
    if row is None:
        raise AgentsessError(f"no run {run_id} in the store; list runs with `agentsess runs`", USAGE)
    return row


def asciicast_header(row: dict, size: tuple[int, int], term: str | None = None) -> dict:
    import shlex

    cols, rows = size
    return {
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": int(row["started_at"]),
        "command": shlex.join(str(a) for a in (row.get("command") or [])),
        "title": row["id"],
        "env": {"TERM": term or os.environ.get("TERM") or DEFAULT_TERM},
    }


def asciicast(run_id: str, out, store=None, term: str | None = None) -> dict:
    """Write run ``run_id``'s output to binary file ``out`` as asciicast v2.

    The header's size is the first resize in the timing log (80x24 without one, as in
    pipes mode); ``TERM`` is ``term``, else the exporting environment's, since a run does
    not record its child's. Returns ``{"events", "output_events", "resizes"}`` counts.
    """
    row = _row(run_id, store)
    output_path = paths.output_log(run_id)
    timing_path = paths.timing_log(run_id)
    if not os.path.exists(output_path) and _shared(store) and row.get("host"):
        from agentsess.edges import host

        if row["host"] != host.hostname():
            raise AgentsessError(
                f"run {run_id}'s output log is on {row['host']}, where it ran; the store holds only its "
                f"receipts: `agentsess export {run_id} --format jsonl` works from here",
                USAGE,
            )
    header = asciicast_header(row, _first_size(timing_path), term)
    out.write(_line(header))
    counts = {"events": 0, "output_events": 0, "resizes": 0}
    for event in _events(output_path, timing_path):
        out.write(_line(event))
        counts["events"] += 1
        counts["output_events" if event[1] == "o" else "resizes"] += 1
    return counts


def jsonl(run_id: str, out, store=None) -> int:
    """Copy run ``run_id``'s receipt stream to binary file ``out`` byte for byte; returns its size.

    A run whose stream is on another machine is exported from a shared store's mirror (the
    same bytes: the mirror keeps each record's canonical line).
    """
    if not os.path.exists(paths.receipts_file(run_id)) and _shared(store):
        if store is None:
            from agentsess.edges.store import Store

            with Store() as own:
                lines = own.mirrored(run_id)
        else:
            lines = store.mirrored(run_id)
        if lines:
            for line in lines:
                out.write(line)
            return sum(map(len, lines))
    return streams.copy_stream(run_id, out)


def bundle(run_id: str, out, store=None) -> dict:
    """Write run ``run_id``'s receipt stream and this machine's JWKS to binary file ``out``
    as one JSON object (``format: agentsess-bundle``, ``version: 1``, ``run``, ``receipts``:
    the records as lines, ``jwks``). Returns ``{"records"}``."""
    import io

    from agentsess.core.receipts.verify import BUNDLE
    from agentsess.edges import keys

    _row(run_id, store)
    buf = io.BytesIO()
    streams.copy_stream(run_id, buf)
    lines = [line.decode("utf-8", "surrogateescape") for line in buf.getvalue().splitlines()]
    doc = {"format": BUNDLE, "version": 1, "run": run_id, "receipts": lines, "jwks": keys.jwks()}
    out.write(json.dumps(doc, indent=1, ensure_ascii=True).encode() + b"\n")
    return {"records": len(lines)}
