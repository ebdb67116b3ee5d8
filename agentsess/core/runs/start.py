"""Starting a run: plan, record, mint, build the child's environment, then supervise.

``start_run`` is what ``agentsess run`` calls; it returns the exit code to leave with.
Data flows one way (see DESIGN.md): plan -> store row -> credential -> receipts -> child
environment -> supervisor (:mod:`agentsess.core.runs.supervise`) -> exit receipt -> store.

A run started inside a run is planned, minted and recorded by its parent's supervisor
(:func:`launch_nested`, asked over the control socket by :mod:`agentsess.core.runs.nested`).
"""

import os
import signal
import time

from agentsess import ids
from agentsess.core.receipts import recording
from agentsess.core.runs.plan import Plan, Refused, Request, make_plan
from agentsess.digest import sha256_text
from agentsess.edges import host, paths, streams
from agentsess.edges.store import Store
from agentsess.edges.streams import ReceiptError
from agentsess.errors import RUN_FAILED, AgentsessError
from agentsess.timefmt import rfc3339
from agentsess.values import Frozen

# the API key variables an agent command needs (one of them), for the scrub notice
AGENT_KEYS = {
    "claude": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
    "codex": ("OPENAI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "aider": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY"),
    "llm": ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"),
}

__all__ = ["Request", "start_run", "launch_nested"]


def _record_denied(store: Store, request: Request, refusal: Refused) -> str:
    plan = refusal.plan
    run_id = ids.new_run_id()
    now = time.time()
    store.insert_run(
        {
            "id": run_id,
            "parent_id": plan.parent["id"] if plan.parent else None,
            "name": plan.name,
            "status": "denied",
            "command": request.argv,
            "cwd": request.cwd,
            "host": host.hostname(),
            "user": host.user(),
            "started_at": now,
            "ended_at": now,
            "profile": plan.profile.name,
            "agent": plan.agent,
            "scopes": plan.scopes,
            "chain": plan.chain,
            "depth": plan.depth,
            "error": refusal.message,
        }
    )
    streams.create_stream(run_id)
    recording.record(
        store,
        run_id,
        "run.denied",
        {
            "argv": request.argv,
            "profile": plan.profile.name,
            "requested_scopes": plan.scopes,
            "ceiling": plan.profile.scopes,
            "parent": plan.parent["id"] if plan.parent else None,
            "reason": refusal.message,
        },
    )
    recording.seal(store, run_id)
    return run_id


def _resolve_secrets(profile) -> tuple[dict, dict]:
    """(variables to set, {secret name: value}) from the profile's env table."""
    literal, secret_vars, values = {}, {}, {}
    for var, spec in (profile.env or {}).items():
        if isinstance(spec, dict):
            secret_vars[var] = spec["secret"]
        else:
            literal[var] = spec
    if secret_vars:
        from agentsess.edges import keychain

        for var, name in secret_vars.items():
            value = keychain.get_secret(name)
            if value is None:
                raise AgentsessError(
                    f"profile '{profile.name}' maps {var} to secret '{name}', which is not set; "
                    f"set it with `agentsess secret set {name}`",
                    RUN_FAILED,
                )
            literal[var] = value
            values[name] = value
    return literal, {"vars": secret_vars, "values": values}


def _child_env(request: Request, plan: Plan, run_id: str, token: str, injected: dict,
               contained: "Containment") -> tuple[dict, dict]:
    """The child's environment and what the run.started receipt says about it (names only).

    Nothing in it leads to agentsess's state: not the data root, the config file, the key
    store or the store's address. The child reaches agentsess through its control socket.
    """
    from agentsess.core.runs import environment

    profile = plan.profile
    base = {k: v for k, v in request.env.items() if not k.startswith("AGENTSESS_")}
    if "AGENTSESS_DEBUG" in request.env:
        base["AGENTSESS_DEBUG"] = request.env["AGENTSESS_DEBUG"]
    if contained.contained:
        base.pop("DBUS_SESSION_BUS_ADDRESS", None)  # the bus is hidden: do not point at it
    keep = request.keep_env or profile.keep_env
    built = environment.build_env(
        base, profile.scrub_env or (), list(profile.pass_env or ()) + request.pass_env, keep, profile.env_mode
    )
    env = built.env
    env.update(environment.git_identity(plan.agent, run_id, profile.git_name, profile.git_email))
    facts = built.facts()
    isolate = profile.isolate_home if request.isolate_home is None else request.isolate_home
    human_home = request.env.get("HOME") or os.path.expanduser("~")
    from agentsess.edges import homes

    if isolate:
        env.update(homes.isolated_home(plan.agent, human_home, profile.home_files or ()))
        facts["home"] = env["HOME"]
    elif not contained.contained:
        facts["human_files_readable"] = homes.readable_credential_files(human_home)
    env.update(injected)
    env["AGENTSESS_CONTROL"] = contained.child_socket
    env["AGENTSESS_RUN_ID"] = run_id
    env["AGENTSESS_TOKEN"] = token
    env["AGENTSESS_SCOPES"] = " ".join(plan.scopes)
    env["AGENTSESS_EXPIRES_AT"] = rfc3339(plan.expires_at)
    env["AGENTSESS_AGENT"] = plan.agent
    if plan.parent is not None:
        env["AGENTSESS_PARENT_RUN_ID"] = plan.parent["id"]
    return env, facts


