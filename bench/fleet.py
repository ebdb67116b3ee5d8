"""Benchmarks of a fleet on one shared PostgreSQL store (issue 17).

    .venv/bin/python bench/fleet.py            # full
    .venv/bin/python bench/fleet.py --quick    # fewer repetitions

Uses the server named by AGENTSESS_TEST_PG_DSN / AGENTSESS_TEST_PG_PASSWORD, else starts a
throwaway one with .ci/postgres.sh (stopped at the end). Prints a markdown table and writes
bench/results/fleet-latest.{md,json}. Timing never fails the command (a missed target is a
MISS); the exit code is 1 only when something could not be measured.

Figures:
- revoke on host A -> the child gone on host B: wall time from spawning `agentsess revoke`
  on A until B's child process no longer exists; A and B each run in their own PID and UTS
  namespace (unshare) with their own data roots, and reach the server over TCP on 127.0.0.1.
- `run --no-pty -- true` with the PostgreSQL store (through its store agent, already running),
  against `python -c pass`; and the run that starts the agent, the run without the agent
  (`AGENTSESS_STORE_AGENT=0`, psycopg in the run's process), with SQLite, and
  `python -c "import psycopg"` (what psycopg's import alone costs a process).
- `runs --json` (newest 50) over a shared store holding 100k runs (through the store agent, and
  without it).
- import time: what psycopg adds to `run` with PostgreSQL, and that SQLite never imports it.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
PY = sys.executable


class HarnessError(Exception):
    pass


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": samples}


def timed(argv, env, expect=(0,)) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    took = time.perf_counter() - t0
    if p.returncode not in expect:
        raise HarnessError(f"{' '.join(argv)[:100]} exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
    return took


def interleaved(cases: dict, reps: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    samples: dict = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {name: stats(s) for name, s in samples.items()}


class Server:
    """The PostgreSQL server of the bench: the given one, or a throwaway one."""

    def __init__(self):
        self.folder = None
        if not os.environ.get("AGENTSESS_TEST_PG_DSN"):
            out = subprocess.run(["bash", os.path.join(ROOT, ".ci", "postgres.sh"), "start"],
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise HarnessError("could not start PostgreSQL: " + out.stderr[-300:])
            for part in out.stdout.split(";"):
                part = part.strip().removeprefix("export ").strip()
                if "=" in part:
                    key, value = part.split("=", 1)
                    os.environ[key] = value.strip("'")
            self.folder = os.environ["AGENTSESS_TEST_PG_DIR"]
        self.dsn = os.environ["AGENTSESS_TEST_PG_DSN"]
        self.password = os.environ.get("AGENTSESS_TEST_PG_PASSWORD", "")

    def stop(self) -> None:
        if self.folder:
            subprocess.run(["bash", os.path.join(ROOT, ".ci", "postgres.sh"), "stop", self.folder],
                           capture_output=True, timeout=120)


class Bench:
    def __init__(self, quick: bool):
        self.quick = quick
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.startup: dict | None = None  # run_startup's figures, for import_times
        self.agent_envs: list[dict] = []  # the environments whose store agents cleanup() stops
        self.server = Server()
        self.work = tempfile.mkdtemp(prefix="agentsess-fleet-bench-")
        self.schema = "bench_" + secrets.token_hex(4)
        base = self.server.dsn
        self.url = f"{base}{'&' if '?' in base else '?'}options=" + urllib.parse.quote(f"-csearch_path={self.schema}")
        parts = urllib.parse.urlsplit(base)
        self.passfile = os.path.join(self.work, "pgpass")
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, f"{parts.hostname}:*:*:{parts.username}:{self.server.password}\n".encode())
        os.close(fd)
        subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "agentsess")], check=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})

    def host_env(self, name: str, store: str | None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSESS_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(AGENTSESS_HOME=os.path.join(self.work, name, "home"),
                   AGENTSESS_CONFIG=os.path.join(self.work, name, "config.toml"),
                   AGENTSESS_KEYRING="file", PGPASSFILE=self.passfile)
        if store is not None:
            env["AGENTSESS_STORE"] = store
            env["AGENTSESS_STORE_AGENT_IDLE"] = "120"  # and cleanup() stops it at once
            self.agent_envs.append(env)
        os.makedirs(os.path.join(self.work, name), exist_ok=True)
        return env

    def agent_socket(self, env) -> str:
        code = ("from agentsess.edges.store import store_url; from agentsess.edges.store.agent import socket_path; "
                "print(socket_path(store_url()))")
        return subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.strip()

    def stop_agent(self, env) -> None:
        """The store agent of ``env``'s store, told to leave (its socket file removed)."""
        try:
            os.unlink(self.agent_socket(env))
        except (FileNotFoundError, subprocess.CalledProcessError):
            pass

    def ag(self) -> list[str]:
        script = os.path.join(os.path.dirname(PY), "agentsess")
        return [script] if os.access(script, os.X_OK) else [PY, "-m", "agentsess"]

    @staticmethod
    def on_host(name: str, argv: list[str]) -> list[str]:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', name, *argv]

    def add(self, rid, what, unit, value, ref_name, ref, target, ok) -> None:
        self.rows.append({"id": rid, "what": what, "unit": unit, "value": value, "reference": ref_name,
                          "reference_value": ref, "target": target, "met": ok})

    # -- 1. revoke on A -> child gone on B ------------------------------------------------------

    def revoke_cross_host(self) -> None:
        a_env, b_env = self.host_env("host-a", self.url), self.host_env("host-b", self.url)
        reps = 5 if self.quick else 11
        samples, returned = [], []
        for _ in range(reps + 1):
            b = subprocess.Popen(self.on_host("host-b", [*self.ag(), "run", "--no-pty", "--", "sh", "-c",
                                                           "echo up; exec sleep 120"]),
                                 env=b_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if b.stdout.readline() != b"up\n":
                raise HarnessError("the run on host B did not start")
            child = self._child_of_namespace(b.pid)
            run_id = self._running_id(a_env)
            gone_at: list[float] = []

            def watch(pid=child, out=gone_at):
                while os.path.exists(f"/proc/{pid}") and _state(pid) not in ("Z", "X", None):
                    time.sleep(0.001)
                out.append(time.perf_counter())

            t = threading.Thread(target=watch, daemon=True)
            t.start()
            t0 = time.perf_counter()
            out = subprocess.run(self.on_host("host-a", [*self.ag(), "revoke", run_id, "--json"]),
                                 env=a_env, capture_output=True, timeout=60)
            t1 = time.perf_counter()
            t.join(30)
            b.wait(30)
            if out.returncode != 0 or not gone_at:
                raise HarnessError(f"revoke on host A failed: {out.stderr.decode(errors='replace')[-300:]}")
            result = json.loads(out.stdout)[0]
            if not result.get("confirmed"):
                raise HarnessError("host B's supervisor did not confirm the revocation")
            if _ == 0:
                continue  # warm-up
            samples.append((gone_at[0] - t0) * 1000)
            returned.append((t1 - t0) * 1000)
        s = stats(samples)
        self.add("fleet_revoke", "revoke on host A → child gone on host B (ms)", "ms", s,
                 "`revoke` command returned (confirmed)", stats(returned), "≤ 1000 ms", s["median"] <= 1000)

    def _child_of_namespace(self, unshare_pid: int) -> int:
        """The run's child (sh -> sleep) under unshare -> supervisor, as this namespace sees it."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            sup = _children(unshare_pid)
            if sup:
                kids = _children(sup[0])
                if kids:
                    return kids[0]
            time.sleep(0.01)
        raise HarnessError("the run's child did not appear")

    def _running_id(self, env) -> str:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run([*self.ag(), "runs", "--json", "--status", "running"], env=env,
                                 capture_output=True, timeout=60)
            if out.returncode == 0:
                rows = json.loads(out.stdout)
                if rows:
                    return rows[0]["id"]
            time.sleep(0.05)
        raise HarnessError("no running run appeared in the shared store")

    # -- 2. run start-up ------------------------------------------------------------------------

    def run_startup(self) -> None:
        pg_env = self.host_env("startup-pg", self.url)
        cold_env = self.host_env("startup-pg-cold", self.url)
        direct_env = {**self.host_env("startup-pg-direct", self.url), "AGENTSESS_STORE_AGENT": "0"}
        sq_env = self.host_env("startup-sqlite", None)
        cold_socket = self.agent_socket(cold_env)

        def cold() -> float:
            try:
                os.unlink(cold_socket)  # its agent leaves; this run starts a new one
            except FileNotFoundError:
                pass
            return timed([*self.ag(), "run", "--no-pty", "--", "true"], cold_env)

        res = interleaved(
            {
                "pg": lambda: timed([*self.ag(), "run", "--no-pty", "--", "true"], pg_env),
                "pg_cold": cold,
                "pg_direct": lambda: timed([*self.ag(), "run", "--no-pty", "--", "true"], direct_env),
                "sqlite": lambda: timed([*self.ag(), "run", "--no-pty", "--", "true"], sq_env),
                "python": lambda: timed([PY, "-c", "pass"], sq_env),
                "psycopg": lambda: timed([PY, "-c", "import psycopg"], sq_env),
            },
            7 if self.quick else 21,
        )
        res = {k: {**v, "median": v["median"] * 1000, "min": v["min"] * 1000, "max": v["max"] * 1000,
                   "samples": [x * 1000 for x in v["samples"]]} for k, v in res.items()}
        self.startup = res
        ratio = res["pg"]["median"] / res["python"]["median"]
        self.add("fleet_run_startup", "`run --no-pty -- true`, PostgreSQL store (ms)", "ms", res["pg"],
                 "`python -c pass`", res["python"], "≤ 8× python", ratio <= 8)
        self.rows[-1]["ratio"] = ratio
        self.add("fleet_run_startup_cold", "`run --no-pty -- true`, PostgreSQL, the run that starts the store agent (ms)",
                 "ms", res["pg_cold"], "`python -c pass`", res["python"], None, None)
        self.rows[-1]["ratio"] = res["pg_cold"]["median"] / res["python"]["median"]
        self.add("fleet_run_startup_direct", "`run --no-pty -- true`, PostgreSQL without the agent "
                 "(AGENTSESS_STORE_AGENT=0: psycopg in the run) (ms)", "ms", res["pg_direct"], "`python -c pass`",
                 res["python"], None, None)
        self.rows[-1]["ratio"] = res["pg_direct"]["median"] / res["python"]["median"]
        self.add("fleet_run_startup_sqlite", "`run --no-pty -- true`, SQLite store (ms), same rounds", "ms",
                 res["sqlite"], "`python -c pass`", res["python"], None, None)
        self.rows[-1]["ratio"] = res["sqlite"]["median"] / res["python"]["median"]
        self.add("fleet_psycopg_import_alone", "`python -c \"import psycopg\"` (ms), same rounds", "ms",
                 res["psycopg"], "`python -c pass`", res["python"], None, None)
        self.rows[-1]["ratio"] = res["psycopg"]["median"] / res["python"]["median"]

    def import_times(self) -> None:
        def imports(env) -> dict:
            out = subprocess.run([PY, "-X", "importtime", "-m", "agentsess", "run", "--no-pty", "--", "true"],
                                 env=env, capture_output=True, timeout=60)
            cum = {}
            for line in out.stderr.decode(errors="replace").splitlines():
                if line.startswith("import time:") and "|" in line:
                    parts = [p.strip() for p in line[len("import time:"):].split("|")]
                    if parts[1].isdigit():
                        cum[parts[2].strip()] = int(parts[1])
            return cum

        pg_env = self.host_env("imports-pg", self.url)
        runs = [imports(pg_env) for _ in range(3 if self.quick else 7)]
        sq = imports(self.host_env("imports-sqlite", None))

        def cumulative(module: str) -> dict:
            return stats([r.get(module, 0) / 1000 for r in runs])

        psy = cumulative("psycopg")
        self.add("fleet_psycopg_import", "psycopg import inside `run` with PostgreSQL (ms, cumulative)", "ms",
                 psy, None, None, None, None)
        # what psycopg's own import is made of: none of it can be skipped from agentsess (importing
        # any psycopg submodule runs the package's __init__, which loads the sync and async API)
        parts = {name: cumulative(name)["median"] for name in
                 ("psycopg.pq", "psycopg_binary.pq", "psycopg_binary.version", "importlib.metadata",
                  "asyncio", "psycopg.types.datetime", "psycopg.dbapi20")}
        self.notes.append("psycopg's import inside `run` (median cumulative ms): " +
                          ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        startup = self.startup
        if startup is not None:
            rest = startup["pg"]["median"] - startup["sqlite"]["median"] - psy["median"]
            self.add("fleet_store_beyond_import",
                     "PostgreSQL run − SQLite run − psycopg import (ms): the store agent's round trips, watcher",
                     "ms", {"median": rest, "min": rest, "max": rest, "n": 1, "samples": [rest]},
                     None, None, None, None)
        leaked = sorted(k for k in sq if k.startswith("psycopg"))
        self.add("fleet_sqlite_no_psycopg", "`run` with SQLite imports psycopg", "bool",
                 {"median": float(bool(leaked)), "min": 0, "max": 0, "n": 1, "samples": []}, None, None,
                 "never", not leaked)

    # -- 3. 100k runs ---------------------------------------------------------------------------

    def big_store(self) -> None:
        count = 100_000
        url = self.url.replace(self.schema, self.schema + "_100k")
        env = self.host_env("host-100k", url)
        subprocess.run([*self.ag(), "run", "--no-pty", "--", "true"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import psycopg

        sys.path.insert(0, ROOT)
        from agentsess.ids import new_run_id

        with psycopg.connect(self.server.dsn, password=self.server.password, autocommit=True) as conn:
            conn.execute(f'SET search_path = "{self.schema}_100k"')
            cur = conn.execute("SELECT * FROM runs LIMIT 1")
            cols = [d.name for d in cur.description]
            template = dict(zip(cols, cur.fetchone(), strict=True))
            now = time.time()
            quoted = ", ".join(f'"{c}"' for c in cols)
            with conn.cursor().copy(f"COPY runs ({quoted}) FROM STDIN") as copy:
                for i in range(count - 1):
                    started = now - 30 * 86400 + i * (30 * 86400 / count)
                    rec = dict(template)
                    rec.update(id=new_run_id(started), started_at=started, ended_at=started + 1.5,
                               issued_at=started, expires_at=started + 3600,
                               jti=secrets.token_hex(16), token_sha256=secrets.token_hex(32))
                    copy.write_row([rec[c] for c in cols])
            conn.execute("ANALYZE runs")
            total = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        if total != count:
            raise HarnessError(f"the 100k store holds {total} runs")
        ref = ("import psycopg,json,sys,os;"
               f"c=psycopg.connect({self.server.dsn!r},password=os.environ['PGPW'],options='-csearch_path={self.schema}_100k');"
               "cur=c.execute('SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 50');"
               "cols=[d.name for d in cur.description];"
               "sys.stdout.write(json.dumps([dict(zip(cols,r)) for r in cur],indent=2,default=str))")
        ref_env = {**env, "PGPW": self.server.password}
        direct_env = {**env, "AGENTSESS_STORE_AGENT": "0"}  # `runs` with psycopg in its own process
        res = interleaved({"runs": lambda: timed([*self.ag(), "runs", "--json"], env),
                           "runs_direct": lambda: timed([*self.ag(), "runs", "--json"], direct_env),
                           "ref": lambda: timed([PY, "-c", ref], ref_env)}, 5 if self.quick else 11, warmup=1)
        res = {k: {**v, "median": v["median"] * 1000, "min": v["min"] * 1000, "max": v["max"] * 1000,
                   "samples": [x * 1000 for x in v["samples"]]} for k, v in res.items()}
        self.add("fleet_runs_100k", "`runs --json` (newest 50) over 100k runs, PostgreSQL, through the store agent (ms)", "ms",
                 res["runs"], "python: psycopg query + json.dumps of 50 rows", res["ref"], "≤ 300 ms",
                 res["runs"]["median"] <= 300)
        self.add("fleet_runs_100k_direct", "`runs --json` over 100k runs without the store agent "
                 "(AGENTSESS_STORE_AGENT=0) (ms)", "ms", res["runs_direct"], "python: psycopg query + json.dumps "
                 "of 50 rows", res["ref"], None, None)

    def cleanup(self) -> None:
        try:
            import psycopg

            with psycopg.connect(self.server.dsn, password=self.server.password, autocommit=True) as conn:
                for schema in (self.schema, self.schema + "_100k"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:  # noqa: BLE001 - the bench's own tidying
            self.notes.append(f"could not drop the bench schemas: {exc}")
        for env in self.agent_envs:
            self.stop_agent(env)
        shutil.rmtree(self.work, ignore_errors=True)
        self.server.stop()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def fmt(s: dict | None, unit: str) -> str:
    if not s:
        return "-"
    if unit == "bool":
        return "yes" if s["median"] else "no"
    return f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f}, n={s['n']})"


def markdown(rows: list[dict], notes: list[str], quick: bool) -> str:
    out = [f"# Fleet benchmarks ({'quick' if quick else 'full'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
           "| figure | value: median (min–max, n) | reference | reference value | target | result |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = "-" if r["met"] is None else ("met" if r["met"] else "**MISS**")
        value = fmt(r["value"], r["unit"]) + (f" = {r['ratio']:.1f}×" if "ratio" in r else "")
        out.append(f"| {r['what']} | {value} | {r['reference'] or '-'} | {fmt(r['reference_value'], r['unit'])} "
                   f"| {r['target'] or '-'} | {verdict} |")
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=["revoke_cross_host", "run_startup", "import_times", "big_store"])
    args = parser.parse_args(argv)
    bench = Bench(args.quick)
    bench.notes.append("load average at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    failed = False
    try:
        for name in args.only or ["revoke_cross_host", "run_startup", "import_times", "big_store"]:
            try:
                getattr(bench, name)()
            except (HarnessError, subprocess.SubprocessError, OSError) as exc:
                failed = True
                bench.notes.append(f"ERROR in {name}: {exc}")
    finally:
        bench.cleanup()
    bench.notes.append("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    text = markdown(bench.rows, bench.notes, args.quick)
    sys.stdout.write(text)
    if not args.only:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "fleet-latest.md"), "w") as fh:
            fh.write(text)
        with open(os.path.join(RESULTS, "fleet-latest.json"), "w") as fh:
            json.dump({"rows": bench.rows, "notes": bench.notes, "quick": args.quick}, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
