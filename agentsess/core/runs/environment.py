"""The child's environment: the human's credentials scrubbed out, the agent's git identity.

Built-in scrub list. A variable is removed from the child's environment when its name,
compared case-insensitively, matches any of these rules:

- exact names: ``GH_TOKEN``, ``GITHUB_TOKEN``, ``GITLAB_TOKEN``, ``NPM_TOKEN``,
  ``GOOGLE_APPLICATION_CREDENTIALS``, ``SSH_AUTH_SOCK``, ``SSH_AGENT_PID``,
  ``GPG_AGENT_INFO``, the AWS credential and profile variables (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_SECURITY_TOKEN``,
  ``AWS_PROFILE``, ``AWS_DEFAULT_PROFILE``, ``AWS_SHARED_CREDENTIALS_FILE``,
  ``AWS_CONFIG_FILE``, ``AWS_WEB_IDENTITY_TOKEN_FILE``, ``AWS_ROLE_ARN``,
  ``AWS_ROLE_SESSION_NAME``, ``AWS_CREDENTIAL_EXPIRATION``), variables that point
  at the human's credential stores or helpers: ``KUBECONFIG``, ``DOCKER_CONFIG``,
  ``DOCKER_AUTH_CONFIG``, ``REGISTRY_AUTH_FILE``, ``NETRC``, ``KRB5CCNAME``,
  ``GIT_ASKPASS``, ``SSH_ASKPASS``, ``PGPASSFILE``, ``SOPS_AGE_KEY_FILE``, and session or
  password variables of other tools: ``BW_SESSION`` (Bitwarden), ``MYSQL_PWD``,
  ``NPM_CONFIG__AUTH`` (npm's ``_auth``);
- prefixes: ``AWS_CONTAINER_CREDENTIALS_``, ``AWS_VAULT``, ``AZURE_``, ``ARM_`` (Terraform's
  Azure provider), ``CLOUDSDK_``, ``CI_JOB_JWT`` (GitLab), ``OP_SESSION_`` (1Password CLI
  sessions), ``VSCODE_GIT_`` (VS Code's git credential bridge);
- suffixes: ``_PAT`` (personal access tokens), ``_KEY`` (``SOPS_AGE_KEY``,
  ``ARM_ACCESS_KEY``, ``STRIPE_KEY``), ``_JWT``, ``_PWD``;
- substrings: ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``API_KEY``, ``APIKEY``,
  ``CREDENTIAL``, ``PRIVATE_KEY``.

Certificate bundles are not credentials: a variable naming a CA bundle or certificate
folder (:data:`CA_BUNDLE_NAMES`, and any name holding ``CA_CERT``, ``CA_BUNDLE``,
``CAINFO``, ``CAFILE``, ``CAPATH`` or ``SSL_CERT``, such as
``CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE``) is kept by the built-in rules, unless its name also
holds a credential word or suffix above (``SSL_CERT_PASSWORD``, ``CA_CERT_PRIVATE_KEY``,
``SSL_CERT_KEY`` are scrubbed); a profile's own ``scrub_env`` patterns still apply to it.

Credentials in URLs. In a variable that is kept, any URL that carries a password
(``scheme://user:password@host``: ``DATABASE_URL``, ``REDIS_URL``, ``PIP_INDEX_URL``,
``HTTPS_PROXY``…) keeps the variable with the password removed (``scheme://user@host``);
a user part of 20 characters or more without a password (``https://ghp_…@github.com``) is
taken for a token and removed too. The notice names these variables as "password removed".
A variable let through by name (``pass_env``, ``--pass-env``, ``keep_env``) is left whole.

Allowlist mode (``env_mode = "allow"`` in a profile): the child gets only the base set
(:data:`ALLOW_BASE`: ``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``, ``TERM``,
``COLORTERM``, ``TERMINFO``, ``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``, ``TMPDIR``, ``PWD``,
``NO_COLOR``), the names in ``pass_env`` (and ``--pass-env``), and agentsess's own
variables; every other variable is dropped. URL passwords are removed from the base set's
values like above.

``AGENTSESS_*`` variables are never scrubbed. A profile adds its own patterns
(``extra_patterns``) and lets named variables through (``pass_names``); both take exact
names or ``*`` wildcards, compared case-insensitively. Values of variables let through that
a rule would have scrubbed are masked in the run's output like injected secrets
(:func:`passed_secrets`).
"""

import re

from agentsess.errors import USAGE, AgentsessError

