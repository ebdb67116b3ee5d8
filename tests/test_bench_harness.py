"""The benchmark harness itself: a quick run never overwrites the committed full results,
and the data root is on disk (where agentsess keeps its data), not tmpfs."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "run.py")
RESULTS = os.path.join(ROOT, "bench", "results")


def _snapshot():
    out = {}
    for name in ("latest.json", "latest.md"):
        path = os.path.join(RESULTS, name)
        with open(path, "rb") as fh:
            out[name] = fh.read()
    return out


def test_quick_refuses_to_write_over_the_full_results(tmp_path):
    before = _snapshot()
    for target in ("latest.json", "latest.md"):
        args = [sys.executable, BENCH, "--quick", "--only", "none", "--workdir", str(tmp_path)]
        args += ["--json-out", os.path.join(RESULTS, "latest.json")] if target == "latest.json" else [
            "--json-out", str(tmp_path / "q.json"), "--md-out", os.path.join(RESULTS, "latest.md")]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "does not overwrite the committed full results" in proc.stderr
    assert _snapshot() == before


def test_quick_writes_its_own_results_and_names_a_disk_backed_workdir(tmp_path):
    before = _snapshot()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSESS_")}
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--only", "none", "--json-out", str(tmp_path / "q.json")],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _snapshot() == before
    text = (tmp_path / "q.md").read_text()
    line = [x for x in text.splitlines() if "data roots live in" in x][0]
    assert "tmpfs" not in line and "/dev/shm" not in line
    assert "--quick" in text
    help_text = subprocess.run([sys.executable, BENCH, "--help"], capture_output=True, text=True, check=True).stdout
    assert "quick.json with --quick" in help_text