def _human_files_notice(files: list[str]) -> list[str]:
    """Name the human's readable credential files once per distinct set, not on every run."""
    if not files:
        return []
    import hashlib

    marker = paths.notices_file()
    digest = hashlib.sha256("\0".join(files).encode()).hexdigest()[:16]
    try:
        with open(marker) as fh:
            if digest in fh.read().split():
                return []
    except OSError:
        pass
    try:
        fd = paths.open_private(marker)
        os.write(fd, (digest + "\n").encode())
        os.close(fd)
    except OSError:
        pass
    return ["the agent can read your credential files: " + ", ".join(files)
            + " (use --isolate-home to give it its own HOME)"]


def _integrations(request: Request, plan: Plan, run_id: str, env: dict):
    """Agent hooks (Claude Code, Codex, Gemini) and shell capture: (argv to exec, receipt facts,
    spool path or None)."""
    from agentsess.core.guard import agents

    argv, spool = request.argv, None
    facts: dict[str, object] = {}
    kind = request.integration or plan.profile.integration
    agent = agents.detect(request.argv, kind)
    if agent is not None:
        held = plan.profile.approval_timeout if plan.profile.approval == "human" else 0  # issue 16
        argv, extra, facts[agent.replace("-", "_")] = agents.setup(agent, run_id, request.argv, env, held)
        env.update(extra)
    capture = plan.profile.capture_shell if request.capture_shell is None else request.capture_shell
    if capture:
        extra, spool = agents.setup_shell_capture(run_id)
        env.update(extra)
        facts["shell_capture"] = True
    return argv, facts, spool


class Containment:
    """How a run's child is held: ``contained`` (bubblewrap namespaces) or advisory, and why."""

    __slots__ = ("contained", "reason", "bwrap", "socket", "child_socket")

    def __init__(self, contained: bool, reason: str, bwrap: str | None, socket: str, child_socket: str):
        self.contained = contained
        self.reason = reason
        self.bwrap = bwrap
        self.socket = socket  # the control socket, as the supervisor binds it
        self.child_socket = child_socket  # the same socket, as the child reaches it

    @property
    def mode(self) -> str:
        return "contained" if self.contained else "advisory"


class Caller(Frozen):
    """The supervisor of a nested run, as its parent's authority sees it."""

    __slots__ = ("pid", "socket", "containment")
    pid: int  # the nested supervisor's pid (its peer credentials)
    socket: str  # the control socket, as the nested run's processes reach it
    containment: str  # the parent's mode: a nested run is held as its parent is

    def __init__(self, pid: int, socket: str, containment: str):
        self._set(pid=pid, socket=socket, containment=containment)


def _containment(request: Request, plan: Plan, run_id: str, caller: Caller | None = None) -> Containment:
    from agentsess.edges import containment

    if caller is not None:
        parent = plan.parent["id"] if plan.parent else "?"
        return Containment(caller.containment == "contained", f"inside run {parent}", None, caller.socket,
                           caller.socket)

    folder = paths.control_dir()
    socket = paths.control_socket(run_id, folder)
    wanted = plan.profile.contain if request.contain is None else request.contain
    if not wanted:
        why = "--no-contain" if request.contain is False else f"profile {plan.profile.name} has contain = false"
        return Containment(False, why, None, socket, socket)
    found = containment.available()
    if not found.available:
        if request.contain:  # asked for on the command line: no silent downgrade
            raise AgentsessError(f"cannot contain this run: {found.reason}; drop --contain for an advisory run",
                                 RUN_FAILED)
        return Containment(False, found.reason, None, socket, socket)
    return Containment(True, found.reason, found.bwrap, socket, containment.inside_socket(folder))


