#!/usr/bin/env python3
"""agentsess benchmarks: every figure measured beside its reference, in the same run.

Usage (from the repository root, with the project's interpreter)::

    .venv/bin/python bench/run.py            # full: 1 GiB through the tee, 100k-run store
    .venv/bin/python bench/run.py --quick    # day to day and CI: 100 MiB, fewer repetitions, < 1 min

Prints a markdown table and writes ``bench/results/latest.json`` and ``bench/results/latest.md``
(a full run) or ``bench/results/quick.json`` and ``quick.md`` (``--quick``: never the committed
full results; ``--json-out FILE`` / ``--md-out FILE`` to write elsewhere, but not a quick run
over the full results). Each figure is the median over
several repetitions with its min-max, next to its reference (``python -c pass`` on the same
interpreter, ``cat FILE | tee LOG > OUT``, ``script -q``, ...), the ratio, the target (issues 8
and 18), and PASS/MISS.

A MISS never fails the command: the exit code is 0 unless the harness itself broke (a
command under test failed, a tool is missing); then the row says ERROR and the exit is 1.

Start-up figures are realistic only with byte-code caches: this environment sets
PYTHONDONTWRITEBYTECODE=1, so the bench precompiles the package (``compileall``) and runs
every command without that variable. Everything runs in a fresh data root
(XDG_DATA_HOME and XDG_CONFIG_HOME, so the default paths are used, and AGENTSESS_KEYRING=file,
under a temporary folder) in
the place where agentsess keeps its data by default (the parent of
``platformdirs.user_data_dir("agentsess")``, disk-backed on a normal machine), because that
is what users get: a tmpfs data root would hide the cost of the disk. ``--workdir DIR``
chooses another folder; the table names the filesystem and says so when it is tmpfs.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import secrets as pysecrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
MiB = 1 << 20
GiB = 1 << 30
PY = sys.executable
SECRET_COUNT = 10


# The child of the timing run for the tool-call paths: it runs inside the run, so hook, check
# and exec reach the run's supervisor as an agent's would. hook and exec are called the way
# agentsess installs them in the agent (INSTALLED, a JSON list: the interpreter straight into the
# entry point), check the way a script calls it (the `agentsess` command).
# argv: REPS OUT HOOK_INPUT INSTALLED AGENTSESS...
INSIDE = r"""
import json, os, subprocess, sys, time
reps, out, hook_input, installed, ag = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), json.loads(sys.argv[4]), sys.argv[5:]
run_id = os.environ["AGENTSESS_RUN_ID"]
cases = {
    "hook": ([*installed, "hook", "claude-code", "--run", run_id], hook_input),
    "check": ([*ag, "check", "bench:read"], None),
    "exec": ([*installed, "exec", "-c", "true"], None),
    "python": ([sys.executable, "-c", "pass"], None),
}
def once(argv, data):
    t0 = time.perf_counter()
    p = subprocess.run(argv, input=data or b"", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{argv[-2:]} exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
    return took
probe = subprocess.run(cases["hook"][0], input=hook_input, capture_output=True).stdout.decode(errors="replace")
for _ in range(2):
    for argv, data in cases.values():
        once(argv, data)
samples = {name: [] for name in cases}
for _ in range(reps):
    for name, (argv, data) in cases.items():
        samples[name].append(once(argv, data))
imports = {}
for label, name in (("hook claude-code", "hook"), ("check", "check"), ("exec -c true", "exec")):
    argv, data = cases[name]
    argv = [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable else argv)]
    imports[label] = subprocess.run(argv, input=data or b"", capture_output=True).stderr.decode(errors="replace")
with open(out + ".tmp", "w") as fh:
    json.dump({"samples": samples, "probe": probe, "imports": imports, "token": os.environ["AGENTSESS_TOKEN"]}, fh)
os.replace(out + ".tmp", out)
"""


class HarnessError(Exception):
    """The bench itself could not measure something (not a timing result)."""


# -- measuring ---------------------------------------------------------------------------------


def default_workdir() -> str:
    """Where agentsess keeps its data by default (the folder that holds its data root)."""
    try:
        import platformdirs

        return os.path.dirname(platformdirs.user_data_dir("agentsess"))
    except ImportError:
        return os.path.join(os.path.expanduser("~"), ".local", "share")


def installed_command() -> list[str]:
    """How agentsess calls itself from the hooks and shell prefix it installs in an agent."""
    from agentsess.core.guard.agents import ENTRY

    return [PY, "-c", ENTRY]


def stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


def spawn_timed(argv, env, stdin_data=None, stdout=subprocess.DEVNULL, expect=(0,), cwd=None) -> float:
    """Wall seconds of one command from spawn to exit; its exit code must be in ``expect``."""
    stdin = subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)
    _, err = p.communicate(stdin_data, timeout=600)
    took = time.perf_counter() - t0
    if expect is not None and p.returncode not in expect:
        raise HarnessError(f"{' '.join(map(str, argv))[:120]} exited {p.returncode}: {err.decode(errors='replace')[-300:]}")
    return took


def interleaved(cases: dict, reps: int, warmup: int = 2) -> dict:
    """Run each case ``warmup`` times untimed, then ``reps`` rounds, alternating the cases in
    each round so that drift (frequency, caches, other load) hits them alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    samples = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {name: stats(s) for name, s in samples.items()}


