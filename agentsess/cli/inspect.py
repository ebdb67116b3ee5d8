"""`agentsess runs` and `agentsess show-run`: what agents did, at a glance or as JSON.

Both parse with :mod:`agentsess.cli.parsing` (argparse), not typer: typer's import (pydantic
with it) cost more than the rest of `runs` together. Rich is imported only to render.
"""

from agentsess.cli import render
from agentsess.cli.parsing import Parser
from agentsess.errors import USAGE, AgentsessError

RECEIPTS_SHOWN = 40  # a long run's first 10 and last 30 receipts
_HEAD = 10
STATUSES = ("running", "exited", "revoked", "abandoned", "denied")


def _count(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def runs_parser() -> Parser:
    p = Parser("runs", "Abandoned runs (whose supervisor died) are marked as such first.",
               usage="agentsess runs [--status S] [--name N] [--since 2h|DATE] [--parent RUN] [--limit N] [--host H] [--tree] [--json]")
    p.add_argument("--status", help="only runs with this status: " + ", ".join(STATUSES))
    p.add_argument("--name", help="only runs of this agent name")
    p.add_argument("--since", help="only runs started since: a duration (2h) or a date (2026-11-29)")
    p.add_argument("--parent", help="only the children of this run")
    p.add_argument("--limit", "-n", type=_count, default=50, help="at most this many (0: all) [50]")
    p.add_argument("--host", help="only runs supervised on this host (a shared store holds every machine's)")
    p.add_argument("--tree", action="store_true", help="show sub-agent runs under their parents")
    p.add_argument("--json", dest="as_json", action="store_true", help="a JSON list of run objects")
    return p


def runs_main(argv: list[str]) -> int:
    args, rest = runs_parser().parse(argv)
    if rest is not None:
        raise AgentsessError("runs: takes no command (see `agentsess runs --help`)", USAGE)
    runs(args.status, args.name, args.since, args.parent, args.limit, args.tree, args.as_json, args.host)
    return 0


def show_run_parser() -> Parser:
    p = Parser(
        "show-run",
        "Identity, credential and integrity first, then sub-agent runs, the receipts as a\n"
        "timeline (a long run's first and last, with a count of those left out), and the last\n"
        "lines of output (masked). Times are UTC. Text the agent chose (names, commands, output)\n"
        "is shown with its control characters escaped.",
        usage="agentsess show-run RUN [--json] [--output] [--follow] [--lines N] [--receipts N] [--all]",
    )
    p.add_argument("run", metavar="RUN", help="run id, any unique prefix, or 'last'")
    p.add_argument("--json", dest="as_json", action="store_true",
                   help="one JSON object with the run, its receipts, children and integrity")
    p.add_argument("--output", action="store_true", help="print only the whole output log (masked), no header")
    p.add_argument("--follow", "-f", action="store_true",
                   help="after the summary, stream a live run's new output until it ends")
    p.add_argument("--lines", type=_count, default=20, help="how many last lines of output to show (0: none) [20]")
    p.add_argument("--receipts", type=_count, default=RECEIPTS_SHOWN,
                   help=f"show at most this many receipts, the first and the last [{RECEIPTS_SHOWN}]")
    p.add_argument("--all", dest="all_receipts", action="store_true", help="show every receipt")
    return p


def show_run_main(argv: list[str]) -> int:
    args, rest = show_run_parser().parse(argv)
    if rest is not None:
        raise AgentsessError("show-run: takes no command (see `agentsess show-run --help`)", USAGE)
    show_run(args.run, args.as_json, args.output, args.follow, args.lines, args.receipts, args.all_receipts)
    return 0


def runs(status, name, since, parent, limit: int, tree: bool, as_json: bool, host: str | None = None) -> None:
    from agentsess.core.durations import parse_since
    from agentsess.core.runs.history import list_runs

    if status and status not in STATUSES:
        raise AgentsessError(
            f"unknown status '{status}': expected running, exited, revoked, abandoned or denied", USAGE
        )
    import time

    since_ts = parse_since(since, time.time()) if since else None
    items = list_runs(status, name, since_ts, parent, limit or None, host=host, unchecked=as_json)
    if as_json:
        render.print_json(items)
        return
    _runs_table(items, tree)


def _runs_table(items: list[dict], tree: bool) -> None:
    import sys

    if not items:
        sys.stdout.write("no runs yet: start one with `agentsess run -- CMD`\n")
        return
    rows = items
    indent = {r["id"]: 0 for r in items}
    if tree:
        by_parent: dict = {}
        present = {r["id"] for r in items}
        for r in items:
            by_parent.setdefault(r["parent_id"] if r["parent_id"] in present else None, []).append(r)
        rows = []

        def walk(pid, depth):
            for r in sorted(by_parent.get(pid, []), key=lambda r: r["started_at"], reverse=pid is None):
                indent[r["id"]] = depth
                rows.append(r)
                walk(r["id"], depth + 1)

        walk(None, 0)
    table = []
    for r in rows:
        exit_text = "-" if r["exit_code"] is None else str(r["exit_code"])
        if r["signal"]:
            exit_text = f"signal {r['signal']}"
        table.append([
            ("  " * indent[r["id"]]) + ("└ " if indent[r["id"]] else "") + r["id"],
            (r["status"], render.status_style(r["status"], r["exit_code"])),
            r["name"],
            r["host"] or "-",
            render.short_time(r["started_at"], zone=False),
            render.duration_text(r["duration"]),
            exit_text,
        ])
    header = ["id", "status", "name", "host", "started (UTC)", "duration", "exit"]
    sys.stdout.write(render.columns(table, header, render.colour_on()))
    sys.stdout.flush()


def show_run(run: str, as_json: bool, output: bool, follow: bool, lines: int, receipts: int, all_receipts: bool) -> None:
    from agentsess.core.runs.history import integrity
    from agentsess.core.runs.history import show_run as load

    if output:
        from agentsess.core.runs.history import resolve

        _stream_output(resolve(run), 0, follow)
        return
    data = load(run, lines, with_integrity=as_json)
    if as_json:
        data.pop("output_tail", None)
        data.pop("output_end", None)
        render.print_json(data)
        return
    _show(data, lambda: integrity(data["id"]), None if all_receipts else receipts)
    if follow:
        _stream_output(data["id"], data["output_end"], True)


class _TerminalFilter:
    """Output log bytes made safe for a terminal: SGR colour sequences and \\n, \\r, \\t pass;
    every other control character or escape sequence (cursor moves, line erase, OSC 52
    clipboard writes, title changes) is shown escaped. An escape split across two reads is
    held until the next one."""

    def __init__(self):
        import codecs
        import re

        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.sgr = re.compile(r"\x1b\[[0-9;:]*m")
        self.held = ""

    def feed(self, block: bytes, final: bool = False) -> bytes:
        text = self.held + self.decoder.decode(block, final)
        self.held = ""
        if not final:
            cut = text.rfind("\x1b")
            if cut >= 0 and len(text) - cut < 32 and not self.sgr.match(text, cut):
                text, self.held = text[:cut], text[cut:]
        out = []
        pos = 0
        for m in self.sgr.finditer(text):
            out.append(render.safe(text[pos:m.start()], "\n\r\t"))
            out.append(m.group())
            pos = m.end()
        out.append(render.safe(text[pos:], "\n\r\t"))
        return "".join(out).encode("utf-8", "replace")


def _stream_output(run_id: str, offset: int, follow: bool) -> None:
    """The output log from byte ``offset``: as it is into a pipe or file, escaped (but its
    colours) onto a terminal; with ``follow``, until the run has ended."""
    import os
    import sys
    import time

    from agentsess.core.runs.history import status
    from agentsess.edges import paths

    path = paths.output_log(run_id)
    out = sys.stdout.buffer
    sys.stdout.flush()
    try:
        tty = os.isatty(out.fileno())
    except (OSError, ValueError, AttributeError):  # not a file (a test's captured stdout)
        tty = False
    shown = _TerminalFilter() if tty else None

    def write(block: bytes, final: bool = False) -> None:
        out.write(shown.feed(block, final) if shown is not None else block)
        out.flush()

    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        if not follow:
            return
        while status(run_id) == "running" and not os.path.exists(path):
            time.sleep(0.2)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return
    with fh:
        fh.seek(offset)
        while True:
            block = fh.read(1 << 16)
            if block:
                write(block)
                continue
            if not follow:
                break
            if status(run_id) != "running":
                rest = fh.read()
                if rest:
                    write(rest)
                break
            time.sleep(0.2)
    if shown is not None:
        write(b"", final=True)
        sys.stdout.write("\n")


def _containment_text(data: dict) -> str:
    """``contained`` or ``advisory``, and why, as the run's ``run.started`` receipt says."""
    started: dict = next((r["data"] for r in data.get("receipts") or () if r.get("type") == "run.started"), {})
    why = started.get("containment_reason") if isinstance(started, dict) else None
    return (data.get("containment") or "-") + (f"  ({why})" if why else "")


def _show(data: dict, integrity, receipts_shown: int | None = RECEIPTS_SHOWN) -> None:
    """Identity and credential first (at once), then integrity (reads the whole output log), then the rest."""
    import shlex
    import sys

    colour = render.colour_on()
    write = sys.stdout.write
    cred = data["credential"]
    exit_text = "-" if data["exit_code"] is None else str(data["exit_code"])
    if data["signal"]:
        exit_text = f"killed by signal {data['signal']}"
    t = render.short_time
    rows = [
        ("run", data["id"]),
        ("agent", f"{data['agent'] or data['name']}  (name {data['name']}, profile {data['profile']})"),
        ("on behalf of", data["on_behalf_of"] or f"{data['user']}@{data['host']}"),
        ("parent", data["parent_id"] or "-"),
        ("host / cwd", f"{data['host']}  {data['cwd']}"),
        ("command", shlex.join(str(a) for a in data["command"])),
        ("containment", _containment_text(data)),
        ("status", (data["status"], render.status_style(data["status"], data["exit_code"]))),
        ("started / ended", f"{t(data['started_at'])}  →  {t(data['ended_at'])}  ({render.duration_text(data['duration'])})"),
        ("exit", exit_text),
        ("scopes", " ".join(cred["scopes"]) or "(none)"),
        ("ceiling", "(none: the human's own request)" if cred["ceiling"] is None else " ".join(cred["ceiling"]) or "(empty)"),
        ("credential", f"{cred['state']}  issued {t(cred['issued_at'])}, expires {t(cred['expires_at'])}"),
    ]
    if data.get("revocation"):
        rv = data["revocation"]
        rows.append(("revoked", f"{t(rv['revoked_at'])} by {rv['revoked_by']}: {rv['reason'] or '-'} ({rv['cause'] or 'direct'})"))
    if data.get("error"):
        rows.append(("error", data["error"]))
    rows.extend(_secret_rows(data["receipts"]))
    integ_at = len(rows)
    rows.append(("integrity", "…"))
    width = max(len(label) for label, _ in rows)
    head = render.columns([[label.ljust(width), value] for label, value in rows[:integ_at]], colour=colour, first_style="bold")
    write(head)
    sys.stdout.flush()
    integ = integrity()
    records = integ["records"]
    value: tuple[str, str | None]
    if integ["ok"]:
        verdict = "verified, sealed" if integ["sealed"] else "intact, unsealed"
        value = (f"{verdict} ({records} receipts{', seq 0..' + str(records - 1) if records else ''})", None)
    else:
        value = (f"FAIL: {integ['failure']}", "bold red")
    write(render.columns([["integrity".ljust(width), value]], colour=colour, first_style="bold"))
    _unchecked_rows(data.get("unchecked") or [], width, colour, write)
    _pending_rows(data.get("pending_approvals") or [], data["id"], width, colour, write)
    if data["children"]:
        write(render.paint("children", "bold", colour) + "\n")

        def add(items, depth):
            for i, c in enumerate(items):
                branch = "└── " if i == len(items) - 1 else "├── "
                write("    " * depth + branch + render.safe(f"{c['id']}  {c['status']}  {c['name']}") + "\n")
                add(c["children"], depth + 1)

        add(data["children"], 0)
    write("\n")
    all_records = data["receipts"]
    shown, left_out = _cap(all_records, receipts_shown)
    title = "receipts" if not left_out else f"receipts ({len(all_records)} in all; {left_out} not shown: --all shows every one)"
    write(title + "\n")
    timeline = []
    asked = _asked(all_records)
    for rec in shown:
        if rec is None:
            timeline.append(["…", "", "", f"{left_out} receipts not shown"])
            continue
        timeline.append([str(rec.get("seq")), render.clock(rec.get("ts")), str(rec.get("type", "?")), _detail(rec, asked)])
    write(render.columns(timeline, ["seq", "time (UTC)", "type", "detail"], colour))
    if data.get("output_tail"):
        size = data["output_bytes"] if data["output_bytes"] is not None else data.get("output_end") or 0
        write(f"\nlast output ({size} bytes in all):\n")
        write(render.safe(data["output_tail"].rstrip("\n"), keep="\n\t") + "\n")
    sys.stdout.flush()


def _unchecked_rows(flagged: list, width: int, colour: bool, write) -> None:
    """Bypass detection: the actions no guard decision covers, one line each (at most 10)."""
    if not flagged:
        return
    value = (f"{len(flagged)} unchecked action{'s' if len(flagged) != 1 else ''}: no guard decision covers them",
             "bold red")
    write(render.columns([["unchecked".ljust(width), value]], colour=colour, first_style="bold"))
    for item in flagged[:10]:
        write(render.safe(f"    seq {item['seq']}  {item['type']}  {item['what']}") + "\n")
    if len(flagged) > 10:
        write(f"    … {len(flagged) - 10} more (show-run --json lists every one)\n")


def _pending_rows(pending: list, run_id: str, width: int, colour: bool, write) -> None:
    """A live run's calls held for a person's answer, one line each (at most 10)."""
    if not pending:
        return
    from agentsess.core.durations import format_duration

    count = len(pending)
    value = (f"{count} call{'s' if count != 1 else ''} held for your answer: "
             f"`agentsess approve {run_id} REQUEST` or `agentsess deny {run_id} REQUEST --reason …`", "bold yellow")
    write(render.columns([["approvals".ljust(width), value]], colour=colour, first_style="bold"))
    for item in pending[:10]:
        left = format_duration(item["seconds_left"]) if item["seconds_left"] else "0s"
        write(render.safe(f"    {item['request']}  denied in {left}  {item['tool']}: {item['summary']}") + "\n")
    if count > 10:
        write(f"    … {count - 10} more (`agentsess approvals {run_id}` lists every one)\n")


def _cap(records: list, limit: int | None) -> tuple[list, int]:
    """The records to show (None marks the gap) and how many are left out."""
    if limit is None or len(records) <= limit:
        return records, 0
    head = min(_HEAD, limit // 4)
    tail = limit - head
    return records[:head] + [None] + records[len(records) - tail:] if tail else records[:head] + [None], len(records) - limit


def _secret_rows(receipts: list) -> list[tuple[str, str]]:
    """How the run held its secrets: brokered services (placeholders) and raw injection."""
    rows = []
    for rec in receipts:
        d = rec.get("data") or {}
        if rec.get("type") == "run.started" and isinstance(d.get("env"), dict) and d["env"].get("broker"):
            broker = d["env"]["broker"]
            names = [s["name"] for s in broker.get("services") or []]
            proxy = "; proxy mode" if broker.get("proxy") else ""
            rows.append(("services", f"{', '.join(names) or '(none)'} through the broker, as placeholders{proxy}"))
        if rec.get("type") == "secret.injected" and d.get("mode", "raw") == "raw":
            rows.append(("raw secrets", f"{' '.join(d.get('vars') or [])}: real values in the agent's environment"))
    return rows


APPROVAL_TYPES = ("approval.requested", "approval.granted", "approval.denied", "approval.expired")


def _asked(records: list) -> dict:
    """The masked summary each request of the stream asked about, by request id (the answer's
    receipt names the request, its tool and its arguments hash, not what they were)."""
    out = {}
    for rec in records:
        d = rec.get("data") or {}
        if rec.get("type") == "approval.requested" and isinstance(d.get("request_id"), str):
            out[d["request_id"]] = d.get("summary")
    return out


def _approval_detail(t: str, d: dict, asked: dict) -> str:
    """One approval receipt as a line: what agentsess decided first (request id, who, for how
    long, why), then the tool and the masked summary, which the agent chose and may say anything."""
    from agentsess.core.durations import format_duration

    def span(seconds) -> str:
        return format_duration(seconds, 5) if isinstance(seconds, int) and not isinstance(seconds, bool) else "?"

    request = d.get("request_id")
    summary = d.get("summary") if t == "approval.requested" else asked.get(request)
    call = f"{d.get('tool')}: {summary}" if summary is not None else str(d.get("tool"))
    if t == "approval.requested":
        head = f"request {request} asks a person (denied in {span(d.get('timeout'))} without an answer)"
    elif t == "approval.granted":
        lasting = (f" for {span(d.get('for'))}, this exact call until {render.short_time(d.get('until'))}"
                   if d.get("for") else ", this one call")
        head = f"request {request} approved by {d.get('by')}{lasting}"
    elif t == "approval.denied":
        head = f"request {request} denied by {d.get('by')} ({d.get('reason') or 'no reason given'})"
    else:
        head = f"request {request} {'ended' if d.get('ended') else 'expired'}: {d.get('reason')}"
    return f"{head}  {call}"


def _detail(rec: dict, asked: dict | None = None) -> str:
    d = rec.get("data") or {}
    t = rec.get("type")
    if t == "run.started":
        return f"{' '.join(d.get('argv', []))}  ({d.get('mode')}, pid {d.get('pid')})"
    if t == "credential.minted" and d.get("provider"):  # a provider's credential (issue 14)
        repos = d.get("repositories")
        repos = " ".join(repos) if isinstance(repos, list) else str(repos)
        perms = " ".join(f"{k}:{v}" for k, v in sorted((d.get("permissions") or {}).items()))
        return f"{d.get('provider')} token for {repos} ({perms or 'all'}); expires {d.get('expires_at')}"
    if t == "credential.revoked":
        return "; ".join(f"{p.get('provider')} {p.get('result')}" + (f" in {p['latency']}s" if "latency" in p else "")
                         for p in d.get("providers") or []) + f" ({d.get('cause')})"
    if t == "credential.minted":
        return f"scopes {' '.join(d.get('scopes') or []) or '(none)'}; expires {d.get('exp')}"
    if t == "run.exited":
        what = f"signal {d['signal']}" if d.get("signal") else f"exit {d.get('exit_code')}"
        return f"{what} after {render.duration_text(d.get('duration'))}, {d.get('output_bytes')} bytes of output"
    if t == "action.exec":  # the exit code apart from (before) the agent's command, which may say anything
        code = d.get("exit_code")
        return f"exit {code if code is not None else '-'}  $ {d.get('command')}"
    if t in ("action.checked", "action.result"):
        what = " ".join(str(d.get(k)) for k in ("tool", "decision", "summary", "command") if d.get(k) is not None)
        if d.get("exit_code") is not None:
            what = f"exit {d['exit_code']}  {what}"
        return what
    if t == "run.revoked":
        return f"{d.get('cause')} by {d.get('by')}: {d.get('reason') or '-'}"
    if t == "child.started":
        return f"{d.get('child')} ({d.get('name')})"
    if t == "run.sealed":
        count = d.get("count")
        covered = f"seq 0..{count - 1}" if isinstance(count, int) and count > 0 else "no receipts"
        return f"signs the {count} receipts before it ({covered}) with key {d.get('kid')}"
    if t == "run.denied":
        return d.get("reason", "")
    if t == "net.request":
        where = f"{d.get('host')}:{d.get('port')}{d.get('path') or ''}"
        extra = f" ({d.get('reason') or d.get('error')})" if d.get("reason") or d.get("error") else ""
        return f"{d.get('method')} {where} -> {d.get('status')} {d.get('decision')}{extra}"
    if t == "secret.injected":
        return f"{' '.join(d.get('vars') or [])} injected {d.get('mode', 'raw')}"
    if t in APPROVAL_TYPES:
        return _approval_detail(t, d, asked or {})
    return ", ".join(f"{k}={v}" for k, v in list(d.items())[:4])