SCRUB_NAMES = frozenset(
    {
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "GITLAB_TOKEN",
        "NPM_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "GPG_AGENT_INFO",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_CREDENTIAL_EXPIRATION",
        "KUBECONFIG",
        "DOCKER_CONFIG",
        "DOCKER_AUTH_CONFIG",
        "REGISTRY_AUTH_FILE",
        "NETRC",
        "PGPASSFILE",
        "SOPS_AGE_KEY_FILE",
        "BW_SESSION",
        "MYSQL_PWD",
        "NPM_CONFIG__AUTH",
        "KRB5CCNAME",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
    }
)
SCRUB_PREFIXES = (
    "AWS_CONTAINER_CREDENTIALS_",
    "AWS_VAULT",
    "AZURE_",
    "ARM_",
    "CLOUDSDK_",
    "CI_JOB_JWT",
    "OP_SESSION_",
    "VSCODE_GIT_",
)
SCRUB_SUBSTRINGS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "CREDENTIAL",
    "PRIVATE_KEY",
)
SCRUB_SUFFIXES = ("_PAT", "_KEY", "_JWT", "_PWD")
NEVER_SCRUBBED_PREFIX = "AGENTSESS_"
CA_BUNDLE_NAMES = frozenset(
    {
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "AWS_CA_BUNDLE",
        "PIP_CERT",
        "NPM_CONFIG_CAFILE",
        "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        "HTTPLIB2_CA_CERTS",
    }
)
_CA_PARTS = ("CA_CERT", "CA_BUNDLE", "CAINFO", "CAFILE", "CAPATH", "SSL_CERT")
ALLOW_BASE = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLORTERM", "TERMINFO", "LANG",
              "LANGUAGE", "LC_*", "TZ", "TMPDIR", "PWD", "NO_COLOR")
PASSED_MASK_MIN = 6  # values let through shorter than this are not masked in output
# scheme://userinfo@ : the authority runs to the first / ? # or space; userinfo to its last @
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\s]*)@")

GIT_EMAIL_DOMAIN = "agentsess.invalid"


def scrub_rule(name: str, extra_patterns=()):
    """The rule that scrubs variable ``name`` (``"GH_TOKEN"``, ``"AZURE_*"``,
    ``"*TOKEN*"`` or the matching extra pattern), or None if it is kept."""
    upper = name.upper()
    if upper.startswith(NEVER_SCRUBBED_PREFIX):
        return None
    if not is_ca_bundle(upper):
        if upper in SCRUB_NAMES:
            return upper
        for prefix in SCRUB_PREFIXES:
            if upper.startswith(prefix):
                return prefix + "*"
        for suffix in SCRUB_SUFFIXES:
            if upper.endswith(suffix):
                return "*" + suffix
        for part in SCRUB_SUBSTRINGS:
            if part in upper:
                return "*" + part + "*"
    for pattern in extra_patterns:
        if _glob(pattern.upper(), upper):
            return pattern
    return None


def is_ca_bundle(name: str) -> bool:
    """True if variable ``name`` names a certificate bundle or folder (not a credential)."""
    upper = name.upper()
    if upper in CA_BUNDLE_NAMES:
        return True
    if any(part in upper for part in SCRUB_SUBSTRINGS) or upper.endswith(SCRUB_SUFFIXES):
        return False  # SSL_CERT_PASSWORD, CA_CERT_PRIVATE_KEY: a credential beside a bundle
    return any(part in upper for part in _CA_PARTS)


def strip_url_passwords(value: str) -> str:
    """``value`` with the password of every URL in it removed (see the module docstring)."""
    if "://" not in value or "@" not in value:
        return value

    def drop(m: "re.Match") -> str:
        user, colon, _ = m.group("info").partition(":")
        if not colon and len(user) < 20:
            return m.group(0)  # a plain user name, as in ssh://git@host
        if not colon or not user or len(user) >= 20:
            return m.group("scheme")  # no user left, or the user part is itself a token
        return m.group("scheme") + user + "@"

    return _URL_USERINFO.sub(drop, value)


class ChildEnv:
    """What :func:`build_env` made: ``env`` (the child's variables) and, by name only,
    what happened to the others: ``scrubbed`` (removed by a rule), ``passed`` (a rule
    matched but they were let through), ``stripped`` (kept with a URL password removed),
    ``dropped`` (left out by the allowlist), ``mode`` and ``kept_all``."""

    __slots__ = ("dropped", "env", "kept_all", "mode", "passed", "scrubbed", "stripped")

    def __init__(self, env, scrubbed, passed, stripped, dropped, mode, kept_all):
        self.env = env
        self.scrubbed = scrubbed
        self.passed = passed
        self.stripped = stripped
        self.dropped = dropped
        self.mode = mode
        self.kept_all = kept_all

    def facts(self) -> dict:
        """The run.started receipt's ``env`` object (names only)."""
        out = {"scrubbed": self.scrubbed, "passed": self.passed, "kept_all": self.kept_all}
        if self.stripped:
            out["url_passwords_removed"] = self.stripped
        if self.mode != "scrub":
            out["mode"] = self.mode
            out["dropped"] = len(self.dropped)
        return out


