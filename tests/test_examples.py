"""The files under examples/ work as their comments say."""

import json
import os
import shutil
import sys
import threading
import urllib.error
import urllib.request

from helpers import agentsess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PY = sys.executable


def test_claude_code_profile_loads_and_shows_its_ceiling():
    shutil.copy(os.path.join(EXAMPLES, "claude-code.toml"), os.environ["AGENTSESS_CONFIG"])
    shown = json.loads(agentsess("config", "show", "--profile", "claude", check=0).stdout)
    assert shown["scopes"] == ["fs:*", "git:*", "github:*", "shell:*", "mcp:*"]
    assert len(shown["rules"]) == 4


def test_mcp_config_names_the_proxy():
    with open(os.path.join(EXAMPLES, "mcp-config.json")) as fh:
        servers = json.load(fh)["mcpServers"]
    assert all(s["command"] == "agentsess" and s["args"][0] == "mcp-proxy" for s in servers.values())


def test_github_actions_config_set_line_is_accepted():
    agentsess("config", "init", check=0)
    agentsess("config", "set", "profiles.claude.env", '{GH_TOKEN = {secret = "github-agent"}}', check=0)
    shown = json.loads(agentsess("config", "show", "--profile", "claude", check=0).stdout)
    assert shown["env"] == {"GH_TOKEN": {"secret": "github-agent"}}


def test_verify_service_accepts_a_run_token_and_refuses_others(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        import verify_service
    finally:
        sys.path.remove(EXAMPLES)
    jwks = tmp_path / "jwks.json"
    agentsess("run", "--", "true", check=0)
    jwks.write_text(agentsess("jwks", check=0).stdout.decode())
    server = verify_service.serve(verify_service.load_keys(str(jwks)), "github:pr:create", 0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = (
            "import os,sys,urllib.request,urllib.error\n"
            "req=urllib.request.Request(sys.argv[1], headers={'Authorization':'Bearer '+os.environ['AGENTSESS_TOKEN']})\n"
            "try: print(urllib.request.urlopen(req).status)\n"
            "except urllib.error.HTTPError as e: print(e.code)\n"
        )
        url = f"http://127.0.0.1:{port}/"
        ok = agentsess("run", "--scope", "github:*", "--", PY, "-c", script, url, check=0)
        assert ok.stdout.strip() == b"200"
        denied = agentsess("run", "--scope", "fs:read", "--", PY, "-c", script, url, check=0)
        assert denied.stdout.strip() == b"403"
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer x.y.z"}))
            raise AssertionError("a garbage token was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
    finally:
        server.shutdown()