# -- processes -----------------------------------------------------------------------------------


def proc_stat(pid: int):
    """(state, ppid, pgrp) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def all_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def group_members(pgid: int, zombies: bool = False) -> list[int]:
    """Processes in process group ``pgid``: live ones, or with ``zombies`` unreaped ones too."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgid and (zombies or st[0] not in ("Z", "X")):
            out.append(pid)
    return out


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise HarnessError(f"timed out waiting for {what}")


def run_rss(argv, env, stdout_path: str) -> tuple[float, int, int]:
    """Run ``argv`` with stdout to a file; (wall seconds, exit code, peak RSS in KiB).

    The peak is VmHWM of /proc/PID/status, polled every 5 ms until the process exits
    (VmHWM only grows, so the last reading is the peak up to that moment). wait4's
    ru_maxrss is no use here: Linux carries the forking parent's high-water mark over exec.
    """
    with open(stdout_path, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
    hwm = 0
    done = threading.Event()

    def poll():
        nonlocal hwm
        while not done.is_set():
            value = vm_hwm_kib(p.pid)
            if value:
                hwm = max(hwm, value)
            done.wait(0.005)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    # wait without reaping, so the last VmHWM reading is taken after the process has done everything
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    took = time.perf_counter() - t0
    value = vm_hwm_kib(p.pid)
    done.set()
    t.join()
    if value:
        hwm = max(hwm, value)
    code = p.wait()
    return took, code, hwm


# -- the environment under test -----------------------------------------------------------------


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(workdir: str) -> dict:
    model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = None
    try:
        best = ""
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if workdir.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fs = parts[1], parts[2]
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    commit = None
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "agentsess"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "python": platform.python_version(),
        "python_path": PY,
        "kernel": platform.release(),
        "os": platform.platform(),
        "workdir": workdir,
        "workdir_fs": fs,
        "load_average": _loadavg(),
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class Bench:
    def __init__(self, args):
        self.quick = args.quick
        self.size = (100 * MiB if args.quick else GiB) if args.size is None else args.size
        self.reps = args.reps or (7 if args.quick else 21)
        self.big_reps = 2 if args.quick else 3
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.errors = 0
        base = args.workdir
        if base is None:
            base = default_workdir()
        os.makedirs(base, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="agentsess-bench-", dir=base)
        # the data root and config where a user has them by default (XDG folders inside the
        # bench's own folder), not AGENTSESS_HOME/AGENTSESS_CONFIG: the default paths' cost counts
        data_home, config_home = os.path.join(self.work, "data"), os.path.join(self.work, "config")
        self.home = os.path.join(data_home, "agentsess")
        self.config = os.path.join(config_home, "agentsess", "config.toml")
        os.makedirs(os.path.dirname(self.config), mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSESS_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(XDG_DATA_HOME=data_home, XDG_CONFIG_HOME=config_home, AGENTSESS_KEYRING="file")
        self.env = env
        script = os.path.join(os.path.dirname(PY), "agentsess")
        self.ag = [script] if os.access(script, os.X_OK) else [PY, "-m", "agentsess"]
        self.secret_values: list[str] = []
        self.imports: dict = {}
        self.data = os.path.join(self.work, "data.txt")

    # -- plumbing ------------------------------------------------------------------------

    def agentsess(self, *args) -> list[str]:
        return [*self.ag, *args]

    def cli(self, *args, env=None, input=None, expect=(0,)) -> subprocess.CompletedProcess:
        p = subprocess.run(self.agentsess(*args), env=env or self.env, input=input, capture_output=True, timeout=600)
        if expect is not None and p.returncode not in expect:
            raise HarnessError(f"agentsess {' '.join(args)[:80]} exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
        return p

    def store_rows(self, home: str, sql: str, args=()) -> list[tuple]:
        """Rows from a store, opened read-only ([] while it does not exist yet)."""
        try:
            db = sqlite3.connect(f"file:{os.path.join(home, 'store.db')}?mode=ro", uri=True, timeout=10)
        except sqlite3.OperationalError:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        line = format_row(row)
        print(line, flush=True)

    def section(self, fn) -> None:
        t0 = time.monotonic()
        try:
            fn()
        except Exception as exc:  # a broken measurement is reported, the others still run
            self.errors += 1
            self.add({"id": fn.__name__, "name": fn.__name__.replace("_", " "), "result": "ERROR",
                      "error": f"{type(exc).__name__}: {exc}"})
        print(f"<!-- {fn.__name__}: {time.monotonic() - t0:.1f}s -->", file=sys.stderr, flush=True)

    # -- set-up --------------------------------------------------------------------------

    def prepare(self) -> None:
        subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "agentsess")], check=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                       stdout=subprocess.DEVNULL)
        self.notes.append(
            "PYTHONDONTWRITEBYTECODE is unset for every command and the package is precompiled "
            "(python -m compileall), so start-up figures include byte-code caches as a user's install has them."
        )
        self.notes.append(f"agentsess is invoked as `{' '.join(self.ag)}`; the reference `python -c pass` is `{PY} -c pass`.")
        self.secret_values = [f"bnch{i}_" + pysecrets.token_urlsafe(24) for i in range(SECRET_COUNT)]
        lines = ["[profiles.bench]", 'scopes = ["bench:*"]', 'default_scopes = ["bench:read"]',
                 'revoke_grace = "5s"', "", "[profiles.bench.env]"]
        for i in range(SECRET_COUNT):
            lines.append(f'BENCH_SECRET_{i} = {{ secret = "bench-secret-{i}" }}')
        lines += ["", "[[profiles.bench.rules]]", 'tool = "Bash"', 'args = "git push*"', 'scope = "bench:push"',
                  'decision = "ask"', "", "[[profiles.bench.rules]]", 'tool = "Bash"', 'scope = "bench:read"',
                  'decision = "allow"', ""]
        with open(self.config, "w") as fh:
            fh.write("\n".join(lines))
        for i, value in enumerate(self.secret_values):
            self.cli("secret", "set", f"bench-secret-{i}", input=value.encode())
        self.cli("run", "--no-pty", "--profile", "bench", "--", "true")  # keys, store, config cache
        fs = self.info["workdir_fs"]
        where = f"data files and data roots live in {self.work} ({fs})"
        if fs in ("tmpfs", "ramfs"):
            where += "; **this is memory, not disk: not what users get** (choose a disk-backed --workdir)"
        self.notes.append(where + ".")

    def make_data(self) -> None:
        """Random base64 text (76-column lines, like real logs of encoded blobs), with each of
        the 10 secrets appearing once in every 8 MiB, so that the masker has real work."""
        block = 6 * MiB  # raw bytes per step: 8 MiB of base64 text
        written = 0
        masked_expected = 0
        with open(self.data, "wb") as fh:
            i = 0
            while written < self.size:
                text = base64.encodebytes(os.urandom(block))
                secret = self.secret_values[i % SECRET_COUNT].encode()
                cut = text.find(b"\n", len(text) // 2) + 1
                text = text[:cut] + b"token=" + secret + b"\n" + text[cut:]
                need = self.size - written
                if len(text) > need:
                    text = text[:need]
                if secret in text:
                    masked_expected += 1
                fh.write(text)
                written += len(text)
                i += 1
        self.masked_expected = masked_expected

    # -- 1. start-up: run -- true ------------------------------------------------------------

    def run_startup(self) -> None:
        env = self.env
        res = interleaved(
            {
                "agentsess": lambda: spawn_timed(self.agentsess("run", "--no-pty", "--", "true"), env),
                "advisory": lambda: spawn_timed(self.agentsess("run", "--no-pty", "--no-contain", "--", "true"), env),
                "python": lambda: spawn_timed([PY, "-c", "pass"], env),
                "true": lambda: spawn_timed(["true"], env),
            },
            self.reps,
        )
        res = {k: ms(v) for k, v in res.items()}
        modes = {m for (m,) in self.store_rows(self.home, "SELECT DISTINCT containment FROM runs")}
        if "contained" not in modes:
            self.notes.append("**`run -- true` was not contained here** (no bubblewrap or user namespaces): "
                              "both start-up rows measure advisory runs.")
        self.add(row("run_true_vs_python", "`agentsess run -- true` (contained)", "ms", res["agentsess"],
                     "`python -c pass`", res["python"], ("ratio_max", 6.0)))
        self.add(row("run_advisory_vs_python", "`agentsess run --no-contain -- true` (advisory)", "ms",
                     res["advisory"], "`python -c pass`", res["python"], ("ratio_max", 6.0)))
        self.add(row("run_true_vs_true", "`agentsess run -- true`", "ms", res["agentsess"],
                     "bare `true`", res["true"], None))

    # -- 2. per-tool-call paths ------------------------------------------------------------------

    def tool_call_paths(self) -> None:
        """hook, check and exec are asked from inside a live run (they reach its supervisor over
        the run's control socket, which answers only processes of the run): the run's child is
        a timing script (INSIDE) that runs them, interleaved with `python -c pass`."""
        out = os.path.join(self.work, "inside.json")
        hook_input = json.dumps({
            "session_id": "bench-session", "transcript_path": "/dev/null", "cwd": self.work,
            "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": "ls -la", "description": "list files"},
        })
        p = subprocess.run(
            self.agentsess("run", "--no-pty", "--profile", "bench", "--scope", "bench:read", "--",
                           PY, "-c", INSIDE, str(self.reps), out, hook_input, json.dumps(installed_command()), *self.ag),
            env=self.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=1200,
        )
        if p.returncode != 0 or not os.path.exists(out):
            raise HarnessError(f"the timing run exited {p.returncode}: {p.stderr.decode(errors='replace')[-400:]}")
        with open(out) as fh:
            inside = json.load(fh)
        if '"permissionDecision": "allow"' not in inside["probe"]:
            raise HarnessError(f"the hook did not allow the call: {inside['probe'][:200]!r}")
        res = {k: ms(stats(v)) for k, v in inside["samples"].items()}
        for label, text in inside["imports"].items():
            self._import_summary(label, text)
        # token verify needs no run: from outside, as a service verifying a token would (the run
        # has ended by now, so the token is refused as "exited run": the same work, exit code 1)
        token = inside["token"]
        outside = interleaved({"token": lambda: spawn_timed(self.agentsess("token", "verify", token), self.env, expect=(0, 1)),
                               "python": lambda: spawn_timed([PY, "-c", "pass"], self.env)}, self.reps)
        self.import_profile("token verify", ["token", "verify", token], self.env)
        self.import_profile("run -- true", ["run", "--no-pty", "--", "true"], self.env)
        py = res["python"]
        self.add(row("hook_claude_code", "`hook claude-code` (PreToolUse, inside a run)", "ms", res["hook"], "`python -c pass`", py, ("ratio_max", 2.0)))
        self.add(row("check", "`check bench:read` (inside a run)", "ms", res["check"], "`python -c pass`", py, ("ratio_max", 2.0)))
        self.add(row("exec", "`exec -c true` (shell capture, inside a run)", "ms", res["exec"], "`python -c pass`", py, ("ratio_max", 3.0)))
        self.add(row("token_verify", "`token verify TOKEN`", "ms", ms(outside["token"]), "`python -c pass`", ms(outside["python"]),
                     ("ratio_max", 5.0)))

    def import_profile(self, label: str, args: list[str], env: dict, stdin: bytes | None = None) -> None:
        """-X importtime of one command: the total and the heaviest modules (cumulative µs)."""
        argv = [PY, "-X", "importtime", *(self.ag[1:] if self.ag[0] == PY else self.ag), *args]
        p = subprocess.run(argv, env=env, input=stdin or b"", capture_output=True, timeout=120)
        self._import_summary(label, p.stderr.decode(errors="replace"))

    def _import_summary(self, label: str, text: str) -> None:
        mods = []
        for line in text.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            parts = line[len("import time:"):].split("|")
            self_us, cum_us, name = int(parts[0]), int(parts[1]), parts[2]
            depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
            mods.append((name.strip(), self_us, cum_us, depth))
        top = [m for m in mods if m[3] == 0]
        total = sum(m[2] for m in top)
        heavy = sorted((m for m in mods if m[3] <= 2), key=lambda m: -m[2])[:8]
        self.imports[label] = {"total_ms": total / 1000,
                               "heaviest": [{"module": m[0], "cumulative_ms": m[2] / 1000, "depth": m[3]} for m in heavy]}

    # -- 3. throughput and supervisor memory -------------------------------------------------------

    def _last_run(self) -> tuple[str, int]:
        rows = self.store_rows(self.home, "SELECT id, output_bytes FROM runs ORDER BY started_at DESC LIMIT 1")
        return rows[0]

    def _drop_log(self, run_id: str) -> None:
        try:
            os.remove(os.path.join(self.home, "runs", run_id, "output.log"))
        except OSError:
            pass

    def pipe_throughput(self) -> None:
        self.make_data()
        size = os.path.getsize(self.data)
        out = os.path.join(self.work, "out.bin")
        teelog = os.path.join(self.work, "tee.log")
        ag_t, tee_t, hwm = [], [], []
        for rep in range(self.big_reps + 1):  # the first round warms the page cache
            took, code, peak = run_rss(
                self.agentsess("run", "--no-pty", "--profile", "bench", "--", "cat", self.data), self.env, out)
            if code != 0:
                raise HarnessError(f"agentsess run -- cat exited {code}")
            run_id, logged = self._last_run()
            if rep == 0:
                with open(out, "rb") as fh:
                    body = fh.read(64 * MiB)
                if any(s.encode() in body for s in self.secret_values):
                    raise HarnessError("a secret reached stdout unmasked")
                self.masked_seen = body.count(b"[masked:")
                del body
            os.remove(out)
            if rep < self.big_reps:
                self._drop_log(run_id)  # keep the last run's log for show-run
            t0 = time.perf_counter()
            with open(out, "wb") as fh:
                subprocess.run(["sh", "-c", 'cat "$1" | tee "$2"', "sh", self.data, teelog], stdout=fh, check=True)
            took_tee = time.perf_counter() - t0
            os.remove(out)
            os.remove(teelog)
            if rep == 0:
                continue
            ag_t.append(took)
            tee_t.append(took_tee)
            hwm.append(peak)
        self.big_run = run_id
        self.big_run_bytes = logged
        mbps = lambda ts: stats([size / t / 1e6 for t in ts])
        label = human_size(size)
        self.add(row("pipe_throughput", f"`run --no-pty -- cat FILE > OUT` throughput, {label}, 10 secrets masked", "MB/s",
                     mbps(ag_t), f"`cat FILE | tee LOG > OUT`, {label}", mbps(tee_t), ("ratio_min", 0.8)))
        self.add(row("supervisor_rss", f"supervisor peak RSS, {label} through pipes", "MB",
                     stats([h / 1024 for h in hwm]), "`python -c pass`", self.python_rss(), ("abs_max", 60.0)))
        if not self.quick:
            small = os.path.join(self.work, "data100.txt")
            with open(self.data, "rb") as src, open(small, "wb") as dst:
                dst.write(src.read(100 * MiB))
            peaks = []
            for _ in range(self.big_reps):
                _, code, peak = run_rss(
                    self.agentsess("run", "--no-pty", "--profile", "bench", "--", "cat", small), self.env, out)
                os.remove(out)
                self._drop_log(self._last_run()[0])
                peaks.append(peak / 1024)
            os.remove(small)
            self.add(row("supervisor_rss_100m", "supervisor peak RSS, 100 MiB through pipes", "MB", stats(peaks),
                         "`python -c pass`", self.python_rss(), ("abs_max", 60.0)))

    def python_rss(self) -> dict:
        values = []
        for _ in range(3):
            _, _, peak = run_rss([PY, "-c", "pass"], self.env, os.devnull)
            values.append(peak / 1024)
        return stats(values)

    def pty_throughput(self) -> None:
        """`run --pty` beside `script`, each in the same terminal setup as its reference.

        Same setup, one pty: the wrapper gives `cat` a pty of its own and writes what comes out
        to a file (stdin /dev/null, no terminal around it), `agentsess run --pty` as `script -q`.
        Same setup under a terminal: each wrapper runs inside `script` (whose pty stands for the
        user's terminal emulator), so its output crosses two ptys, `script` inside `script`
        likewise. The old row (agentsess under `script` against one `script`, two ptys against
        one) stays as information: the second pty's kernel work is what it measures; so does
        `script` keeping its typescript in a file (agentsess writes and hashes its output log).
        All cases alternate round by round, so drift and other load hit them alike."""
        if shutil.which("script") is None:
            raise HarnessError("util-linux `script` is not installed")
        if not os.path.exists(self.data):
            self.make_data()  # `--only pty_throughput`: the pipe section did not make it
        size = os.path.getsize(self.data)
        src = self.data
        out = os.path.join(self.work, "out-pty.bin")
        typescript = os.path.join(self.work, "typescript.log")
        ours = self.agentsess("run", "--pty", "--profile", "bench", "--", "cat", src)
        cases = {
            "agentsess": ours,
            "script": ["script", "-q", "-c", f"cat {src}", "/dev/null"],
            "agentsess_in_script": ["script", "-q", "-c", " ".join(ours), "/dev/null"],
            "script_in_script": ["script", "-q", "-c", f"script -q -c 'cat {src}' /dev/null", "/dev/null"],
            # agentsess writes (and hashes) its output log; this `script` keeps its typescript too
            "script_logging": ["script", "-q", "-c", f"cat {src}", typescript],
        }
        secrets = [v.encode() for v in self.secret_values]

        def once(name: str, argv: list, check: bool) -> float:
            with open(out, "wb") as fh:
                t0 = time.perf_counter()
                subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.DEVNULL,
                               check=True, timeout=3600)
                took = time.perf_counter() - t0
            got = os.path.getsize(out)
            if got < size:
                raise HarnessError(f"only {got} of {size} bytes came out of the pty ({name})")
            if check:  # the first round: no secret in what agentsess showed
                with open(out, "rb") as fh:
                    while block := fh.read(64 * MiB):
                        if any(s in block for s in secrets):
                            raise HarnessError(f"a secret reached the terminal unmasked ({name})")
            os.remove(out)
            if os.path.exists(typescript):
                os.remove(typescript)
            if name.startswith("agentsess"):
                self._drop_log(self._last_run()[0])
            return took

        times: dict[str, list[float]] = {name: [] for name in cases}
        for rep in range(self.big_reps):
            for name, argv in cases.items():
                times[name].append(once(name, argv, rep == 0 and name.startswith("agentsess")))
        mbps = lambda ts: stats([size / t / 1e6 for t in ts])
        label = human_size(size)
        self.add(row("pty_throughput", f"`run --pty -- cat FILE > OUT` throughput, {label}, 10 secrets masked",
                     "MB/s", mbps(times["agentsess"]), f"`script -q -c 'cat FILE' /dev/null > OUT`, {label}",
                     mbps(times["script"]), ("ratio_min", 0.9)))
        self.add(row("pty_throughput_in_terminal", f"the same under a terminal (inside `script`), {label}",
                     "MB/s", mbps(times["agentsess_in_script"]),
                     "`script` inside `script` (the same two ptys)", mbps(times["script_in_script"]), ("ratio_min", 0.9)))
        # the figure before issue 18's second look: two ptys (agentsess's and the terminal's) against one
        self.add(row("pty_throughput_vs_one_pty", f"`run --pty` under `script` (two ptys), {label}", "MB/s",
                     mbps(times["agentsess_in_script"]), "`script -q -c 'cat FILE'` (one pty)",
                     mbps(times["script"]), None))
        self.add(row("pty_throughput_vs_logging_script", f"`run --pty -- cat FILE > OUT` (same runs), {label}", "MB/s",
                     mbps(times["agentsess"]), "`script -q -c 'cat FILE' LOG > OUT` (keeps a log on disk, as agentsess)",
                     mbps(times["script_logging"]), None))

    # -- 4. revoke ---------------------------------------------------------------------------------

    def revoke(self) -> None:
        reps = 3 if self.quick else 7
        wall, gone, reaped, ref = [], [], [], []
        for _ in range(reps):
            sup = subprocess.Popen(
                self.agentsess("run", "--no-pty", "--", "sh", "-c", "sleep 600 & sleep 600"),
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                run_id, pgid = wait_for(lambda: self.store_rows(
                    self.home, "SELECT id, child_pgid FROM runs WHERE supervisor_pid = ? AND status = 'running' "
                    "AND child_pgid IS NOT NULL", (sup.pid,)), 30, "the run's row")[0]
                # sh, and its two sleeps
                wait_for(lambda: len(group_members(pgid)) >= 3, 30, "sleep & sleep in the child's group")
                t_rev, t_gone, t_reaped = self._timed_stop(pgid, lambda: self.cli("revoke", run_id))
                code = sup.wait(30)
                if code != 124:
                    raise HarnessError(f"the revoked run exited {code}, expected 124")
            finally:
                if sup.poll() is None:
                    sup.kill()
                    sup.wait()
            wall.append(t_rev)
            gone.append(t_gone)
            reaped.append(t_reaped)
            # reference: the same group, unwrapped, stopped with kill -TERM -PGID
            plain = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: len(group_members(plain.pid)) >= 3, 30, "the reference group")

            def stop_plain():
                subprocess.run(["kill", "-TERM", "--", f"-{plain.pid}"], check=True)
                plain.wait()  # as a supervisor would reap its child

            _, t_ref, _ = self._timed_stop(plain.pid, stop_plain)
            ref.append(t_ref)
        to_ms = lambda xs: stats([x * 1000 for x in xs])
        self.add(row("revoke_gone", "`revoke RUN` issued → no live process in the child's group", "ms", to_ms(gone),
                     "`kill -TERM -PGID` → group gone", to_ms(ref), ("abs_max", 1000.0),
                     extra={"zombies_reaped_ms": to_ms(reaped)}))
        self.add(row("revoke_wall", "`revoke RUN` command wall time", "ms", to_ms(wall),
                     "`kill -TERM -PGID` → group gone", to_ms(ref), ("abs_max", 1000.0)))

    @staticmethod
    def _timed_stop(pgid: int, action) -> tuple[float, float, float]:
        """Seconds from calling ``action`` until (it returned, the group has no live process,
        the group has no process at all, zombies included)."""
        live_at, all_at = [], []
        start = time.perf_counter()

        def poll():
            while time.perf_counter() - start < (60 if not live_at else live_at[0] - start + 5):
                members = group_members(pgid, zombies=True)
                states = [st[0] for st in map(proc_stat, members) if st]
                if not live_at and all(state in ("Z", "X") for state in states):
                    live_at.append(time.perf_counter())
                if not members:
                    all_at.append(time.perf_counter())
                    return
                time.sleep(0.002)

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        action()
        returned = time.perf_counter()
        t.join(65)
        if not live_at:
            raise HarnessError(f"process group {pgid} still alive 60 s after the stop")
        return returned - start, live_at[0] - start, (all_at or [float("nan")])[0] - start

    # -- 5. reading runs back ------------------------------------------------------------------------

    def big_store(self) -> None:
        count = 100_000
        home = os.path.join(self.work, "home-100k")
        env = {**self.env, "AGENTSESS_HOME": home}
        self.cli("run", "--no-pty", "--", "true", env=env)
        sys.path.insert(0, ROOT)
        from agentsess.ids import new_run_id

        db = sqlite3.connect(os.path.join(home, "store.db"), isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            template = dict(db.execute("SELECT * FROM runs LIMIT 1").fetchone())
            cols = list(template)
            now = time.time()
            rows = []
            for i in range(count - 1):
                started = now - 30 * 86400 + i * (30 * 86400 / count)
                rec = dict(template)
                rec.update(id=new_run_id(started), started_at=started, ended_at=started + 1.5,
                           issued_at=started, expires_at=started + 3600,
                           jti=pysecrets.token_hex(16), token_sha256=pysecrets.token_hex(32))
                rows.append(tuple(rec[c] for c in cols))
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", rows)
            db.execute("COMMIT")
            total = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            db.close()
        if total != count:
            raise HarnessError(f"the 100k store holds {total} runs")
        ref_code = (
            "import sqlite3,json,sys;"
            f"db=sqlite3.connect({os.path.join(home, 'store.db')!r});db.row_factory=sqlite3.Row;"
            "rows=[dict(r) for r in db.execute('SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 50')];"
            "sys.stdout.write(json.dumps(rows,indent=2))"
        )
        self.import_profile("runs --json", ["runs", "--json"], env)
        res = interleaved(
            {
                "runs": lambda: spawn_timed(self.agentsess("runs", "--json"), env),
                "ref": lambda: spawn_timed([PY, "-c", ref_code], env),
            },
            5 if self.quick else 11, warmup=1,
        )
        res = {k: ms(v) for k, v in res.items()}
        self.add(row("runs_json_100k", "`runs --json` (newest 50) over 100k runs", "ms", res["runs"],
                     "python: sqlite3 query + json.dumps of 50 rows", res["ref"], ("abs_max", 300.0)))
        if not self.quick:  # ~8 s a time here: full runs only
            every = stats([spawn_timed(self.agentsess("runs", "--json", "--limit", "0"), env) * 1000 for _ in range(3)])
            self.add(row("runs_json_all_100k", "`runs --json --limit 0` (all 100k runs)", "ms", every, None, None, None))

    def inspect_startup(self) -> None:
        """`runs` and `show-run` as a person types them (issue 18: their start-up without typer's
        pydantic import, at most 80 ms), on the bench's own data root, against `python -c pass`."""
        env = self.env
        self.cli("run", "--no-pty", "--", "sh", "-c", "echo inspected")
        self.import_profile("runs", ["runs"], env)
        res = interleaved(
            {
                "runs": lambda: spawn_timed(self.agentsess("runs"), env),
                "show": lambda: spawn_timed(self.agentsess("show-run", "last"), env),
                "python": lambda: spawn_timed([PY, "-c", "pass"], env),
            },
            self.reps,
        )
        res = {k: ms(v) for k, v in res.items()}
        self.add(row("runs_startup", "`runs` start-up", "ms", res["runs"], "`python -c pass`", res["python"],
                     ("abs_max", 80.0)))
        self.add(row("show_run_startup", "`show-run last` start-up", "ms", res["show"], "`python -c pass`",
                     res["python"], ("abs_max", 80.0)))

    def show_run_first_byte(self) -> None:
        run_id = getattr(self, "big_run", None)
        if run_id is None:
            raise HarnessError("no big run to show (the pipe throughput section failed)")
        log = os.path.join(self.home, "runs", run_id, "output.log")
        size = os.path.getsize(log)

        def first_byte(argv) -> tuple[float, float]:
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            first = p.stdout.read(1)
            t1 = time.perf_counter()
            p.stdout.read()  # the rest, to the end
            p.wait()
            t2 = time.perf_counter()
            if p.returncode != 0 or not first:
                raise HarnessError(f"{argv[-2:]} exited {p.returncode}: {p.stderr.read()[-300:]!r}")
            return t1 - t0, t2 - t0

        self.import_profile("show-run", ["show-run", run_id], self.env)
        reps = 3 if self.quick else 7
        ag, ag_total, ref = [], [], []
        first_byte(self.agentsess("show-run", run_id))  # warm
        for _ in range(reps):
            a, total = first_byte(self.agentsess("show-run", run_id))
            ag.append(a * 1000)
            ag_total.append(total * 1000)
            ref.append(first_byte(["tail", "-n", "20", log])[0] * 1000)
        label = human_size(size)
        self.add(row("show_run_first_byte", f"`show-run RUN` first byte, {label} of output", "ms", stats(ag),
                     "`tail -n 20 output.log` first byte", stats(ref), ("abs_max", 300.0),
                     extra={"total_ms": stats(ag_total)}))


# -- rows and the table ---------------------------------------------------------------------------


def row(rid, name, unit, value, ref_name, ref, target, extra=None) -> dict:
    ratio = value["median"] / ref["median"] if ref else None
    result = "INFO"
    if target is not None:
        kind, limit = target
        got = ratio if kind.startswith("ratio") else value["median"]
        ok = got >= limit if kind == "ratio_min" else got <= limit
        result = "PASS" if ok else "MISS"
    out = {"id": rid, "name": name, "unit": unit, "value": value, "reference_name": ref_name, "reference": ref,
           "ratio": ratio, "target": {"kind": target[0], "value": target[1]} if target else None, "result": result}
    if extra:
        out["extra"] = extra
    return out


def scale(s: dict, k: float) -> dict:
    if s is None:
        return None
    return {**s, "median": s["median"] * k, "min": s["min"] * k, "max": s["max"] * k,
            "samples": [x * k for x in s["samples"]]}


def ms(s: dict) -> dict:
    """Seconds (as spawn_timed measures) to milliseconds."""
    return scale(s, 1000)


def human_size(n: int) -> str:
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n} B"


