"""`agentsess token verify [TOKEN|-] [--scope S]... [--json]`, parsed without typer (hot path)."""

import json
import os
import sys

from agentsess.cli.parsing import Parser
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError

VERIFY = """Checks the signature, the time window, revocation of the token's run and its ancestors,
and scopes. Exit 0 valid, 1 invalid (with the reason), 2 usage."""


def parser() -> Parser:
    p = Parser("token verify", VERIFY, usage="agentsess token verify [TOKEN|-] [--scope SCOPE]... [--json]")
    p.add_argument("token", nargs="?", help="the token, or - to read it from stdin (default: $AGENTSESS_TOKEN)")
    p.add_argument("--scope", "-s", action="append", default=[], help="a scope the token must cover (repeatable)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the verdict as JSON")
    return p


def main(argv: list[str]) -> int:
    if argv[:1] != ["verify"]:
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(parser().format_help())
            return 0 if argv else USAGE
        raise AgentsessError(f"token: unknown subcommand '{argv[0]}': expected 'verify'", USAGE)
    p = parser()
    args, rest = p.parse(argv[1:])
    if rest:  # `token verify -- TOKEN`
        if args.token is not None or len(rest) != 1:
            p.fail("expected at most one TOKEN")
        args.token = rest[0]
    token = args.token
    if token == "-":
        token = sys.stdin.read().strip()
    elif token is None:
        token = os.environ.get("AGENTSESS_TOKEN")
        if not token:
            raise AgentsessError("token verify: no token given and AGENTSESS_TOKEN is not set", USAGE)
    from agentsess.cli.inside import ask, socket_path

    if socket_path() is not None:  # inside a run: the supervisor verifies, the keys stay with it
        answer = ask("token_verify", token=token, scopes=args.scope)
        shown, valid, reason, detail = answer["verdict"], answer["valid"], answer["reason"], answer["detail"]
    else:
        from agentsess.core.credentials.verify import verify_here

        verdict = verify_here(token, args.scope)
        shown, valid, reason, detail = verdict.as_dict(), bool(verdict.valid), verdict.reason, verdict.detail
    if args.as_json:
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
    elif valid:
        sys.stdout.write(f"{detail}\n")  # "valid token of run …", as "invalid token (…)"
        act = (shown.get("claims") or {}).get("act")
        if isinstance(act, dict):
            sys.stdout.write(f"acting for: {_chain(act)}\n")
    else:
        sys.stderr.write(f"agentsess: invalid token ({reason}): {detail}\n")
    return 0 if valid else CHECK_FAILED


def _chain(act) -> str:
    """The RFC 8693 ``act`` chain, nearest first: ``agent:x (run …) → … → user@host``."""
    steps: list[str] = []
    while isinstance(act, dict) and len(steps) < 32:
        sub = str(act.get("sub"))
        sid = act.get("sid")
        step = f"{sub} (run {sid})" if sid else sub
        steps.append(step if step.isprintable() else repr(step))
        act = act.get("act")
    return " → ".join(steps)
