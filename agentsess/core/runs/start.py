"""The run lifecycle: plan, record, mint, supervise, exit, seal.

``start_run`` is what ``agentsess run`` calls; it returns the exit code to leave with.
Data flows one way (see DESIGN.md): plan -> store row -> credential -> receipts -> child
environment -> supervisor -> exit receipt -> store.
"""

import os
import signal
import time

from agentsess.core.receipts import recording
from agentsess import ids
from agentsess.core.runs.plan import Plan, Refused, Request, make_plan
from agentsess.core.guard.policy import token_digest
from agentsess.timefmt import rfc3339
from agentsess.edges import host, paths
from agentsess.edges import streams
from agentsess.edges.streams import ReceiptError
from agentsess.edges.store import Store
from agentsess.errors import RUN_FAILED, RUN_STOPPED, AgentsessError

__all__ = ["Request", "start_run"]


def notice(text: str) -> None:
    """One line for the user on stderr (never into the child's output or the log)."""
    try:
        end = "\r\n" if os.isatty(2) else "\n"
        os.write(2, f"agentsess: {text}{end}".encode(errors="replace"))
    except OSError:
        pass


def _record_denied(store: Store, request: Request, refusal: Refused) -> str:
    plan = refusal.plan
    run_id = ids.new_run_id()
    now = time.time()
    store.insert_run(
        {
            "id": run_id,
            "parent_id": plan.parent["id"] if plan.parent else None,
            "name": getattr(plan, "name", None) or os.path.basename(request.argv[0]),
            "status": "denied",
            "command": request.argv,
            "cwd": request.cwd,
            "host": host.hostname(),
            "user": host.user(),
            "started_at": now,
            "ended_at": now,
            "profile": plan.profile.name,
            "agent": getattr(plan, "agent", None),
            "scopes": getattr(plan, "scopes", None),
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
            "requested_scopes": getattr(plan, "scopes", None),
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


def _child_env(request: Request, plan: Plan, run_id: str, token: str, injected: dict) -> tuple[dict, dict]:
    """The child's environment and what the run.started receipt says about it (names only)."""
    from agentsess.core.runs import environment

    profile = plan.profile
    base = {k: v for k, v in request.env.items() if not k.startswith("AGENTSESS_")}
    # agentsess's own settings pass through; the parent's run variables never do
    for key in ("AGENTSESS_HOME", "AGENTSESS_CONFIG", "AGENTSESS_KEYRING", "AGENTSESS_DEBUG", "AGENTSESS_STORE"):
        if key in request.env:
            base[key] = request.env[key]
    keep = request.keep_env or profile.keep_env
    env, scrubbed, passed = environment.scrub_env(
        base, profile.scrub_env or (), list(profile.pass_env or ()) + request.pass_env, keep
    )
    env.update(environment.git_identity(plan.agent, run_id, profile.git_name, profile.git_email))
    facts = {"scrubbed": scrubbed, "passed": passed, "kept_all": bool(keep)}
    isolate = profile.isolate_home if request.isolate_home is None else request.isolate_home
    human_home = request.env.get("HOME") or os.path.expanduser("~")
    from agentsess.edges import homes

    if isolate:
        env.update(homes.isolated_home(plan.agent, human_home, profile.home_files or ()))
        facts["home"] = env["HOME"]
    else:
        facts["human_files_readable"] = homes.readable_credential_files(human_home)
    env.update(injected)
    env["AGENTSESS_RUN_ID"] = run_id
    env["AGENTSESS_TOKEN"] = token
    env["AGENTSESS_SCOPES"] = " ".join(plan.scopes)
    env["AGENTSESS_EXPIRES_AT"] = rfc3339(plan.expires_at)
    env["AGENTSESS_AGENT"] = plan.agent
    if plan.parent is not None:
        env["AGENTSESS_PARENT_RUN_ID"] = plan.parent["id"]
    return env, facts


def _human_files_notice(files: list[str]) -> None:
    """Name the human's readable credential files once per distinct set, not on every run."""
    if not files:
        return
    import hashlib

    marker = os.path.join(paths.data_root(), "notices")
    digest = hashlib.sha256("\0".join(files).encode()).hexdigest()[:16]
    try:
        with open(marker) as fh:
            if digest in fh.read().split():
                return
    except OSError:
        pass
    notice(
        "the agent can read your credential files: " + ", ".join(files)
        + " (use --isolate-home to give it its own HOME)"
    )
    try:
        fd = paths.open_private(marker)
        os.write(fd, (digest + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def _integrations(request: Request, plan: Plan, run_id: str, env: dict):
    """Claude Code hooks and shell capture: (argv to exec, receipt facts, spool path or None)."""
    from agentsess.core.guard import agents

    argv, facts, spool = request.argv, {}, None
    kind = request.integration or plan.profile.integration
    if agents.wants_claude_code(request.argv, kind):
        argv, extra, facts["claude_code"] = agents.setup_claude_code(run_id, request.argv)
        env.update(extra)
    capture = plan.profile.capture_shell if request.capture_shell is None else request.capture_shell
    if capture:
        extra, spool = agents.setup_shell_capture(run_id)
        env.update(extra)
        facts["shell_capture"] = True
    return argv, facts, spool


class Watch:
    """The supervisor's periodic check: revocation, expiry, and the receipt stream's presence."""

    def __init__(self, store: Store, run_id: str, plan: Plan):
        self.store = store
        self.run_id = run_id
        self.plan = plan
        self.profile = plan.profile
        self.receipts_path = paths.receipts_file(run_id)
        self.revoked = False
        self.stopped = False
        self.warned = False
        self.expired = False
        self.spool = None
        self.fleet = None  # fleet (issue 17): the shared store's watch, see _supervise

    def ingest_spool(self) -> None:
        if self.spool is not None:
            for data in self.spool.read():
                recording.record(self.store, self.run_id, "action.exec", data)

    def __call__(self, sup) -> None:
        if not os.path.exists(self.receipts_path):
            raise ReceiptError(
                f"the receipt stream {self.receipts_path} was deleted; stopping the run (fail closed)"
            )
        self.ingest_spool()
        if self.fleet is not None:  # fleet (issue 17): confirm a revocation, apply on_store_unreachable
            self.fleet.tick(self, sup)
        if not self.revoked:
            revoked_at, cause = self.store.revocation(self.run_id)
            if revoked_at is not None:
                self.revoked = True
                if self.profile.on_revoke == "stop":
                    notice(f"run {self.run_id} was revoked ({cause or 'direct'}); stopping it")
                    self.stopped = True
                    sup.stop(self.profile.revoke_grace)
                else:
                    notice(f"run {self.run_id} was revoked; its credentials are dead (on_revoke = keep)")
        now = time.time()
        left = self.plan.expires_at - now
        if not self.warned and not self.expired and left <= self.profile.expiry_warning and left > 0:
            self.warned = True
            notice(f"the credential of run {self.run_id} expires in {int(left)}s")
        if not self.expired and left <= 0:
            self.expired = True
            recording.record(
                self.store,
                self.run_id,
                "credential.expired",
                {"expired_at": rfc3339(self.plan.expires_at), "on_expiry": self.profile.on_expiry},
            )
            if self.profile.on_expiry == "stop" and not self.stopped:
                notice(f"the credential of run {self.run_id} expired; stopping it (on_expiry = stop)")
                self.stopped = True
                sup.stop(self.profile.revoke_grace)
            else:
                notice(f"the credential of run {self.run_id} expired; the process goes on without it")


def start_run(request: Request) -> int:
    """Start, supervise and record one run; return the exit code `agentsess run` leaves with."""
    from agentsess.edges.config import load_config
    from agentsess.edges.supervisor import ExecFailed, find_executable

    if not request.argv:
        raise AgentsessError("no command to run: put it after --, e.g. `agentsess run -- claude`", RUN_FAILED)
    config = load_config()
    with Store() as store:
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
        launch = _launch(store, request, plan, injected, secrets)
        return _supervise(store, request, plan, launch)


class Launch:
    """What a started run hands to its supervisor."""

    __slots__ = ("run_id", "argv", "env", "use_pty", "spool", "masked")

    def __init__(self, run_id, argv, env, use_pty, spool, masked):
        self.run_id = run_id
        self.argv = argv
        self.env = env
        self.use_pty = use_pty
        self.spool = spool
        self.masked = masked


def _launch(store: Store, request: Request, plan: Plan, injected: dict, secrets: dict) -> Launch:
    """Mint the credential, record the run (row and first receipts), build the child's environment."""
    from agentsess.core.credentials import tokens

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
    )
    plan.expires_at = float(claims["exp"])
    env, env_facts = _child_env(request, plan, run_id, token, injected)
    parent_id = plan.parent["id"] if plan.parent else None
    # from here on `revoke` may signal this process: the supervisor's handler takes over later
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    store.insert_run(
        {
            "id": run_id, "parent_id": parent_id, "name": plan.name, "status": "running",
            "command": request.argv, "cwd": request.cwd, "host": hostname, "user": user, "mode": mode,
            "supervisor_pid": os.getpid(), "supervisor_started": host.process_start(os.getpid()),
            "started_at": plan.issued_at, "profile": profile.name, "agent": plan.agent, "obo": obo,
            "scopes": plan.scopes, "chain": plan.chain, "depth": plan.depth, "jti": claims["jti"],
            "token_sha256": token_digest(token), "kid": kid, "issued_at": float(claims["iat"]),
            "expires_at": plan.expires_at, "policy": profile.to_dict(redact_env=True),
        }
    )
    streams.create_stream(run_id)
    argv, integration, spool = _integrations(request, plan, run_id, env)
    recording.record(
        store,
        run_id,
        "run.started",
        {
            "argv": request.argv, "name": plan.name, "cwd": request.cwd, "host": hostname, "user": user,
            "pid": os.getpid(), "mode": mode, "parent": parent_id, "profile": profile.name,
            "agent": plan.agent, "obo": obo, "git": host.git_info(request.cwd), "env": env_facts,
            "integration": integration,
        },
    )
    recording.record(
        store,
        run_id,
        "credential.minted",
        {
            "jti": claims["jti"], "kid": kid, "sub": claims["sub"], "scopes": plan.scopes,
            "ceiling": profile.scopes, "iat": rfc3339(claims["iat"]), "exp": rfc3339(claims["exp"]),
            "ttl_capped_by_parent": plan.capped, "chain": plan.chain,
        },
    )
    if secrets["vars"]:
        recording.record(
            store, run_id, "secret.injected",
            {"vars": sorted(secrets["vars"]), "secrets": sorted(set(secrets["vars"].values()))},
        )
    if parent_id is not None and store.get_run(parent_id) is not None:
        try:
            recording.record(store, parent_id, "child.started", {"child": run_id, "name": plan.name, "scopes": plan.scopes})
        except ReceiptError:
            pass  # the parent's stream is the parent's problem; this run is recorded
    if env_facts.get("scrubbed"):
        notice("kept from the agent: " + " ".join(env_facts["scrubbed"]) + " (--pass-env NAME to let one through)")
    if env_facts.get("human_files_readable"):
        _human_files_notice(env_facts["human_files_readable"])
    masked = {"token": token.encode()}
    masked.update((name, value.encode()) for name, value in secrets["values"].items())
    return Launch(run_id, argv, env, use_pty, spool, masked)


def _supervise(store: Store, request: Request, plan: Plan, launch: Launch) -> int:
    """Run the child under the supervisor until it ends; then record how it ended."""
    from agentsess.core.guard.masking import Masker
    from agentsess.edges.outputlog import OutputLog
    from agentsess.edges.supervisor import ExecFailed, Supervisor

    run_id = launch.run_id
    profile = plan.profile
    mask_terminal = profile.mask_terminal if request.mask_terminal is None else request.mask_terminal
    log = OutputLog(run_id)
    watch = Watch(store, run_id, plan)
    if launch.spool is not None:
        from agentsess.core.guard.agents import SpoolReader

        watch.spool = SpoolReader(launch.spool, Masker(launch.masked).mask_text)
    sup = Supervisor(
        launch.argv,
        launch.env,
        use_pty=launch.use_pty,
        log=log,
        maskers={1: Masker(launch.masked), 2: Masker(launch.masked)},
        mask_terminal=mask_terminal,
        tick=watch,
        grace=profile.revoke_grace,
    )
    sup.on_start = lambda s: store.update_run(
        run_id, child_pid=s.pid, child_pgid=s.pgid, child_started=host.process_start(s.pid)
    )
    # fleet (issue 17): with a shared store, a watcher thread (edges/store/watcher.py) sees
    # revocations made on any machine and wakes this loop with SIGUSR1; None with SQLite
    watch.fleet = store.watch_run(run_id, profile, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    if watch.fleet is not None:
        watch.fleet.start()
    failure = None
    code = sig = None
    try:
        code, sig = sup.run()
        # the child is gone: a late signal must not cost the run its exit receipt and seal
        for late in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(late, signal.SIG_IGN)
    except ExecFailed as exc:
        code = exc.code
        failure = f"cannot execute {request.argv[0]}: {exc}"
    except ReceiptError as exc:
        failure = exc.message
    finally:
        log.close()
        if watch.fleet is not None:  # fleet (issue 17)
            watch.fleet.stop()
    try:
        watch.ingest_spool()
    except ReceiptError:
        pass
    return _finish(store, plan, watch, log, code, sig, failure)


def _finish(store: Store, plan: Plan, watch: "Watch", log, code, sig, failure) -> int:
    """Record the exit (row, ``run.exited``, seal) and choose `run`'s exit code."""
    run_id = watch.run_id
    ended = time.time()
    store.update_run(
        run_id, ended_at=ended, exit_code=code, signal=sig, output_bytes=log.size,
        output_sha256=log.digest(), error=failure,
    )
    store.set_status_if(run_id, "running", status="exited")
    if failure and code is None:
        code = RUN_FAILED
    try:
        recording.record(
            store,
            run_id,
            "run.exited",
            {
                "exit_code": code, "signal": sig, "duration": round(ended - plan.issued_at, 6),
                "output_bytes": log.size, "output_sha256": log.digest(), "revoked": watch.revoked,
                "stopped_by_agentsess": watch.stopped, "error": failure,
            },
        )
        recording.seal(store, run_id)
    except ReceiptError as exc:
        notice(failure or exc.message)
        return RUN_FAILED
    if failure:
        notice(failure)
        return code if code in (126, 127) else RUN_FAILED
    if watch.stopped:
        return RUN_STOPPED
    if sig is not None:
        return 128 + sig
    return code