def build_env(env: dict, extra_patterns=(), pass_names=(), keep: bool = False, mode: str = "scrub") -> ChildEnv:
    """Build the child's environment from ``env`` (which is not changed); see the module
    docstring for the rules of each ``mode`` (``"scrub"`` or ``"allow"``). Only names are
    reported, never values."""
    extra = tuple(extra_patterns)
    passes = tuple(p.upper() for p in pass_names)
    allow = tuple(p.upper() for p in ALLOW_BASE)
    child = {}
    scrubbed, passed, stripped, dropped = [], [], [], []
    for name, value in env.items():
        upper = name.upper()
        let_through = keep or any(_glob(p, upper) for p in passes)
        rule = scrub_rule(name, extra)
        if mode == "allow" and not let_through and not upper.startswith(NEVER_SCRUBBED_PREFIX):
            if rule is not None:
                scrubbed.append(name)
                continue
            if not any(_glob(p, upper) for p in allow):
                dropped.append(name)
                continue
        if rule is None:
            if not let_through and not upper.startswith(NEVER_SCRUBBED_PREFIX):
                clean = strip_url_passwords(value)
                if clean != value:
                    stripped.append(name)
                    value = clean
            child[name] = value
        elif let_through:
            child[name] = value
            passed.append(name)
        else:
            scrubbed.append(name)
    for names in (scrubbed, passed, stripped, dropped):
        names.sort()
    return ChildEnv(child, scrubbed, passed, stripped, dropped, mode, bool(keep))


def scrub_env(env: dict, extra_patterns=(), pass_names=(), keep: bool = False):
    """``(child_env, scrubbed, passed)`` of :func:`build_env` in scrub mode."""
    built = build_env(env, extra_patterns, pass_names, keep)
    return built.env, built.scrubbed, built.passed


def notice(facts: dict):
    """The one-line notice about the child's environment for the user, or None."""
    parts = []
    if facts.get("scrubbed"):
        parts.append("kept from the agent: " + " ".join(facts["scrubbed"]))
    if facts.get("url_passwords_removed"):
        parts.append("password removed from the URL in: " + " ".join(facts["url_passwords_removed"]))
    if facts.get("mode") == "allow" and facts.get("dropped"):
        parts.append(f"env allowlist: {facts['dropped']} other variables left out")
    if not parts:
        return None
    return "; ".join(parts) + " (--pass-env NAME to let one through; env_notice = false quiets this)"


def passed_secrets(env: dict, passed) -> dict:
    """``{name: value}`` of the variables let through despite a scrub rule whose values are
    worth masking in output: at least :data:`PASSED_MASK_MIN` characters and not a path."""
    out = {}
    for name in passed:
        value = env.get(name)
        if value and len(value) >= PASSED_MASK_MIN and not value.startswith(("/", "~/")):
            out[name] = value
    return out


def _glob(pattern: str, name: str) -> bool:
    """Match ``name`` against ``pattern`` where ``*`` stands for any run of characters."""
    if "*" not in pattern:
        return pattern == name
    parts = pattern.split("*")
    head, tail = parts[0], parts[-1]
    if len(head) + len(tail) > len(name) or not name.startswith(head) or not name.endswith(tail):
        return False
    pos, end = len(head), len(name) - len(tail)
    for part in parts[1:-1]:
        found = name.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def git_identity(agent: str, run_id: str, name=None, email=None) -> dict:
    """Git author and committer variables for a run, so its commits are the agent's.

    Defaults: name ``"<agent> (agentsess)"``, email ``"<agent>+<run_id>@agentsess.invalid"``
    (the agent part reduced to ``[A-Za-z0-9._-]``). The run id is thus recoverable from
    any commit's author or committer email (see :func:`run_id_from_email`), and the
    ``.invalid`` domain (RFC 2606) can never reach a real mailbox. ``name`` and ``email``
    from a profile replace the defaults.
    """
    if not run_id or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in run_id):
        raise ValueError("run id must be [A-Za-z0-9._-]+")
    if name is None:
        name = f"{agent} (agentsess)"
    if email is None:
        email = f"{_email_local(agent)}+{run_id}@{GIT_EMAIL_DOMAIN}"
    for what, value in (("name", name), ("email", email)):
        if not value.strip() or any(c in value for c in "<>\n\r\0"):
            raise AgentsessError(
                f"invalid git {what} {value!r}: it must be non-empty without <, > or line breaks",
                USAGE,
            )
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def run_id_from_email(email: str):
    """The run id in an email made by :func:`git_identity`, or None."""
    local, sep, domain = email.strip().strip("<>").rpartition("@")
    if not sep or domain.lower() != GIT_EMAIL_DOMAIN or "+" not in local:
        return None
    return local.rpartition("+")[2] or None


def _email_local(agent: str) -> str:
    local = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in agent)
    return local.strip(".") or "agent"
