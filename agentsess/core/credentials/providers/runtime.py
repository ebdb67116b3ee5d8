"""A run's provider credentials, held by its supervisor: minted at start, served through the
broker, answered to git's credential helper, re-minted before they end, revoked with the run.

The real credential lives only here and in the broker's memory; the child holds placeholders.
:class:`Providers` is built by :func:`agentsess.core.credentials.brokering.open_broker`.
"""

import hmac
import threading
import time

from agentsess.core.credentials import services as svc
from agentsess.core.credentials.providers import github
from agentsess.digest import sha256_text
from agentsess.errors import RUN_FAILED, AgentsessError


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def helper_command() -> str:
    """The ``credential.helper`` value that runs agentsess's git credential helper."""
    import sys

    return f"!{_shell_quote(sys.executable)} -m agentsess.edges.gitcredential"


class _GitHub:
    """One run's GitHub App installation token."""

    def __init__(self, profile_name: str, cfg: dict, request: github.TokenRequest, run_id: str):
        self.profile_name = profile_name
        self.cfg = cfg
        self.request = request
        self.run_id = run_id
        self.token: str | None = None
        self.expires_at = 0.0  # epoch seconds, GitHub's
        self.expires_text = ""
        self.granted: dict = {}
        self.api = svc.Service(
            name=github.API_SERVICE, secret="provider:github", upstream=svc.parse_upstream(cfg["api_url"]),
            env_base_url="GITHUB_API_URL", env_key=("GH_TOKEN", "GITHUB_TOKEN"), ca_file=cfg["ca_file"], hosts=(),
            placeholder=svc.make_placeholder(github.API_SERVICE, "ghs_"),
        )
        self.git = svc.Service(
            name=github.GIT_SERVICE, secret="provider:github", upstream=svc.parse_upstream(cfg["git_url"]),
            env_base_url=None, env_key=(), ca_file=cfg["ca_file"], hosts=(),
            placeholder=svc.make_placeholder(github.GIT_SERVICE, "ghs_"),
        )

    def _private_key(self) -> str:
        from agentsess.edges import keychain

        name = self.cfg["private_key_secret"]
        value = keychain.get_secret(name)
        if value is None:
            raise AgentsessError(
                f"profile '{self.profile_name}': providers.github needs secret '{name}' (the App's private key, "
                f"PEM), which is not set; set it with `agentsess secret set {name} < app.pem`", RUN_FAILED)
        return value

    def mint(self) -> str:
        """Mint a token; returns it (also kept here). AgentsessError naming what went wrong."""
        from agentsess.edges import github as api

        try:
            jwt = github.app_jwt(self.cfg["app_id"], self._private_key())
        except (ValueError, TypeError) as exc:
            raise AgentsessError(
                f"profile '{self.profile_name}': the secret '{self.cfg['private_key_secret']}' is not a usable RSA "
                f"private key (PEM): {exc}", RUN_FAILED) from None
        try:
            answer = api.mint(self.cfg["api_url"], self.cfg["ca_file"], jwt, self.cfg["installation_id"],
                              self.request.body())
        except api.GitHubError as exc:
            if exc.status == 422:
                inst = api.installation(self.cfg["api_url"], self.cfg["ca_file"], jwt, self.cfg["installation_id"])
                raise AgentsessError(github.explain_refusal(self.request, inst, self.cfg["installation_id"]),
                                     RUN_FAILED) from None
            raise AgentsessError(exc.message, RUN_FAILED) from None
        token = answer["token"]
        self.token = token
        granted = answer.get("permissions")
        self.granted = granted if isinstance(granted, dict) else {}
        self.expires_text = str(answer.get("expires_at") or "")
        self.expires_at = _parse_time(self.expires_text) or time.time() + github.TOKEN_LIFETIME
        return token

    def minted_receipt(self, rotated: bool = False) -> dict:
        assert self.token is not None
        return github.minted_receipt(self.cfg["installation_id"], self.request, self.granted, self.expires_text,
                                     sha256_text(self.token), rotated)

    def delete(self, token: str) -> dict:
        from agentsess.edges import github as api

        entry: dict[str, object] = {"provider": "github", "credential": "installation_token",
                                    "token_sha256": sha256_text(token)}
        try:
            result, took = api.delete(self.cfg["api_url"], self.cfg["ca_file"], token)
            entry.update(result=result, latency=round(took, 6))
        except api.GitHubError as exc:
            entry.update(result="failed", error=exc.message, expires_at=self.expires_text,
                         note="the token lives until it expires")
        return entry


