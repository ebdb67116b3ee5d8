"""Exact-secret redaction for receipts: a run's secret values, whatever their shape, never
reach action.exec / action.result data, show-run or export in clear."""

import base64
import json
import os
import subprocess
import sys

from helpers import agentsess, show, write_config

from agentsess.core.guard import actions
from agentsess.core.guard.redaction import mask_receipt, redact, secret_masker

PY = sys.executable
DB_PASSWORD = "Tr0ub4dor&3"  # looks like no credential: pattern redaction lets it by
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"


def test_pattern_redaction_alone_misses_an_unusual_password():
    assert DB_PASSWORD in redact(f"mysql -u app -p'{DB_PASSWORD}' prod")


def test_exact_values_and_their_encodings_are_masked():
    mask = secret_masker({"db": DB_PASSWORD, "deploy-key": PEM})
    assert mask(f"mysql -u app -p'{DB_PASSWORD}' prod") == "mysql -u app -p'[masked:db]' prod"
    b64 = base64.b64encode(DB_PASSWORD.encode()).decode()
    assert DB_PASSWORD not in mask(f"echo {b64}") and "[masked:db]" in mask(f"echo {b64}")
    assert mask(f"x={DB_PASSWORD.encode().hex()}") == "x=[masked:db]"
    # a multi-line key, with the line breaks the terminal or JSON decoding left in
    assert "PRIVATE KEY" not in mask("cat id\n" + PEM.replace("\n", "\r\n"))
    assert mask("nothing secret here") == "nothing secret here"


def test_a_secret_cut_by_the_summary_cap_does_not_leak_its_start():
    mask = secret_masker({"db": DB_PASSWORD * 3})
    text = "x" * (actions.SUMMARY_CAP - 10) + DB_PASSWORD * 3 + " and more"
    summary = actions.capped(text)  # what a hook records: cut inside the secret
    assert (DB_PASSWORD * 3)[:10] in summary
    masked = mask(summary)
    assert (DB_PASSWORD * 3)[:6] not in masked
    assert masked.endswith("[masked]… [" + summary.rsplit("… [", 1)[1])


def test_mask_receipt_masks_every_string_of_a_tool_result():
    mask = secret_masker({"db": DB_PASSWORD})
    summary, digest = actions.summarise({"stdout": f"connected with {DB_PASSWORD}\n", "exit": 0}, actions.RESULT_CAP)
    data = {"tool": "Bash", "source": "claude-code", "result": summary, "result_sha256": digest,
            "nested": [{"cwd": f"/srv/{DB_PASSWORD}"}], "exit_code": 0}
    out = mask_receipt(data, mask)
    assert DB_PASSWORD not in json.dumps(out)
    assert DB_PASSWORD not in json.dumps(out, ensure_ascii=False)
    assert out["result_sha256"] == digest and out["exit_code"] == 0 and out["tool"] == "Bash"
    assert "[masked:db]" in out["result"] and out["nested"][0]["cwd"] == "/srv/[masked:db]"
    assert data["nested"][0]["cwd"] == f"/srv/{DB_PASSWORD}"  # the input is not changed


def test_shell_capture_receipts_mask_the_secret_in_every_field_and_in_export(tmp_path):
    agentsess("secret", "set", "db", input=DB_PASSWORD.encode(), check=0)
    write_config('[profiles.p]\ncapture_shell = true\n[profiles.p.env]\nDBPW = { secret = "db" }\n')
    # the agent's command line never holds the value: it comes from the environment
    script = """mkdir -p "w-$DBPW" && cd "w-$DBPW" && eval "echo '$DBPW' >/dev/null"; true"""
    proc = agentsess("run", "--no-pty", "--profile", "p", "--", "bash", "-c", script, check=0, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    run = show()
    execs = [r for r in run["receipts"] if r["type"] == "action.exec"]
    assert execs, run["receipts"]
    leaks = [r for r in run["receipts"] if DB_PASSWORD in json.dumps(r, ensure_ascii=False)]
    assert not leaks and DB_PASSWORD not in json.dumps(run, ensure_ascii=False), (leaks, {k: v for k, v in run.items() if k != "receipts"})
    assert any("[masked:db]" in r["data"]["cwd"] for r in execs)
    assert any("[masked:db]" in r["data"]["command"] for r in execs)
    out = tmp_path / "export.jsonl"
    subprocess.run([PY, "-m", "agentsess", "export", run["id"], "-o", str(out)], check=False, capture_output=True)
    if out.exists():
        assert DB_PASSWORD not in out.read_text()
    with open(os.path.join(os.environ["AGENTSESS_HOME"], "runs", run["id"], "receipts.jsonl")) as fh:
        assert DB_PASSWORD not in fh.read()