def start_run(request: Request) -> int:
    """Start, supervise and record one run; return the exit code `agentsess run` leaves with."""
    from agentsess.edges.config import load_config
    from agentsess.edges.supervisor import ExecFailed, become_subreaper, find_executable, not_dumpable

    # the supervisor is the run's authority: no same-user process reads its memory or
    # environment, and no process of the run escapes it by a double fork or setsid
    not_dumpable()
    become_subreaper()

    if not request.argv:
        raise AgentsessError("no command to run: put it after --, e.g. `agentsess run -- claude`", RUN_FAILED)
    from agentsess.edges.control import find_socket

    parent_socket = find_socket(request.env)
    if parent_socket is not None:
        import gc

        from agentsess.core.runs.nested import start_nested

        gc.enable()  # off while `run` starts (cli.run); a nested run's supervisor is not supervise()'s

        return start_nested(request, parent_socket)
    config = load_config()
    with Store() as store:
        hidden = _hidden_parent(store)
        if hidden is not None:  # an advisory child hid its run's socket from this `run`: nested after all
            import gc

            from agentsess.core.runs.nested import start_nested

            gc.enable()
            return start_nested(request, hidden)
        try:
            plan = make_plan(request, config, store)
        except Refused as refusal:
            run_id = _record_denied(store, request, refusal)
            raise AgentsessError(f"{refusal.message} (recorded as {run_id})", RUN_FAILED) from None
        injected, secrets = _resolve_secrets(plan.profile)
        try:
            find_executable(request.argv[0], request.env.get("PATH"))
        except ExecFailed as exc:
            what = "command not found" if exc.code == 127 else "command not executable"
            raise AgentsessError(f"{what}: {request.argv[0]}", exc.code) from None
        from agentsess.core.guard import agents

        # an agent set up so that its hooks could not run is refused before the run exists
        agents.preflight(request.argv, request.integration or plan.profile.integration, request.env, request.cwd)
        launch = _launch(store, request, plan, injected, secrets)
        from agentsess.edges.supervisor import notice

        for line in launch.notices:
            notice(line)
        from agentsess.core.runs.supervise import supervise

        return supervise(store, request, plan, launch)



def _hidden_parent(store: Store) -> str | None:
    """A `run` that found no control socket but has a live run's supervisor among its
    ancestors (an advisory child unset the variable and deleted the socket's link) is that
    run's nested run, through the socket still there (returned), or refused: never an
    unrelated top-level run. None outside every run."""
    from agentsess.core.runs.nested import enclosing_run, socket_of

    row = enclosing_run(store)
    if row is None:
        return None
    socket = socket_of(store, row)
    if socket is None:
        raise AgentsessError(
            f"this process is inside run {row['id']} (its supervisor, pid {row['supervisor_pid']}, is an "
            "ancestor) but that run's control socket is gone; a run started here would escape it: refused",
            RUN_FAILED)
    return socket


class Launch:
    """What a started run hands to its supervisor."""

    __slots__ = ("run_id", "argv", "env", "use_pty", "spool", "masked", "containment", "notices", "broker")

    def __init__(self, run_id, argv, env, use_pty, spool, masked, containment, notices, broker=None):
        self.broker = broker  # the run's credential broker (issue 13), stopped when the run ends
        self.run_id = run_id
        self.argv = argv
        self.env = env
        self.use_pty = use_pty
        self.spool = spool
        self.masked = masked
        self.containment = containment
        self.notices = notices  # lines for the user, shown by whoever supervises the run


