"""Every request the broker answered has its receipt in the run's stream, before run.exited
(the flake of `test_show_run_names_brokered_services_and_raw_secrets`, issue 18).

The broker notes each request's receipt and a recorder thread writes it. At the run's end the
supervisor waited 5 s for the recorder and then wrote run.exited and the seal: a receipt the
recorder had not written by then was refused after the seal, or lost with a failed write,
and the run still ended sealed and verifiable, with no trace of the request. A recorder held
up past 5 s is what CI's load did once; an agent in an advisory run can do it on purpose
(it can lock its own receipt file for as long as it likes, here the test does).
"""

import fcntl
import os
import subprocess
import sys
import time

from broker_standins import Upstream
from helpers import agentsess, running_run_id, show, wait_for
from test_broker_run import api_config, net_requests

PY = sys.executable
HOLD = 7.0  # longer than the 5 s the supervisor used to wait for the recorder


def test_a_request_answered_while_the_recorder_is_held_up_is_recorded_before_the_end(tmp_path, agentsess_home):
    up = Upstream()
    try:
        api_config(up)
        ready, go = tmp_path / "ready", tmp_path / "go"
        script = (f'touch {ready}; while [ ! -e {go} ]; do sleep 0.02; done; '
                  'curl -sS -H "x-api-key: $API_KEY" "$API_URL/late"')
        proc = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "-p", "t", "--", "sh", "-c", script],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(ready.exists, 30, what="the child")  # the run has started: its start receipts are written
        run_id = running_run_id()
        fd = os.open(os.path.join(str(agentsess_home), "runs", run_id, "receipts.jsonl"), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # no receipt can be written until it is let go
            go.touch()
            wait_for(lambda: [s for s in up.seen if s["path"] == "/late"], 30, what="the request upstream")
            time.sleep(HOLD)  # the hold-up itself (what is tested is what the run records after it)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert b'"ok": true' in out
    finally:
        up.close()
    run = show(run_id)
    assert [r["path"] for r in net_requests(run)] == ["/late"], [r["type"] for r in run["receipts"]]
    types = [r["type"] for r in run["receipts"]]
    assert types.index("net.request") < types.index("run.exited") and types[-1] == "run.sealed"
    assert agentsess("verify", run_id).returncode == 0



# -- the broker in-process: its recorder held up, failing a moment, failing for good -----------

def _broker(up, record):
    from agentsess.core.credentials import services as svc
    from agentsess.edges.broker import Broker

    specs = svc.resolve_services(svc.check_services({"api": {"secret": "k", "upstream": up.url, "env_key": "K"}}))
    broker = Broker("run_x", specs, {"api": "real-value-for-the-test"}, svc.Network(), record=record,
                    liveness=lambda: None, expires_at=time.time() + 60)
    env = broker.start({})
    return broker, f"http://127.0.0.1:{broker.port}/api", {"x-api-key": env["K"]}


def _get(url, headers) -> int:
    import httpx

    return httpx.get(url, headers=headers, trust_env=False).status_code


def test_the_end_waits_for_a_recorder_held_up_longer_than_it_used_to(tmp_path):
    import threading

    held, written = threading.Event(), []

    def record(rtype, data):
        held.wait(60)  # a store or a stream busy for a long moment
        written.append((rtype, data["path"]))

    up = Upstream()
    try:
        broker, base, headers = _broker(up, record)
        assert _get(base + "/held", headers) == 200
        stopper = threading.Thread(target=broker.stop)
        stopper.start()
        stopper.join(HOLD)  # the supervisor's end used to go on after 5 s, without the receipt
        assert stopper.is_alive() and written == []
        held.set()
        stopper.join(30)
        assert not stopper.is_alive() and written == [("net.request", "/held")]
    finally:
        held.set()
        up.close()


def test_a_write_that_fails_a_moment_is_tried_again(tmp_path):
    tries, written = [], []

    def record(rtype, data):
        tries.append(rtype)
        if len(tries) < 3:
            raise OSError("busy")
        written.append((rtype, data["path"]))

    up = Upstream()
    try:
        broker, base, headers = _broker(up, record)
        assert _get(base + "/one", headers) == 200
        broker.stop()
    finally:
        up.close()
    assert written == [("net.request", "/one")] and broker.dead == "finished"


def test_a_receipt_that_cannot_be_written_is_counted_in_the_stream(tmp_path):
    written = []

    def record(rtype, data):
        if rtype == "net.request":
            raise OSError("no space left")
        written.append((rtype, data))

    up = Upstream()
    try:
        broker, base, headers = _broker(up, record)
        assert _get(base + "/lost", headers) == 200  # answered before the recorder failed
        wait_for(lambda: broker.dead is not None, 30, what="the broker failing closed")
        assert _get(base + "/after", headers) == 403  # no more requests it cannot record
        broker.stop()
    finally:
        up.close()
    assert written == [("net.unrecorded", {"count": 2, "reason": "OSError"})], written
