"""`show-run` and approvals (issue 16): a live run's held calls in the summary, and each
approval receipt as one readable row: request id, who answered, for how long, why, then the
tool and the masked summary the agent chose, escaped like everything else it chose."""

import json

from helpers import agentsess, cli, show, write_config
from inrun import InRun
from test_approvals import CONFIG, answer_of, hook, waiting

from agentsess.core.guard import approvals

EVIL = "git push origin main\x1b[2J\x1b]52;c;aGk=\x07\u202e\rforged"


def _row_of(text: str, rtype: str) -> list[str]:
    return [line for line in text.splitlines() if f"  {rtype}  " in line]


def test_show_run_lists_held_calls_and_renders_each_approval_receipt(tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        first = hook(live, tmp_path, EVIL, "first")
        second = hook(live, tmp_path, "git push origin b2", "second")
        items = waiting(live.run_id, 2)
        by_summary = {i["summary"]: i for i in items}
        evil = next(i for s, i in by_summary.items() if s.startswith("git push origin main"))
        plain = by_summary["git push origin b2"]

        # while they wait: a line in the summary, one row per held call, escaped
        out = cli("show-run", live.run_id, check=0).stdout.decode()
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
        assert f"2 calls held for your answer: `agentsess approve {live.run_id} REQUEST`" in out
        held_lines = [line for line in out.splitlines() if line.startswith(f"    {evil['request']}  denied in ")]
        assert len(held_lines) == 1 and held_lines[0].endswith("Bash: git push origin main\\x1b[2J\\x1b]52;c;aGk=\\x07"
                                                               "\\u202e\\x0dforged")
        assert any(line.startswith(f"    {plain['request']}  denied in ") for line in out.splitlines())
        data = show(live.run_id)
        assert sorted(p["request"] for p in data["pending_approvals"]) == sorted(i["request"] for i in items)
        [requested] = _row_of(out, "approval.requested")[:1]
        assert "asks a person (denied in 1m without an answer)  Bash: git push" in requested

        agentsess("approve", live.run_id, evil["request"], "--for", "10m", check=0)
        agentsess("deny", live.run_id, plain["request"], "--reason", "not\x1b[31m today", check=0)
        assert answer_of(first)[0] == "allow" and answer_of(second)[0] == "deny"

        out = cli("show-run", live.run_id, check=0).stdout.decode()
        assert "held for your answer" not in out and show(live.run_id)["pending_approvals"] == []
        assert "\x1b" not in out
        [granted] = _row_of(out, "approval.granted")
        who = approvals.who()
        assert f"request {evil['request']} approved by {who} for 10m, this exact call until " in granted
        assert granted.endswith("Bash: git push origin main\\x1b[2J\\x1b]52;c;aGk=\\x07\\u202e\\x0dforged")
        [denied] = _row_of(out, "approval.denied")
        assert f"request {plain['request']} denied by {who} (not\\x1b[31m today)  Bash: git push origin b2" in denied

        once = hook(live, tmp_path, "git push origin b3", "once")
        [item] = waiting(live.run_id)
        agentsess("approve", live.run_id, item["request"], check=0)
        assert answer_of(once)[0] == "allow"
        out = cli("show-run", live.run_id, check=0).stdout.decode()
        assert any(f"request {item['request']} approved by {who}, this one call  Bash: git push origin b3" in line
                   for line in _row_of(out, "approval.granted"))

        hook(live, tmp_path, "git push origin left", "left")  # still held when the run ends
        [last] = waiting(live.run_id)
        live.finish()
    out = cli("show-run", live.run_id, check=0).stdout.decode()
    assert "held for your answer" not in out
    [ended] = _row_of(out, "approval.expired")
    assert (f"request {last['request']} ended: {approvals.ENDED_REASON}  Bash: git push origin left" in ended)


def test_an_expired_request_reads_as_expired_with_its_wait(tmp_path):
    write_config(CONFIG.format(timeout="2s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = hook(live, tmp_path, "git push origin main")
        assert answer_of(held)[0] == "deny"
        out = cli("show-run", live.run_id, check=0).stdout.decode()
    [requested] = _row_of(out, "approval.requested")
    assert "asks a person (denied in 2s without an answer)  Bash: git push origin main" in requested
    [expired] = _row_of(out, "approval.expired")
    assert "expired: nobody approved it within 2s (approval_timeout)  Bash: git push origin main" in expired


def test_show_run_json_of_a_run_with_nothing_held_has_an_empty_list(tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        assert show(live.run_id)["pending_approvals"] == []
        out = cli("show-run", live.run_id, check=0).stdout.decode()
        assert "held for your answer" not in out
    assert json.loads(cli("show-run", live.run_id, "--json", check=0).stdout)["pending_approvals"] == []