def fmt(s: dict | None, unit: str) -> str:
    if s is None:
        return "–"
    digits = 0 if s["median"] >= 100 else 1
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def fmt_target(t: dict | None, unit: str) -> str:
    if t is None:
        return "–"
    return {"ratio_max": f"≤ {t['value']:g}×", "ratio_min": f"≥ {t['value']:g}×",
            "abs_max": f"≤ {t['value']:g} {unit}"}[t["kind"]]


HEADER = ("| benchmark | agentsess: median (min–max) | reference: median (min–max) | ratio | target | result |\n"
          "| --- | --- | --- | --- | --- | --- |")


def format_row(r: dict) -> str:
    if r["result"] == "ERROR":
        return f"| {r['name']} | ERROR: {r['error']} | | | | ERROR |"
    ref = "–" if r["reference"] is None else f"{r['reference_name']}: {fmt(r['reference'], r['unit'])}"
    ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}×"
    return f"| {r['name']} | {fmt(r['value'], r['unit'])} | {ref} | {ratio} | {fmt_target(r['target'], r['unit'])} | **{r['result']}** |"


def import_lines(imports: dict) -> list[str]:
    if not imports:
        return []
    out = ["", "Import profile (`python -X importtime`, one run each; cumulative ms of the heaviest modules):", ""]
    for label, prof in imports.items():
        heavy = ", ".join(f"{m['module']} {m['cumulative_ms']:.1f}" for m in prof["heaviest"][:6])
        out.append(f"- `{label}`: {prof['total_ms']:.1f} ms of imports; {heavy}")
    return out


