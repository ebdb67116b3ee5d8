#!/usr/bin/env python3
"""Revocation of provider credentials: from `agentsess revoke` to every provider refusing.

Usage (from the repository root, with the project's interpreter)::

    .venv/bin/python bench/providers.py            # 5 runs
    .venv/bin/python bench/providers.py --reps 10

Each repetition starts a real `agentsess run` whose profile mints a GitHub App installation
token from the GitHub stand-in of the tests (TLS on loopback), waits until the child is up,
then runs `agentsess revoke` and measures, from the moment that command starts:

- ``broker refuses``: the first request through the broker (the child's placeholder) answered 403;
- ``token deleted``: GitHub (the stand-in) received ``DELETE /installation/token``;
- ``since revoked_at``: the supervisor's own figure in the ``credential.revoked`` receipt.

Target (issue 14): revoke -> every provider refused <= 1 s locally.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from broker_standins import MintedCA  # noqa: E402
from github_standin import GitHub, Server, _Api, _Git, rsa_pem  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="agentsess-bench-providers-")
    env = dict(os.environ, AGENTSESS_HOME=os.path.join(work, "home"), AGENTSESS_CONFIG=os.path.join(work, "c.toml"),
               AGENTSESS_KEYRING="file")
    ca = MintedCA(work)
    pem, public = rsa_pem()
    gh = GitHub(public)
    api = Server(_Api, gh, ca, "127.0.0.1")
    git = Server(_Git, gh, ca, "127.0.0.2", work)
    with open(env["AGENTSESS_CONFIG"], "w") as fh:
        fh.write(f"""
[profiles.coder]
default_scopes = ["github:contents:read"]
on_revoke = "keep"
[profiles.coder.providers.github]
app_id = 123456
installation_id = 7890123
private_key_secret = "app-key"
api_url = "{api.url}"
git_url = "{git.url}"
repositories = ["acme/app"]
ca_file = "{ca.ca_file}"
""")
    py = [sys.executable, "-m", "agentsess"]
    subprocess.run(py + ["secret", "set", "app-key"], input=pem.encode(), env=env, check=True, capture_output=True)
    refused, deleted, since = [], [], []
    for rep in range(args.reps):
        marker = os.path.join(work, f"env-{rep}")
        child = subprocess.Popen(
            py + ["run", "-p", "coder", "--", "sh", "-c",
                  f'echo "$AGENTSESS_RUN_ID $GITHUB_API_URL $GH_TOKEN" > {marker}.tmp && mv {marker}.tmp {marker}; '
                  "sleep 60"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(marker):
            time.sleep(0.01)
        with open(marker) as fh:
            run_id, url, placeholder = fh.read().split()
        port = int(url.split(":")[2].split("/")[0])
        before = len(gh.deleted)
        t0 = time.monotonic()
        wall0 = time.time()
        revoke = subprocess.Popen(py + ["revoke", run_id], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        t_refused = None
        while t_refused is None or len(gh.deleted) == before:
            if t_refused is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    conn.request("GET", "/github/repos/acme/app", headers={"Authorization": f"token {placeholder}"})
                    if conn.getresponse().status == 403:
                        t_refused = time.monotonic() - t0
                except (OSError, http.client.HTTPException):
                    pass  # cut mid-request by the revocation: ask again
                finally:
                    conn.close()
            time.sleep(0.002)
        deleted.append(gh.deleted[-1]["at"] - wall0)
        refused.append(t_refused)
        revoke.wait()
        child.terminate()
        child.wait()
        show = subprocess.run(py + ["show-run", run_id, "--json"], env=env, capture_output=True, check=True)
        for rec in json.loads(show.stdout)["receipts"]:
            if rec["type"] == "credential.revoked":
                since.append(rec["data"]["providers"][0].get("since_revocation"))
    api.close()
    git.close()
    print("| figure | median | min-max | target |")
    print("| --- | --- | --- | --- |")
    for name, values in (("revoke -> broker refuses (s)", refused), ("revoke -> token deleted at GitHub (s)", deleted),
                         ("revoked_at -> token deleted (s, receipt)", [v for v in since if v is not None])):
        if values:
            worst = max(values)
            print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f}-{worst:.3f} | "
                  f"<= 1 s {'PASS' if worst <= 1 else 'MISS'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
