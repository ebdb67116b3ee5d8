"""`agentsess runs` and `agentsess show-run`: what agents did, at a glance or as JSON."""

import typer

from agentsess.cli import render

RECEIPTS_SHOWN = 40  # a long run's first 10 and last 30 receipts
_HEAD = 10


def runs(
    status: str = typer.Option(None, "--status", help="only runs with this status: running, exited, revoked, abandoned, denied"),
    name: str = typer.Option(None, "--name", help="only runs of this agent name"),
    since: str = typer.Option(None, "--since", help="only runs started since: a duration (2h) or a date (2026-11-29)"),
    parent: str = typer.Option(None, "--parent", help="only the children of this run"),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="at most this many (0: all)"),
    tree: bool = typer.Option(False, "--tree", help="show sub-agent runs under their parents"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list of run objects"),
) -> None:
    """Abandoned runs (whose supervisor died) are marked as such first."""
    from agentsess.core.durations import parse_since
    from agentsess.core.runs.history import list_runs
    from agentsess.errors import USAGE, AgentsessError

    if status and status not in ("running", "exited", "revoked", "abandoned", "denied"):
        raise AgentsessError(
            f"unknown status '{status}': expected running, exited, revoked, abandoned or denied", USAGE
        )
    import time

    since_ts = parse_since(since, time.time()) if since else None
    items = list_runs(status, name, since_ts, parent, limit or None)
    if as_json:
        render.print_json(items)
        return
    _runs_table(items, tree)


def _runs_table(items: list[dict], tree: bool) -> None:
    from rich.table import Table

    out = render.console()
    if not items:
        out.print("no runs yet: start one with `agentsess run -- CMD`", markup=False)
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
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    for col in ("status", "name", "started (UTC)", "duration", "exit"):
        table.add_column(col)
    for r in rows:
        exit_text = "-" if r["exit_code"] is None else str(r["exit_code"])
        if r["signal"]:
            exit_text = f"signal {r['signal']}"
        table.add_row(
            render.text(("  " * indent[r["id"]]) + ("└ " if indent[r["id"]] else "") + r["id"]),
            render.status_text(r["status"], r["exit_code"]),
            render.text(r["name"]),
            render.short_time(r["started_at"], zone=False),
            render.duration_text(r["duration"]),
            render.text(exit_text),
        )
    out.print(table)