def _parse_time(text: str) -> float | None:
    import calendar

    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


class _Aws:
    """One run's STS session, served through the broker's container-credentials endpoint."""

    def __init__(self, profile_name: str, cfg: dict, policy: str | None, run_id: str, agent: str, human: str,
                 expires_at: float):
        import secrets

        self.profile_name = profile_name
        self.cfg = cfg
        self.policy = policy
        self.run_id = run_id
        self.agent = agent
        self.human = human
        self.expires_at = expires_at
        self.endpoint_token = secrets.token_urlsafe(32)  # the child's AWS_CONTAINER_AUTHORIZATION_TOKEN
        self.credentials: dict | None = None
        self.params: dict = {}
        self._lock = threading.Lock()

    def mint(self) -> dict:
        from agentsess.core.credentials.providers import aws
        from agentsess.edges import aws as sts

        self.params = aws.assume_role_params(self.cfg, self.run_id, self.agent, self.human,
                                             int(self.expires_at - time.time()), self.policy)
        try:
            self.credentials = sts.assume_role(self.cfg, self.params)
        except sts.AwsError as exc:
            raise AgentsessError(f"profile '{self.profile_name}': {exc.message}", RUN_FAILED) from None
        return self.minted_receipt()

    def minted_receipt(self) -> dict:
        from agentsess.core.credentials.providers import aws

        assert self.credentials is not None
        return aws.minted_receipt(self.params, self.credentials, sha256_text(self.credentials["secret_access_key"]))

    def answer(self, authorization: bytes, dead: str | None, write) -> tuple[int, dict]:
        from agentsess.core.credentials.providers import aws

        if not hmac.compare_digest(authorization, self.endpoint_token.encode()):
            return 401, {"ok": False, "error": "not a process of this run"}
        if dead is not None:
            return 403, {"ok": False, "error": f"run {self.run_id} is {dead}: no AWS credentials"}
        with self._lock:
            assert self.credentials is not None
            if self.credentials["expiration"] - time.time() < github.REMINT_MARGIN < self.expires_at - time.time():
                try:
                    write("credential.minted", {**self.mint(), "rotated": True})
                except AgentsessError as exc:
                    return 503, {"ok": False, "error": exc.message}
            return 200, aws.served(self.credentials)

    def revoke_entry(self, cause: str) -> dict:
        from agentsess.timefmt import rfc3339

        assert self.credentials is not None
        entry: dict[str, object] = {
            "provider": "aws", "credential": "sts_session", "access_key_id": self.credentials["access_key_id"],
            "result": "endpoint closed", "latency": 0.0, "expires_at": rfc3339(self.credentials["expiration"]),
            "note": "STS credentials already handed out stay valid until expires_at; the endpoint answers 403",
        }
        if cause == "revoked" and self.cfg.get("deny_on_revoke"):
            from agentsess.edges import aws as sts

            started = time.monotonic()
            try:
                entry["deny_policy"] = sts.deny_session(self.cfg, self.run_id)
                entry["result"] = "denied"
                entry["note"] = "an inline deny on the role matches this run's session tag"
            except sts.AwsError as exc:
                entry["deny_error"] = exc.message
            entry["latency"] = round(time.monotonic() - started, 6)
        return entry