def _launch(store: Store, request: Request, plan: Plan, injected: dict, secrets: dict,
            caller: Caller | None = None, with_broker: bool = True) -> Launch:
    """Mint the credential, record the run (row and first receipts), build the child's environment.

    ``caller`` is a nested run's own supervisor (this process is then its parent's); a
    sub-agent's run (``with_broker`` False) has no process of its own, so no broker."""
    from agentsess.core.credentials import tokens
    from agentsess.core.runs.subagents import delegation

    profile = plan.profile
    run_id = ids.new_run_id(plan.issued_at)
    use_pty = request.use_pty
    if use_pty is None:
        use_pty = os.isatty(0) and os.isatty(1)
    mode = "pty" if use_pty else "pipes"
    user, hostname = host.user(), host.hostname()
    obo = f"{user}@{hostname}"
    token, claims, kid = tokens.mint(
        agent=plan.agent,
        obo=obo,
        sid=run_id,
        scope=plan.scopes,
        chain=plan.chain,
        ttl=max(1, int(plan.expires_at) - int(plan.issued_at)),
        now=plan.issued_at,
        act=delegation(store, plan.chain, obo) if plan.chain else None,
    )
    contained = _containment(request, plan, run_id, caller)
    supervisor = caller.pid if caller is not None else os.getpid()
    notices: list[str] = []
    env, env_facts = _child_env(request, plan, run_id, token, injected, contained)
    # --- issue 13: the run's credential broker (services get placeholders; proxy mode) ---
    broker = None
    if with_broker and (profile.services or (profile.network or {}).get("proxy") or profile.providers):
        from agentsess.core.credentials.brokering import open_broker

        broker = open_broker(run_id, profile, plan.expires_at, env, scopes=plan.scopes)
    if broker is not None:
        env.update(broker.env)
        env_facts["broker"] = broker.facts
        secrets["values"].update(broker.masked)
    # --- end of the broker block (stopped when the run ends: supervise, or a nested run's authority) ---
    parent_id = plan.parent["id"] if plan.parent else None
    if caller is None:
        # from here on `revoke` may signal this process: the supervisor's handler takes over later
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    store.insert_run(
        {
            "id": run_id, "parent_id": parent_id, "name": plan.name, "status": "running",
            "command": request.argv, "cwd": request.cwd, "host": hostname, "user": user, "mode": mode,
            "supervisor_pid": supervisor, "supervisor_started": host.process_start(supervisor),
            "started_at": plan.issued_at, "profile": profile.name, "agent": plan.agent, "obo": obo,
            "scopes": plan.scopes, "chain": plan.chain, "depth": plan.depth, "jti": claims["jti"],
            "token_sha256": sha256_text(token), "kid": kid, "issued_at": float(claims["iat"]),
            "expires_at": plan.expires_at, "policy": profile.to_dict(redact_env=True),
            "containment": contained.mode,
        }
    )
    streams.create_stream(run_id)
    if caller is None:
        argv, integration, spool = _integrations(request, plan, run_id, env)
    else:
        argv, integration, spool = request.argv, {}, None
        if request.capture_shell or agents_wanted(request, plan):
            notices.append("a nested run gets no agent hooks or shell capture of its own; its tool calls "
                           "are checked as the parent run's integration sends them")
    recording.record(
        store,
        run_id,
        "run.started",
        {
            "argv": request.argv, "name": plan.name, "cwd": request.cwd, "host": hostname, "user": user,
            "pid": supervisor, "mode": mode, "parent": parent_id, "profile": profile.name,
            "agent": plan.agent, "obo": obo, "git": host.git_info(request.cwd), "env": env_facts,
            "integration": integration, "containment": contained.mode, "containment_reason": contained.reason,
        },
    )
    recording.record(
        store,
        run_id,
        "credential.minted",
        {
            "jti": claims["jti"], "kid": kid, "sub": claims["sub"], "scopes": plan.scopes,
            "ceiling": profile.scopes, "iat": rfc3339(claims["iat"]), "exp": rfc3339(claims["exp"]),
            "ttl_capped_by_parent": plan.capped, "chain": plan.chain, **({"act": claims["act"]} if "act" in claims else {}),
        },
    )
    if broker is not None:
        broker.started()  # issue 14: a credential.minted receipt per provider credential
    if secrets["vars"]:
        recording.record(
            store, run_id, "secret.injected",
            {"vars": sorted(secrets["vars"]), "secrets": sorted(set(secrets["vars"].values())), "mode": "raw"},
        )
    if parent_id is not None and store.get_run(parent_id) is not None:
        try:
            recording.record(store, parent_id, "child.started", {"child": run_id, "name": plan.name, "scopes": plan.scopes})
        except ReceiptError:
            pass  # the parent's stream is the parent's problem; this run is recorded
    if plan.profile_reason:
        notices.append(f"profile '{plan.profile.name}' ({plan.profile_reason}; --profile default for the default)")
    from agentsess.core.runs import environment

    env_notice = environment.notice(env_facts) if profile.env_notice else None
    if env_notice:
        notices.append(env_notice)
    tool = os.path.basename(request.argv[0]) if request.argv else ""
    keys = AGENT_KEYS.get(tool, ())
    needed = [v for v in keys if v in (env_facts.get("scrubbed") or ())]
    if needed and not any(v in env for v in keys):  # it has none of the keys it could use
        notices.append(
            f"{tool} needs {' or '.join(needed)}: add pass_env = [\"{needed[0]}\"] to "
            f"[profiles.{plan.profile.name}], or run with --pass-env {needed[0]}"
        )
    if env_facts.get("human_files_readable"):
        notices.extend(_human_files_notice(env_facts["human_files_readable"]))
    if not contained.contained and caller is None:
        notices.append(f"advisory run: {contained.reason}; the agent runs as you and can reach what you can")
    elif contained.contained and profile.on_exit == "keep":
        notices.append("on_exit = keep needs an advisory run (--no-contain): a contained run's processes end with it")
    if contained.contained and caller is None and "abstract=" in request.env.get("DBUS_SESSION_BUS_ADDRESS", ""):
        notices.append("your session bus listens on an abstract socket, which a contained child can still reach "
                       "(and the Secret Service through it): only a bus on a path is hidden")
    masked = {"token": token.encode()}
    masked.update((name, value.encode()) for name, value in secrets["values"].items())
    # variables let through despite a scrub rule are masked like injected secrets
    for name, value in environment.passed_secrets(env, env_facts["passed"]).items():
        masked.setdefault(name, value.encode("utf-8", "surrogateescape"))
    return Launch(run_id, argv, env, use_pty, spool, masked, contained, notices, broker)


