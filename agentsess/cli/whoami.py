"""`agentsess whoami [--json]`: inside a run, which run this is and what it may do."""

import json
import sys

from agentsess.cli.parsing import Parser
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError


def parser() -> Parser:
    p = Parser("whoami", "Inside a run: its id, agent, profile, scopes and ceiling, expiry and time left, parent\n"
               "runs and containment mode, as the run's supervisor knows them. Outside a run: says so\nand exits 1.",
               usage="agentsess whoami [--json]")
    p.add_argument("--json", dest="as_json", action="store_true", help="the answer as JSON")
    return p


def main(argv: list[str]) -> int:
    args, rest = parser().parse(argv)
    if rest is not None:
        raise AgentsessError("whoami: takes no command (see `agentsess whoami --help`)", USAGE)
    as_json = args.as_json
    from agentsess.cli.inside import ask, socket_path

    if socket_path() is None:
        if as_json:
            sys.stdout.write(json.dumps({"inside_run": False}) + "\n")
        else:
            sys.stdout.write("not inside a run (no control socket: this is your own session)\n")
        return CHECK_FAILED
    run = ask("whoami")["run"]
    if as_json:
        sys.stdout.write(json.dumps({"inside_run": True, **run}, indent=2) + "\n")
        return 0
    left = run.get("seconds_left")
    lines = [
        f"run        {run['id']} ({run['name']})",
        f"agent      {run.get('agent') or '-'}   profile {run.get('profile') or '-'}",
        f"scopes     {' '.join(run['scopes']) or '(none)'}",
        f"ceiling    {' '.join(run['ceiling']) or '(none)'}",
        f"expires    {run.get('expires_at') or '-'}" + (f" ({left}s left)" if left is not None else ""),
        f"parents    {' > '.join(p['id'] for p in run['parents']) or '(top-level run)'}",
        f"mode       {run['containment']}" + ("   REVOKED" if run.get("revoked") else ""),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