class _Command:
    """A service's secret from a command of the human's, re-run when the value expires."""

    REFRESH_AHEAD = 30  # re-run this long before the value's expires_at

    def __init__(self, profile_name: str, service: str, cfg: dict):
        self.profile_name = profile_name
        self.service = service
        self.cfg = cfg
        self.value: str | None = None
        self.expires_at: float | None = None

    def mint(self, rotated: bool = False) -> dict:
        import os
        import subprocess

        from agentsess.core.credentials.providers import command

        argv = self.cfg["run"]
        where = f"profile '{self.profile_name}': providers.command.{self.service}"
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.cfg["timeout"],
                                  env=dict(os.environ), check=False)
        except FileNotFoundError:
            raise AgentsessError(f"{where}: command not found: {argv[0]}", RUN_FAILED) from None
        except PermissionError:
            raise AgentsessError(f"{where}: command not executable: {argv[0]}", RUN_FAILED) from None
        except subprocess.TimeoutExpired:
            raise AgentsessError(f"{where}: {argv[0]} did not finish within {self.cfg['timeout']}s", RUN_FAILED) \
                from None
        if proc.returncode != 0:  # its output is never shown: it may hold the value
            raise AgentsessError(f"{where}: {argv[0]} exited with {proc.returncode}", RUN_FAILED)
        try:
            self.value, self.expires_at = command.parse_output(proc.stdout)
        except command.OutputError as exc:
            raise AgentsessError(f"{where}: {argv[0]}: {exc}", RUN_FAILED) from None
        from agentsess.timefmt import rfc3339

        return {"provider": "command", "service": self.service, "command": argv[0],
                "expires_at": rfc3339(self.expires_at) if self.expires_at else None,
                "value_sha256": sha256_text(self.value), "rotated": rotated}