def agents_wanted(request: Request, plan: Plan) -> bool:
    from agentsess.core.guard import agents

    return agents.detect(request.argv, request.integration or plan.profile.integration) is not None


def _secret_names(policy: dict) -> set[str]:
    """The names of the secrets a profile (as its snapshot) gives a run: raw and brokered."""
    names = {spec["secret"] for spec in (policy.get("env") or {}).values() if isinstance(spec, dict) and "secret" in spec}
    services = policy.get("services") or {}
    if services:
        from agentsess.core.credentials import services as service_specs

        names |= {spec.secret for spec in service_specs.resolve_services(services)}
    return names


def launch_nested(store: Store, request: Request, caller: Caller) -> tuple[Plan, Launch]:
    """Plan, mint and record a run that a process of a live run started (its parent is the
    caller's run, named in ``request.env`` by the authority, never by the caller)."""
    from agentsess.edges.config import load_config

    try:
        plan = make_plan(request, load_config(), store)
    except Refused as refusal:
        run_id = _record_denied(store, request, refusal)
        raise AgentsessError(f"{refusal.message} (recorded as {run_id})", RUN_FAILED) from None
    assert plan.parent is not None
    beyond = sorted(_secret_names(plan.profile.to_dict()) - _secret_names(plan.parent.get("policy") or {}))
    if beyond:
        raise AgentsessError(
            f"profile {plan.profile.name} injects secret {', '.join(beyond)}, which the parent run does not "
            "hold: a sub-agent receives only secrets its parent has", RUN_FAILED)
    injected, secrets = _resolve_secrets(plan.profile)
    return plan, _launch(store, request, plan, injected, secrets, caller)


def launch_subagent(store: Store, request: Request, caller: Caller) -> tuple[Plan, Launch]:
    """Plan, mint and record the run of a sub-agent an agent spawned inside itself (its first
    tool call): a child of the run in ``request.env``, with no process, secrets or broker of
    its own (its tool calls are the parent's agent's, decided and recorded in this run)."""
    from agentsess.edges.config import load_config

    try:
        plan = make_plan(request, load_config(), store)
    except Refused as refusal:
        run_id = _record_denied(store, request, refusal)
        raise AgentsessError(f"{refusal.message} (recorded as {run_id})", RUN_FAILED) from None
    plan = plan.replace(scopes=list(request.scopes))  # exactly these (checked above), even none
    return plan, _launch(store, request, plan, {}, {"vars": {}, "values": {}}, caller, with_broker=False)