def show_run(
    run: str = typer.Argument(..., help="run id, any unique prefix, or 'last'"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object with the run, its receipts, children and integrity"),
    output: bool = typer.Option(False, "--output", help="print only the whole output log (masked), no header"),
    follow: bool = typer.Option(False, "--follow", "-f", help="after the summary, stream a live run's new output until it ends"),
    lines: int = typer.Option(20, "--lines", min=0, help="how many last lines of output to show (0: none)"),
    receipts: int = typer.Option(RECEIPTS_SHOWN, "--receipts", min=0, help="show at most this many receipts (the first and the last)"),
    all_receipts: bool = typer.Option(False, "--all", help="show every receipt"),
) -> None:
    """Identity, credential and integrity first, then sub-agent runs, the receipts as a
    timeline (a long run's first and last, with a count of those left out), and the last
    lines of output (masked). Times are UTC. Text the agent chose (names, commands, output)
    is shown with its control characters escaped."""
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


def _show(data: dict, integrity, receipts_shown: int | None = RECEIPTS_SHOWN) -> None:
    """Identity and credential first (at once), then integrity (reads the whole output log), then the rest."""
    from rich.table import Table
    from rich.tree import Tree

    out = render.console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    cred = data["credential"]
    exit_text = "-" if data["exit_code"] is None else str(data["exit_code"])
    if data["signal"]:
        exit_text = f"killed by signal {data['signal']}"
    import shlex

    rows = [
        ("run", render.text(data["id"])),
        ("agent", render.text(f"{data['agent'] or data['name']}  (name {data['name']}, profile {data['profile']})")),
        ("on behalf of", render.text(data["on_behalf_of"] or f"{data['user']}@{data['host']}")),
        ("parent", render.text(data["parent_id"] or "-")),
        ("host / cwd", render.text(f"{data['host']}  {data['cwd']}")),
        ("command", render.text(shlex.join(str(a) for a in data["command"]))),
        ("status", render.status_text(data["status"], data["exit_code"])),
        ("started / ended", render.text(f"{render.short_time(data['started_at'])}  →  {render.short_time(data['ended_at'])}  ({render.duration_text(data['duration'])})")),
        ("exit", render.text(exit_text)),
        ("scopes", render.text(" ".join(cred["scopes"]) or "(none)")),
        ("ceiling", render.text("(none: the human's own request)" if cred["ceiling"] is None else " ".join(cred["ceiling"]) or "(empty)")),
        ("credential", render.text(f"{cred['state']}  issued {render.short_time(cred['issued_at'])}, expires {render.short_time(cred['expires_at'])}")),
    ]
    if data.get("revocation"):
        rv = data["revocation"]
        rows.append(("revoked", render.text(f"{render.short_time(rv['revoked_at'])} by {rv['revoked_by']}: {rv['reason'] or '-'} ({rv['cause'] or 'direct'})")))
    if data.get("error"):
        rows.append(("error", render.text(data["error"])))
    for label, value in rows:
        head.add_row(label, value)
    out.print(head)
    out.file.flush()
    integ = integrity()
    tail = Table.grid(padding=(0, 2))
    tail.add_column(style="bold", min_width=15)
    tail.add_column()
    records = integ["records"]
    if integ["ok"]:
        verdict = "verified, sealed" if integ["sealed"] else "intact, unsealed"
        tail.add_row("integrity", render.text(f"{verdict} ({records} receipts{', seq 0..' + str(records - 1) if records else ''})"))
    else:
        from rich.text import Text

        tail.add_row("integrity", Text(f"FAIL: {render.safe(integ['failure'])}", style="bold red"))
    out.print(tail)
    if data["children"]:
        tree = Tree("children", guide_style="dim")

        def add(node, items):
            for c in items:
                add(node.add(render.text(f"{c['id']}  {c['status']}  {c['name']}")), c["children"])

        add(tree, data["children"])
        out.print(tree)
    out.print()
    all_records = data["receipts"]
    shown, left_out = _cap(all_records, receipts_shown)
    title = "receipts" if not left_out else f"receipts ({len(all_records)} in all; {left_out} not shown: --all shows every one)"
    timeline = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left")
    for col in ("seq", "time (UTC)", "type", "detail"):
        timeline.add_column(col)
    for rec in shown:
        if rec is None:
            timeline.add_row("…", "", "", render.text(f"{left_out} receipts not shown"))
            continue
        timeline.add_row(render.text(rec.get("seq")), render.clock(rec.get("ts")), render.text(rec.get("type", "?")), render.text(_detail(rec)))
    out.print(timeline)
    if data.get("output_tail"):
        size = data["output_bytes"] if data["output_bytes"] is not None else data.get("output_end") or 0
        out.print()
        out.print(render.text(f"last output ({size} bytes in all):"))
        out.print(render.text(data["output_tail"].rstrip("\n"), keep="\n\t"))


def _cap(records: list, limit: int | None) -> tuple[list, int]:
    """The records to show (None marks the gap) and how many are left out."""
    if limit is None or len(records) <= limit:
        return records, 0
    head = min(_HEAD, limit // 4)
    tail = limit - head
    return records[:head] + [None] + records[len(records) - tail:] if tail else records[:head] + [None], len(records) - limit


def _detail(rec: dict) -> str:
    d = rec.get("data") or {}
    t = rec.get("type")
    if t == "run.started":
        return f"{' '.join(d.get('argv', []))}  ({d.get('mode')}, pid {d.get('pid')})"
    if t == "credential.minted":
        return f"scopes {' '.join(d.get('scopes') or []) or '(none)'}; expires {d.get('exp')}"
    if t == "run.exited":
        what = f"signal {d['signal']}" if d.get("signal") else f"exit {d.get('exit_code')}"
        return f"{what} after {render.duration_text(d.get('duration'))}, {d.get('output_bytes')} bytes of output"
    if t in ("action.checked", "action.result", "action.exec"):
        what = " ".join(str(d.get(k)) for k in ("tool", "decision", "summary", "command") if d.get(k) is not None)
        if d.get("exit_code") is not None:
            what += f"  → exit {d['exit_code']}"
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
    return ", ".join(f"{k}={v}" for k, v in list(d.items())[:4])