class Providers:
    """The provider credentials of one run: GitHub App tokens, AWS STS sessions, credential commands."""

    def __init__(self, run_id: str, profile, scopes, expires_at: float, child_env: dict):
        self.run_id = run_id
        self.expires_at = expires_at
        self._run_token = child_env.get("AGENTSESS_TOKEN", "")
        self._lock = threading.Lock()
        self._revoked: str | None = None
        self._done = threading.Event()
        self._record = None
        self._broker = None
        self._pending: list[dict] = []
        self.github: _GitHub | None = None
        self.aws: _Aws | None = None
        self.commands: dict[str, _Command] = {}
        for service, ccfg in ((getattr(profile, "providers", None) or {}).get("command") or {}).items():
            if service not in (profile.services or {}):
                raise AgentsessError(
                    f"profile '{profile.name}': providers.command.{service}: the profile has no service {service} "
                    f"(declare [profiles.{profile.name}.services.{service}])", RUN_FAILED)
            self.commands[service] = _Command(profile.name, service, ccfg)
        acfg = (getattr(profile, "providers", None) or {}).get("aws")
        if acfg:
            from agentsess.core.credentials.providers import aws

            try:
                policy = aws.session_policy(scopes) if aws.actions(scopes) else None
            except aws.ScopeError as exc:
                raise AgentsessError(f"profile '{profile.name}': {exc}", RUN_FAILED) from None
            if aws.actions(scopes):
                from agentsess.edges import host

                self.aws = _Aws(profile.name, acfg, policy, run_id, child_env.get("AGENTSESS_AGENT") or profile.name,
                                f"{host.user()}@{host.hostname()}", expires_at)
        cfg = (getattr(profile, "providers", None) or {}).get("github")
        if cfg:
            try:
                request = github.token_request(scopes, tuple(cfg["repositories"]))
            except github.ScopeError as exc:
                raise AgentsessError(f"profile '{profile.name}': {exc}", RUN_FAILED) from None
            if request is not None:
                if github.API_SERVICE in (profile.services or {}):
                    raise AgentsessError(
                        f"profile '{profile.name}': services.github and providers.github both serve GitHub; "
                        "keep one (providers.github mints a token per run)", RUN_FAILED)
                self.github = _GitHub(profile.name, cfg, request, run_id)

    def __bool__(self) -> bool:
        return self.github is not None or self.aws is not None or bool(self.commands)

    def names(self) -> list[str]:
        return [name for name, p in (("github", self.github), ("aws", self.aws), ("command", self.commands)) if p]

    def bound_services(self) -> set[str]:
        """The profile's services whose secret comes from a command, not the keychain."""
        return set(self.commands)

    def masked(self) -> dict[str, str]:
        """Values the child holds or could echo, for the output masker (a net, not the boundary)."""
        out = {f"provider:command:{name}": c.value for name, c in self.commands.items() if c.value}
        if self.aws is not None and self.aws.credentials is not None:
            out["provider:aws"] = self.aws.credentials["secret_access_key"]
            out["provider:aws-token"] = self.aws.credentials["session_token"]
        return out

    # -- start --------------------------------------------------------------------------

    def mint(self) -> None:
        if self.github is not None:
            self.github.mint()
            self._pending.append(self.github.minted_receipt())
        for cmd in self.commands.values():
            try:
                self._pending.append(cmd.mint())
            except BaseException:
                self.close("failed")
                raise
        if self.aws is not None:
            try:
                self._pending.append(self.aws.mint())
            except BaseException:
                self.close("failed")  # the run does not start: its GitHub token dies now
                raise

    def services(self) -> list[svc.Service]:
        return [self.github.api, self.github.git] if self.github else []

    def values(self) -> dict[str, str]:
        out = {name: c.value for name, c in self.commands.items() if c.value is not None}
        if self.github is not None and self.github.token is not None:
            out.update({self.github.api.name: self.github.token, self.github.git.name: self.github.token})
        return out

    def env(self, broker_url: str, existing: int) -> dict:
        """git through the broker: the human's helpers emptied, agentsess's helper, no prompts."""
        env = {}
        if self.aws is not None:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"{broker_url}/.agentsess/aws-credentials"
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.aws.endpoint_token
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.aws.cfg["region"]
        if self.github is None:
            return env
        git_url = self.github.cfg["git_url"]
        helper = f"{helper_command()} {broker_url}"
        entries = [
            (f"credential.{git_url}.helper", ""),  # the human's helpers never answer for the real host
            (f"credential.{broker_url}.helper", ""),
            (f"credential.{broker_url}.helper", helper),
            (f"credential.{broker_url}.useHttpPath", "true"),
            (f"url.{broker_url}/{github.GIT_SERVICE}/.insteadOf", f"{git_url}/"),
        ]
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""})
        for i, (key, value) in enumerate(entries, start=existing):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env["GIT_CONFIG_COUNT"] = str(existing + len(entries))
        return env

    def attach(self, broker, record) -> None:
        """Called once the broker listens: ``record(type, data)`` writes a receipt of the run."""
        self._broker = broker
        self._record = record
        if self.github is not None and self.expires_at > self.github.expires_at - github.REMINT_MARGIN:
            threading.Thread(target=self._remint_loop, name="agentsess-provider-remint", daemon=True).start()
        for cmd in self.commands.values():
            if cmd.expires_at is not None:
                threading.Thread(target=self._rerun_loop, args=(cmd,), name="agentsess-provider-command",
                                 daemon=True).start()

    def _rerun_loop(self, cmd: _Command) -> None:
        """Run the command again before its value expires, until the run ends or is revoked."""
        while cmd.expires_at is not None:
            if self._done.wait(max(cmd.expires_at - cmd.REFRESH_AHEAD - time.time(), 1.0)):
                return
            with self._lock:
                if self._revoked is not None or time.time() >= self.expires_at:
                    return
                try:
                    data = cmd.mint(rotated=True)
                except AgentsessError as exc:
                    self._write("credential.failed", {"provider": "command", "service": cmd.service,
                                                      "error": exc.message})
                    if self._done.wait(10):
                        return
                    continue
                if self._broker is not None and cmd.value is not None:
                    self._broker.set_secret(cmd.service, cmd.value)
                self._write("credential.minted", data)

    def started(self) -> None:
        """The run's stream exists: write the credential.minted receipts of the providers."""
        pending, self._pending = self._pending, []
        for data in pending:
            self._write("credential.minted", data)

    def _write(self, rtype: str, data: dict) -> None:
        if self._record is not None:
            try:
                self._record(rtype, data)
            except Exception:  # noqa: BLE001 - a finished stream: the result is still returned
                pass

    # -- while the run lives ------------------------------------------------------------

    def _remint_loop(self) -> None:
        gh = self.github
        assert gh is not None
        while True:
            wait = gh.expires_at - github.REMINT_MARGIN - time.time()
            if self._done.wait(max(wait, 1.0)):
                return
            with self._lock:
                if self._revoked is not None or time.time() >= self.expires_at:
                    return
                old = gh.token
                try:
                    token = gh.mint()
                except AgentsessError as exc:
                    self._write("credential.failed", {"provider": "github", "error": exc.message})
                    if self._done.wait(30):
                        return
                    continue
                if self._broker is not None:
                    for name in (gh.api.name, gh.git.name):
                        self._broker.set_secret(name, token)
                self._write("credential.minted", gh.minted_receipt(rotated=True))
            if old and old != token:
                self._write("credential.revoked", {"cause": "rotated", "providers": [gh.delete(old)]})

    def authorize(self, service: str, method: str, target: str) -> str | None:
        """The broker asks before forwarding: a reason to refuse, or None. git pushes and fetches
        of a repository the scopes do not cover are refused here, naming the missing scope."""
        gh = self.github
        if gh is None or service != github.GIT_SERVICE:
            return None
        need = github.git_need(target, method)
        if need is None:
            return "not a git repository path (expected /<owner>/<repo>.git/...)"
        repo, permission, level = need
        if gh.request.allows(repo, permission, level):
            return None
        scope = gh.request.needed_scope(repo, permission, level, tuple(gh.cfg["repositories"]))
        what = "push to" if level == "write" else "fetch from"
        return f"git {what} {repo} needs scope {scope}, which run {self.run_id} does not have"

    def control(self, authorization: bytes, message: dict, dead: str | None) -> tuple[int, dict]:
        """A request of the run's own helpers: git's credential helper (see
        :mod:`agentsess.edges.gitcredential`), or an AWS SDK at the container-credentials endpoint."""
        if message.get("op") == "aws-credentials" and self.aws is not None:
            return self.aws.answer(authorization, dead or self._revoked, self._write)
        expected = f"Bearer {self._run_token}".encode()
        if not hmac.compare_digest(authorization, expected):
            return 401, {"ok": False, "error": "not a process of this run"}
        if message.get("op") != "git_credential":
            return 400, {"ok": False, "error": "unknown request"}
        return 200, self.git_credential(message, dead)

    def git_credential(self, message: dict, dead: str | None) -> dict:
        """git's ``get``: the placeholder for a repository in scope; ``quit`` otherwise."""
        gh = self.github
        if dead is not None or self._revoked is not None:
            return {"ok": True, "quit": True,
                    "error": f"run {self.run_id} is {dead or self._revoked}: git gets no credential"}
        if gh is None:
            return {"ok": True}
        repo = github.repo_of_path(str(message.get("path") or "").removeprefix(github.GIT_SERVICE + "/"))
        if not str(message.get("path") or "").startswith(github.GIT_SERVICE + "/") or repo is None:
            return {"ok": True}  # not a repository this run's broker serves: no answer
        if not gh.request.allows(repo, "contents", "read"):
            scope = gh.request.needed_scope(repo, "contents", "read", tuple(gh.cfg["repositories"]))
            return {"ok": True, "quit": True,
                    "error": f"{repo} is outside the scopes of run {self.run_id} (it needs {scope})"}
        return {"ok": True, "username": github.GIT_USER, "password": gh.git.placeholder,
                "password_expiry_utc": int(min(self.expires_at, gh.expires_at))}

    # -- the end --------------------------------------------------------------------------

    def revoke(self, cause: str, revoked_at: float | None = None) -> dict | None:
        """Revoke every provider credential once; writes and returns the ``credential.revoked`` data."""
        with self._lock:
            if self._revoked is not None:
                return None
            self._revoked = cause
            self._done.set()
            started = time.time()
            entries = []
            if self.github is not None and self.github.token is not None:
                entry = self.github.delete(self.github.token)
                if revoked_at is not None:
                    entry["since_revocation"] = round(time.time() - revoked_at, 6)
                entries.append(entry)
            for cmd in self.commands.values():
                entries.append({"provider": "command", "service": cmd.service, "result": "dropped", "latency": 0.0,
                                "note": "the broker attaches it no more and the command is not run again"})
            if self.aws is not None and self.aws.credentials is not None:
                entry = self.aws.revoke_entry(cause)
                if revoked_at is not None:
                    entry["since_revocation"] = round(time.time() - revoked_at, 6)
                entries.append(entry)
            if not entries:
                return None
            data = {"cause": cause, "providers": entries, "duration": round(time.time() - started, 6)}
        self._write("credential.revoked", data)
        return data

    def close(self, cause: str = "finished") -> None:
        self.revoke(cause)