def markdown(info: dict, rows: list[dict], notes: list[str], quick: bool, elapsed: float, imports=None) -> str:
    out = [
        f"# agentsess benchmarks ({'--quick' if quick else 'full'})",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_mib']} MiB RAM; kernel {info['kernel']}"
        + (f"; load average at start {' '.join(map(str, info['load_average']))}" if info.get("load_average") else ""),
        f"- python {info['python']} ({info['python_path']}); commit {info['commit']}; {info['date']}",
        f"- took {elapsed:.0f} s; each figure is the median of its repetitions with (min–max); ratio = agentsess / reference.",
        "",
        HEADER,
        *[format_row(r) for r in rows],
        "",
        "Notes:",
        *[f"- {n}" for n in notes],
        *import_lines(imports or {}),
        "",
    ]
    return "\n".join(out)


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 MiB instead of 1 GiB, fewer repetitions (< 1 minute)")
    ap.add_argument("--json-out", default=None,
                    help="where to write the JSON results (default: bench/results/latest.json, quick.json with --quick)")
    ap.add_argument("--md-out", default=None, help="where to write the markdown table (default: next to --json-out, .md)")
    ap.add_argument("--workdir", default=None,
                    help="folder for data files and data roots (default: where agentsess keeps its data, on disk)")
    ap.add_argument("--size", type=int, default=None, help="bytes sent through the tee (default: 1 GiB, 100 MiB with --quick)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions of each start-up figure (default 21, 7 with --quick)")
    ap.add_argument("--only", action="append", default=[], help="run only these sections (by name; repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    if args.json_out is None:
        args.json_out = os.path.join(RESULTS, "quick.json" if args.quick else "latest.json")
    md_out = args.md_out or os.path.splitext(args.json_out)[0] + ".md"
    full = {os.path.realpath(os.path.join(RESULTS, name)) for name in ("latest.json", "latest.md")}
    if args.quick and {os.path.realpath(args.json_out), os.path.realpath(md_out)} & full:
        print("bench: --quick does not overwrite the committed full results (bench/results/latest.*); "
              "choose another --json-out/--md-out", file=sys.stderr)
        return 2
    started = time.monotonic()
    bench = Bench(args)
    bench.info = machine_info(bench.work)
    try:
        bench.prepare()
    except Exception as exc:
        print(f"bench: set-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
        return 1
    print(HEADER, flush=True)
    sections = [bench.run_startup, bench.tool_call_paths, bench.inspect_startup, bench.pipe_throughput,
                bench.show_run_first_byte, bench.pty_throughput, bench.revoke, bench.big_store]
    try:
        for fn in sections:
            if args.only and fn.__name__ not in args.only:
                continue
            bench.section(fn)
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    elapsed = time.monotonic() - started
    bench.notes.append(
        "Throughput is end to end (spawn to exit, start-up included) and in MB/s (10^6 bytes); "
        "the pipe figure writes stdout to a file and the run's output log, `tee` likewise writes "
        "its stdout to a file and LOG; both read the data through a pipe.")
    bench.notes.append(
        "Supervisor RSS is the peak of /proc/PID/status VmHWM of the `agentsess run` process (polled every "
        "5 ms, and read once more after it exited, before it is reaped); the reference is the same figure "
        "for `python -c pass`.")
    if getattr(bench, "masked_expected", None):
        bench.notes.append(f"The data carried {bench.masked_expected} secret occurrences; "
                           f"{getattr(bench, 'masked_seen', 0)} `[masked:` markers were seen in the first 64 MiB of stdout.")
    text = markdown(bench.info, bench.rows, bench.notes, args.quick, elapsed, bench.imports)
    print()
    print(text)
    payload = {"version": 1, "mode": "quick" if args.quick else "full", "machine": bench.info,
               "elapsed_s": elapsed, "size_bytes": bench.size, "rows": bench.rows, "notes": bench.notes,
               "imports": bench.imports}
    write_atomic(args.json_out, json.dumps(payload, indent=2) + "\n")
    write_atomic(md_out, text)
    print(f"wrote {args.json_out} and {md_out}", file=sys.stderr)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
