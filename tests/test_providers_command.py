"""Credential commands: a program of the human's supplies a service's secret, re-run when the
value expires, never again after revocation; the child holds only the placeholder."""

import json
import os
import subprocess
import sys

import pytest

from agentsess.core.credentials.providers import command
from broker_standins import Upstream
from helpers import agentsess, running_run_id, show, spawn, stderr_lines, wait_for, write_config

PY = sys.executable


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def tool(tmp_path, body: str) -> list[str]:
    """A credential command: counts its runs in a file next to it, prints ``body`` formatted with the count."""
    script = tmp_path / "cred.py"
    script.write_text(
        "import os, sys, time\n"
        f"n_file = {str(tmp_path / 'runs')!r}\n"
        "n = int(open(n_file).read()) + 1 if os.path.exists(n_file) else 1\n"
        "open(n_file + '.tmp', 'w').write(str(n)); os.replace(n_file + '.tmp', n_file)\n"  # never read half-written
        f"sys.stdout.write({body!r}.format(n=n, now=time.time()))\n"
    )
    return [PY, str(script)]


def configure(up, argv, extra=""):
    write_config(f"""
[profiles.t]
{extra}
[profiles.t.services.api]
secret = "unused"
upstream = "{up.url}"
env_base_url = "API_URL"
env_key = "API_KEY"
[profiles.t.providers.command.api]
run = {json.dumps(argv)}
""")


def runs(tmp_path) -> int:
    path = tmp_path / "runs"
    return int(path.read_text()) if path.exists() else 0


def test_the_command_s_value_is_attached_by_the_broker(upstream, tmp_path, agentsess_home):
    configure(upstream, tool(tmp_path, '{{"value": "cmd-secret-{n}-abcdefgh"}}'))
    proc = agentsess("run", "-p", "t", "--", "sh", "-c",
                     'echo "$API_KEY"; curl -sS -H "Authorization: Bearer $API_KEY" "$API_URL/x"', check=0)
    out = proc.stdout.decode()
    assert "cmd-secret" not in out and "agentsess-ph-api-" in out
    assert upstream.seen[0]["headers"]["authorization"] == "Bearer cmd-secret-1-abcdefgh"
    run = show()
    (minted,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.minted" and r["data"].get("provider")]
    assert minted["provider"] == "command" and minted["service"] == "api" and minted["expires_at"] is None
    assert "cmd-secret" not in json.dumps(run)
    for folder, _, files in os.walk(agentsess_home):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                assert b"cmd-secret" not in fh.read()


def test_an_expiring_value_is_fetched_again_and_never_after_revocation(upstream, tmp_path):
    # each value expires 31 s after it was printed: re-run 30 s ahead, so about every second
    configure(upstream, tool(tmp_path, '{{"value": "v{n}-secret-value", "expires_at": {now} + 31}}'.replace(
        "{now} + 31", "{now:.0f}")), extra='on_revoke = "keep"')
    # expires_at = now: already due, re-run after the 1 s floor
    go = tmp_path / "go"
    script = (f'while [ ! -e {go} ]; do sleep 0.05; done; '
              'curl -sS -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $API_KEY" "$API_URL/after"')
    proc = spawn("run", "-p", "t", "--", "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run_id = running_run_id()
        wait_for(lambda: runs(tmp_path) >= 3, what="the command run again")
        agentsess("revoke", run_id, check=0)
        wait_for(lambda: any(r["type"] == "credential.revoked" for r in show(run_id)["receipts"]),
                 what="the revocation receipt")
        after = runs(tmp_path)
        go.write_text("")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.decode().strip() == "403"
    assert runs(tmp_path) == after  # not run again after the revocation
    run = show(run_id)
    mints = [r["data"] for r in run["receipts"] if r["type"] == "credential.minted" and r["data"].get("provider")]
    assert len(mints) >= 3 and mints[1]["rotated"] is True and len({m["value_sha256"] for m in mints}) == len(mints)
    (revoked,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.revoked"]
    assert revoked["providers"] == [{"provider": "command", "service": "api", "result": "dropped", "latency": 0.0,
                                     "note": "the broker attaches it no more and the command is not run again"}]


@pytest.mark.parametrize(("body", "words"), [
    ("", "it printed nothing"),
    ("{{not json", "not valid JSON"),
    ('{{"token": "x"}}', 'no "value" string'),
    ('{{"value": "x", "expires_at": "tomorrow"}}', "neither RFC 3339"),
    ("line one\nline two\n", "more than one line"),
])
def test_bad_output_refuses_the_run_without_quoting_it(upstream, tmp_path, body, words):
    configure(upstream, tool(tmp_path, body))
    (line,) = stderr_lines(agentsess("run", "-p", "t", "--", "true", check=125))
    assert f"providers.command.api: {PY}: " in line or "providers.command.api:" in line
    assert words in line and "line two" not in line and "tomorrow" not in line


def test_a_failing_command_refuses_the_run_without_its_output(upstream, tmp_path):
    configure(upstream, [PY, "-c", "import sys; print('leaked-secret'); sys.exit(3)"])
    (line,) = stderr_lines(agentsess("run", "-p", "t", "--", "true", check=125))
    assert "exited with 3" in line and "leaked-secret" not in line
    configure(upstream, ["/nonexistent/cred-tool"])
    (line,) = stderr_lines(agentsess("run", "-p", "t", "--", "true", check=125))
    assert "command not found: /nonexistent/cred-tool" in line


def test_a_command_for_a_service_the_profile_lacks_is_refused(upstream, tmp_path):
    write_config(f"""
[profiles.t.providers.command.nope]
run = ["true"]
""")
    (line,) = stderr_lines(agentsess("run", "-p", "t", "--", "true", check=125))
    assert "providers.command.nope: the profile has no service nope" in line


def test_parse_output():
    assert command.parse_output(b"plain-token\n") == ("plain-token", None)
    assert command.parse_output(b'{"value": "v", "expires_at": "2030-01-01T00:00:00Z"}') == ("v", 1893456000.0)
    assert command.parse_output(b'{"value": "v", "expires_at": 1893456000}') == ("v", 1893456000.0)
    for bad in (b'{"value": "a\\nb"}', b"\xff\xfe", b'{"value": "v", "expires_at": true}'):
        with pytest.raises(command.OutputError):
            command.parse_output(bad)
