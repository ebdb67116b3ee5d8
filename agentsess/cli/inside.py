"""Commands inside a run ask their supervisor over the control socket (see edges/control.py).

:func:`ask` is what `check`, `hook`, `exec`, `whoami` and `token verify` call from inside a
run; :func:`refuse_inside` is what commands that would touch agentsess's own state call, so
that a run cannot edit its config, keys, secrets or history from the inside.
"""

from agentsess.errors import USAGE, AgentsessError

NOT_INSIDE = "not inside a run: no control socket found; start one with `agentsess run -- CMD`"


def socket_path() -> str | None:
    from agentsess.edges.control import find_socket

    return find_socket()


def ask(op: str, **fields) -> dict:
    """The supervisor's answer to ``op``; raises AgentsessError outside a run or on a refusal."""
    from agentsess.edges.control import ControlError, request

    path = socket_path()
    if path is None:
        raise AgentsessError(NOT_INSIDE, USAGE)
    try:
        answer = request(path, {"op": op, **fields})
    except ControlError as exc:
        raise AgentsessError(str(exc), USAGE) from None
    if not answer.get("ok"):
        raise AgentsessError(str(answer.get("error") or "refused"), int(answer.get("code") or USAGE))
    return answer


def refuse_inside(command: str, reading: bool = False) -> None:
    """Refuse ``command`` when this process is inside a run (``reading``: a command that would
    only read agentsess's store or keys, which no command inside a run opens)."""
    if socket_path() is None:
        return
    if reading:
        raise AgentsessError(
            f"{command} is refused inside a run: a run does not open agentsess's store, receipts or "
            "keys (`agentsess whoami` says which run this is); run it outside the run",
            USAGE,
        )
    raise AgentsessError(
        f"{command} is refused inside a run: a run cannot change agentsess's own state "
        "(config, keys, secrets, history); run it outside the run",
        USAGE,
    )
