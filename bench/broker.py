#!/usr/bin/env python3
"""The broker's cost: added latency per request, and download throughput, vs direct.

Usage (from the repository root, with the project's interpreter)::

    .venv/bin/python bench/broker.py                 # 400 requests, 100 MB download x3
    .venv/bin/python bench/broker.py --requests 2000 --size 200000000 --reps 5 --json-out FILE

One loopback upstream (a threaded HTTP/1.1 server) is measured directly and through a real
:class:`agentsess.edges.broker.Broker` in the same run: the broker swaps a placeholder in a
header, checks the run's liveness in a real store and writes a real ``net.request`` receipt
for every request, exactly as in a run. Requests alternate direct / broker, each client on
its own kept-alive connection (as an SDK keeps one), so drift hits both alike.

Targets (issue 13): median added latency <= 2 ms; 100 MB download through the broker
>= 0.5x direct. A MISS never fails the command; the exit code is 1 only if the harness broke.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SECRET = "bench-real-secret-0123456789"
BLOCK = b"x" * (1 << 20)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            left = n
            while left:
                part = BLOCK[: min(left, len(BLOCK))]
                self.wfile.write(part)
                left -= len(part)
            return
        ok = self.headers.get("x-api-key") in (SECRET, "direct")
        body = b'{"ok": true}' if ok else b'{"ok": false}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_broker(upstream_url: str):
    """A broker wired as in a run: a real store row, receipt stream, recorder and liveness."""
    from agentsess import ids
    from agentsess.core.credentials import brokering
    from agentsess.core.credentials import services as svc
    from agentsess.core.receipts import recording
    from agentsess.edges import streams
    from agentsess.edges.broker import Broker
    from agentsess.edges.store import Store

    run_id = ids.new_run_id()
    expires = time.time() + 3600
    with Store() as store:
        store.insert_run({"id": run_id, "name": "bench", "status": "running", "command": ["bench"], "cwd": "/",
                          "host": "bench", "user": "bench", "started_at": time.time(), "expires_at": expires})
    streams.create_stream(run_id)
    specs = svc.resolve_services(svc.check_services({"api": {"secret": "k", "upstream": upstream_url, "env_key": "K"}}))
    stores = brokering._PerThreadStore()
    broker = Broker(run_id, specs, {"api": SECRET}, svc.Network(),
                    record=lambda t, d: recording.record(stores.get(), run_id, t, d),
                    liveness=brokering._liveness(stores, run_id, expires), expires_at=expires)
    env = broker.start({})
    return broker, env, run_id


def one_request(conn: http.client.HTTPConnection, path: str, key: str) -> float:
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"x-api-key": key})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200 or b'"ok": true' not in body:
        raise RuntimeError(f"request failed: {resp.status} {body[:100]!r}")
    return elapsed


def download(port: int, path: str, size: int, key: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"x-api-key": key})
    resp = conn.getresponse()
    got = 0
    while chunk := resp.read(1 << 20):
        got += len(chunk)
    elapsed = time.perf_counter() - t0
    conn.close()
    if got != size:
        raise RuntimeError(f"download got {got} of {size} bytes")
    return size / elapsed


def client(port_direct: int, port_broker: int, placeholder: str, requests: int, size: int, reps: int) -> dict:
    """The measuring client: its own process, as the agent is (no GIL shared with the broker)."""
    direct = http.client.HTTPConnection("127.0.0.1", port_direct, timeout=30)
    brokered = http.client.HTTPConnection("127.0.0.1", port_broker, timeout=30)
    for conn in (direct, brokered):
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(20):  # warm-up: connections, pool, store connections
        one_request(direct, "/v1/ping", "direct")
        one_request(brokered, "/api/v1/ping", placeholder)
    d_times, b_times = [], []
    for _ in range(requests):
        d_times.append(one_request(direct, "/v1/ping", "direct"))
        b_times.append(one_request(brokered, "/api/v1/ping", placeholder))
    direct.close()
    brokered.close()
    download(port_direct, f"/bytes/{size}", size, "direct")  # warm-up
    d_rates, b_rates = [], []
    for _ in range(reps):
        d_rates.append(download(port_direct, f"/bytes/{size}", size, "direct"))
        b_rates.append(download(port_broker, f"/api/bytes/{size}", size, placeholder))
    return {"d_times": d_times, "b_times": b_times, "d_rates": d_rates, "b_rates": b_rates}


def serve_upstream() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--size", type=int, default=100_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json-out")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("DIRECT", "BROKER", "PLACEHOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream()
        return 0
    if args.client:
        d, b, ph = args.client
        json.dump(client(int(d), int(b), ph, args.requests, args.size, args.reps), sys.stdout)
        return 0

    home = tempfile.mkdtemp(prefix="agentsess-bench-broker-")  # disk-backed, as a user's data root is
    os.environ["AGENTSESS_HOME"] = os.path.join(home, "data")
    os.environ["AGENTSESS_CONFIG"] = os.path.join(home, "config.toml")
    os.environ["AGENTSESS_KEYRING"] = "file"
    me = os.path.abspath(__file__)
    upstream = subprocess.Popen([sys.executable, me, "--serve-upstream"], stdout=subprocess.PIPE)
    up_port = int(upstream.stdout.readline())
    broker, env, run_id = start_broker(f"http://127.0.0.1:{up_port}")
    try:
        out = subprocess.run(
            [sys.executable, me, "--client", str(up_port), str(broker.port), env["K"], "--requests",
             str(args.requests), "--size", str(args.size), "--reps", str(args.reps)],
            capture_output=True, check=False, timeout=1800,
        )
        if out.returncode != 0:
            print(out.stderr.decode(), file=sys.stderr)
            return 1
        got = json.loads(out.stdout)
    finally:
        broker.stop()
        upstream.kill()
        upstream.wait()
    d_times, b_times = got["d_times"], got["b_times"]
    d_med, b_med = statistics.median(d_times), statistics.median(b_times)
    added_ms = (b_med - d_med) * 1000
    d_rate, b_rate = statistics.median(got["d_rates"]), statistics.median(got["b_rates"])
    ratio = b_rate / d_rate
    from agentsess.edges import streams

    receipts = [r for r in streams.load(run_id) if r["type"] == "net.request"]
    expected = 20 + args.requests + args.reps
    results = {
        "requests": args.requests,
        "latency_direct_ms": round(d_med * 1000, 3),
        "latency_broker_ms": round(b_med * 1000, 3),
        "added_latency_ms": round(added_ms, 3),
        "added_latency_p90_ms": round((sorted(b_times)[int(0.9 * len(b_times))]
                                       - sorted(d_times)[int(0.9 * len(d_times))]) * 1000, 3),
        "download_bytes": args.size,
        "download_direct_MBps": round(d_rate / 1e6, 1),
        "download_broker_MBps": round(b_rate / 1e6, 1),
        "download_ratio": round(ratio, 3),
        "receipts_written": len(receipts),
        "receipts_expected": expected,
    }
    latency_ok = added_ms <= 2.0
    rate_ok = ratio >= 0.5
    print("| figure | direct | through the broker | added / ratio | target | |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| request latency, median of {args.requests} (kept-alive, placeholder swapped, receipt written) "
          f"| {d_med * 1000:.3f} ms | {b_med * 1000:.3f} ms | +{added_ms:.3f} ms | <= 2 ms | "
          f"{'PASS' if latency_ok else 'MISS'} |")
    print(f"| {args.size / 1e6:.0f} MB download, median of {args.reps} | {d_rate / 1e6:.0f} MB/s | "
          f"{b_rate / 1e6:.0f} MB/s | {ratio:.2f}x | >= 0.5x | {'PASS' if rate_ok else 'MISS'} |")
    print(f"\nnet.request receipts written: {len(receipts)} of {expected}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0 if len(receipts) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
