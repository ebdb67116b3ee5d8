"""Commands run from inside a live run, as the agent would run them.

Commands inside a run reach agentsess only through their supervisor's control socket, which
answers only the run's own processes. :class:`InRun` starts a run whose child is a small
stand-in agent: it listens on a Unix socket of its own and runs whatever the test sends it,
with the run's environment, as a process of the run. ``call("hook", ...)`` is then exactly
what a hook Claude Code started would do.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PY = sys.executable

AGENT = r"""
import base64, json, os, socket, subprocess, sys
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(16)
with open(path + ".env.tmp", "w") as fh:
    json.dump(dict(os.environ), fh)
os.rename(path + ".env.tmp", path + ".env")
spawned = {}
while True:
    conn, _ = srv.accept()
    with conn:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while True:
            part = conn.recv(65536)
            if not part:
                break
            data += part
        req = json.loads(data)
        if req.get("exit") is not None:
            conn.sendall(b"{}")
            sys.exit(req["exit"])
        if "wait" in req:
            try:
                rc = spawned[req["wait"]].wait(req.get("timeout"))
            except subprocess.TimeoutExpired:
                rc = None
            conn.sendall(json.dumps({"rc": rc}).encode())
            continue
        if "signal" in req:
            spawned[req["signal"]].send_signal(req["sig"])
            conn.sendall(b"{}")
            continue
        if fds:
            env = dict(os.environ)
            env.update(req.get("env") or {})
            p = subprocess.Popen(req["argv"], stdin=fds[0], stdout=fds[1], stderr=fds[2], env=env, cwd=req.get("cwd"))
            for fd in fds:
                os.close(fd)
            spawned[p.pid] = p
            conn.sendall(json.dumps({"id": p.pid}).encode())
            continue
        env = dict(os.environ)
        env.update(req.get("env") or {})
        for name in req.get("unset") or ():
            env.pop(name, None)
        try:
            p = subprocess.run(req["argv"], input=base64.b64decode(req.get("input") or ""), capture_output=True,
                               env=env, cwd=req.get("cwd"), timeout=req.get("timeout") or 60)
            answer = {"rc": p.returncode, "stdout": base64.b64encode(p.stdout).decode(),
                      "stderr": base64.b64encode(p.stderr).decode()}
        except Exception as exc:
            answer = {"rc": -1, "stdout": "", "stderr": base64.b64encode(repr(exc).encode()).decode()}
        conn.sendall(json.dumps(answer).encode())
"""

LIVE: dict = {}  # run id -> InRun, for helpers that only know the run id


class InRun:
    """A live run whose child runs the test's commands. Use as a context manager."""

    def __init__(self, *run_args: str, env: dict | None = None, cwd: str | None = None):
        self.folder = tempfile.mkdtemp(prefix="ag-inrun-", dir="/tmp")
        os.chmod(self.folder, 0o755)
        self.sock = os.path.join(self.folder, "agent.sock")
        full = dict(os.environ)
        full.update(env or {})
        self.proc = subprocess.Popen(
            [PY, "-m", "agentsess", "run", "--no-pty", *run_args, "--", PY, "-c", AGENT, self.sock],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd=cwd,
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock + ".env"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"the run did not start: {self.proc.returncode} {err.decode(errors='replace')}")
            time.sleep(0.01)
        with open(self.sock + ".env") as fh:
            self.env = json.load(fh)
        self.run_id = self.env["AGENTSESS_RUN_ID"]
        LIVE[self.run_id] = self

    # the run's environment, as the fixture used to yield it
    def __getitem__(self, key: str) -> str:
        return self.env[key]

    def items(self):
        return self.env.items()

    def run(self, argv: list[str], input: bytes | None = None, env: dict | None = None, unset=(),
            cwd: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``argv`` as a process of the run; returns its CompletedProcess (bytes)."""
        req = {"argv": list(argv), "input": base64.b64encode(input or b"").decode(), "env": env or {},
               "unset": list(unset), "cwd": cwd, "timeout": timeout}
        answer = self._send(req, timeout + 10)
        return subprocess.CompletedProcess(argv, answer["rc"], base64.b64decode(answer["stdout"]),
                                           base64.b64decode(answer["stderr"]))

    def call(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """``agentsess ARGS`` from inside the run."""
        return self.run([PY, "-m", "agentsess", *args], **kw)

    def spawn(self, argv: list[str], stderr, env: dict | None = None) -> "Spawned":
        """Start ``argv`` as a process of the run with pipes to this process (like Popen)."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err = stderr.fileno()
        try:
            answer = self._send({"argv": list(argv), "env": env or {}}, 30, fds=[in_r, out_w, err])
        finally:
            os.close(in_r)
            os.close(out_w)
        return Spawned(self, answer["id"], os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))

    def _send(self, req: dict, timeout: float, fds=()) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            socket.send_fds(s, [json.dumps(req).encode()], list(fds))
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                part = s.recv(65536)
                if not part:
                    break
                data += part
        return json.loads(data)

    def finish(self, code: int = 0, timeout: float = 30) -> subprocess.CompletedProcess:
        """End the stand-in agent with ``code``; returns the run's CompletedProcess."""
        if self.proc.poll() is None:
            try:
                self._send({"exit": code}, 10)
            except OSError:
                pass
        out, err = self.proc.communicate(timeout=timeout)
        self.close()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def close(self) -> None:
        LIVE.pop(getattr(self, "run_id", None), None)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "InRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Spawned:
    """A process started inside the run by :meth:`InRun.spawn`: the part of Popen tests use."""

    def __init__(self, run: InRun, ident: int, stdin, stdout):
        self.run = run
        self.ident = ident
        self.stdin = stdin
        self.stdout = stdout
        self.returncode = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            answer = self.run._send({"wait": self.ident, "timeout": timeout}, (timeout or 60) + 10)
            if answer["rc"] is None:
                raise subprocess.TimeoutExpired(str(self.ident), timeout)
            self.returncode = answer["rc"]
        return self.returncode

    def poll(self):
        try:
            return self.wait(0.01)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        self.run._send({"signal": self.ident, "sig": int(sig)}, 10)

    def kill(self) -> None:
        self.send_signal(9)


def host_pids(pattern: str) -> list[int]:
    """Pids (as this process sees them) of processes whose command line matches ``pattern``:
    a contained run's processes have other pids inside their namespace than outside."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True).stdout.split()
    return [int(p) for p in out]
