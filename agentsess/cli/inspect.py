"""`agentsess runs` and `agentsess show-run`: what agents did, at a glance or as JSON."""

import typer

from agentsess.cli import render


def runs(
    status: str = typer.Option(None, "--status", help="only runs with this status: running, exited, revoked, abandoned, denied"),
    name: str = typer.Option(None, "--name", help="only runs of this agent name"),
    since: str = typer.Option(None, "--since", help="only runs started since: a duration (2h) or a date (2026-11-29)"),
    parent: str = typer.Option(None, "--parent", help="only the children of this run"),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="at most this many (0: all)"),
    host: str = typer.Option(None, "--host", help="only runs supervised on this host (a shared store holds every machine's)"),
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
    items = list_runs(status, name, since_ts, parent, limit or None, host=host)
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
    for col in ("status", "name", "host", "started", "duration", "exit"):
        table.add_column(col)
    for r in rows:
        exit_text = "-" if r["exit_code"] is None else str(r["exit_code"])
        if r["signal"]:
            exit_text = f"signal {r['signal']}"
        table.add_row(
            render.text(("  " * indent[r["id"]]) + ("└ " if indent[r["id"]] else "") + r["id"]),
            render.status_text(r["status"], r["exit_code"]),
            render.text(r["name"]),
            render.text(r["host"]),
            render.short_time(r["started_at"]),
            render.duration_text(r["duration"]),
            exit_text,
        )
    out.print(table)


def show_run(
    run: str = typer.Argument(..., help="run id, any unique prefix, or 'last'"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object with the run, its receipts, children and integrity"),
    output: bool = typer.Option(False, "--output", help="show the whole output log (masked)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream a live run's output until it ends"),
    lines: int = typer.Option(20, "--lines", min=0, help="how many last lines of output to show"),
) -> None:
    """Identity, credential and integrity first, then sub-agent runs, the receipts as a
    timeline, and the last lines of output (masked)."""
    from agentsess.core.runs.history import integrity
    from agentsess.core.runs.history import show_run as load

    data = load(run, lines, with_integrity=as_json)
    if as_json:
        data.pop("output_tail", None)
        render.print_json(data)
        return
    _show(data, lambda: integrity(data["id"]))
    if output or follow:
        _stream_output(data["id"], follow)


def _stream_output(run_id: str, follow: bool) -> None:
    import os
    import sys
    import time

    from agentsess.core.runs.history import status
    from agentsess.edges import paths

    path = paths.output_log(run_id)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    out = sys.stdout.buffer
    with fh:
        while True:
            block = fh.read(1 << 16)
            if block:
                out.write(block)
                out.flush()
                continue
            if not follow:
                break
            if status(run_id) != "running":
                rest = fh.read()
                if rest:
                    out.write(rest)
                break
            time.sleep(0.2)
    out.flush()
    if os.isatty(1):
        sys.stdout.write("\n")


def _show(data: dict, integrity) -> None:
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
    rows = [
        ("run", render.text(data["id"])),
        ("agent", render.text(f"{data['agent'] or data['name']}  (name {data['name']}, profile {data['profile']})")),
        ("on behalf of", render.text(data["on_behalf_of"] or f"{data['user']}@{data['host']}")),
        ("parent", render.text(data["parent_id"] or "-")),
        ("host / cwd", render.text(f"{data['host']}  {data['cwd']}")),
        ("command", render.text(" ".join(data["command"]))),
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
    rows.extend((label, render.text(text)) for label, text in _secret_rows(data["receipts"]))
    for label, value in rows:
        head.add_row(label, value)
    out.print(head)
    out.file.flush()
    integ = integrity()
    tail = Table.grid(padding=(0, 2))
    tail.add_column(style="bold", min_width=15)
    tail.add_column()
    if integ["ok"]:
        verdict = "verified, sealed" if integ["sealed"] else "intact, unsealed"
        tail.add_row("integrity", render.text(f"{verdict} ({integ['records']} receipts)"))
    else:
        from rich.text import Text

        tail.add_row("integrity", Text(f"FAIL: {integ['failure']}", style="bold red"))
    out.print(tail)
    if data["children"]:
        tree = Tree("children", guide_style="dim")

        def add(node, items):
            for c in items:
                add(node.add(render.text(f"{c['id']}  {c['status']}  {c['name']}")), c["children"])

        add(tree, data["children"])
        out.print(tree)
    out.print()
    timeline = Table(box=None, pad_edge=False, header_style="bold", title="receipts", title_justify="left")
    for col in ("seq", "time", "type", "detail"):
        timeline.add_column(col)
    for rec in data["receipts"]:
        timeline.add_row(str(rec.get("seq")), render.short_time(rec.get("ts"))[11:], rec.get("type", "?"), render.text(_detail(rec)))
    out.print(timeline)
    if data.get("output_tail"):
        out.print()
        out.print(render.text(f"last output ({data['output_bytes'] or 0} bytes in all):"))
        out.print(render.text(data["output_tail"].rstrip("\n")))


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


def _detail(rec: dict) -> str:
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
        return f"{what} after {d.get('duration')}s, {d.get('output_bytes')} bytes of output"
    if t in ("action.checked", "action.result", "action.exec"):
        return " ".join(str(d.get(k)) for k in ("tool", "decision", "summary", "command", "exit_code") if d.get(k) is not None)
    if t == "run.revoked":
        return f"{d.get('cause')} by {d.get('by')}: {d.get('reason') or '-'}"
    if t == "child.started":
        return f"{d.get('child')} ({d.get('name')})"
    if t == "run.sealed":
        return f"{d.get('count')} receipts signed by key {d.get('kid')}"
    if t == "run.denied":
        return d.get("reason", "")
    if t == "net.request":
        where = f"{d.get('host')}:{d.get('port')}{d.get('path') or ''}"
        extra = f" ({d.get('reason') or d.get('error')})" if d.get("reason") or d.get("error") else ""
        return f"{d.get('method')} {where} -> {d.get('status')} {d.get('decision')}{extra}"
    if t == "secret.injected":
        return f"{' '.join(d.get('vars') or [])} injected {d.get('mode', 'raw')}"
    return ", ".join(f"{k}={v}" for k, v in list(d.items())[:4])
