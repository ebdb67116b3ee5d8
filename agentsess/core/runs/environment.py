"""The child's environment: the human's credentials scrubbed out, the agent's git identity.

Built-in scrub list. A variable is removed from the child's environment when its name,
compared case-insensitively, matches any of these rules:

- exact names: ``GH_TOKEN``, ``GITHUB_TOKEN``, ``GITLAB_TOKEN``, ``NPM_TOKEN``,
  ``GOOGLE_APPLICATION_CREDENTIALS``, ``SSH_AUTH_SOCK``, ``SSH_AGENT_PID``,
  ``GPG_AGENT_INFO``, the AWS credential and profile variables (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_SECURITY_TOKEN``,
  ``AWS_PROFILE``, ``AWS_DEFAULT_PROFILE``, ``AWS_SHARED_CREDENTIALS_FILE``,
  ``AWS_CONFIG_FILE``, ``AWS_WEB_IDENTITY_TOKEN_FILE``, ``AWS_ROLE_ARN``,
  ``AWS_ROLE_SESSION_NAME``, ``AWS_CREDENTIAL_EXPIRATION``), and variables that point
  at the human's credential stores or helpers: ``KUBECONFIG``, ``DOCKER_CONFIG``,
  ``NETRC``, ``KRB5CCNAME``, ``GIT_ASKPASS``, ``SSH_ASKPASS``;
- prefixes: ``AWS_CONTAINER_CREDENTIALS_``, ``AWS_VAULT``, ``AZURE_``, ``CLOUDSDK_``,
  ``OP_SESSION_`` (1Password CLI sessions), ``VSCODE_GIT_`` (VS Code's git credential
  bridge);
- substrings: ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``API_KEY``, ``APIKEY``,
  ``CREDENTIAL``, ``PRIVATE_KEY``.

``AGENTSESS_*`` variables are never scrubbed. A profile adds its own patterns
(``extra_patterns``) and lets named variables through (``pass_names``); both take exact
names or ``*`` wildcards, compared case-insensitively.
"""

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
        "NETRC",
        "KRB5CCNAME",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
    }
)
SCRUB_PREFIXES = (
    "AWS_CONTAINER_CREDENTIALS_",
    "AWS_VAULT",
    "AZURE_",
    "CLOUDSDK_",
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
NEVER_SCRUBBED_PREFIX = "AGENTSESS_"

GIT_EMAIL_DOMAIN = "agentsess.invalid"


def scrub_rule(name: str, extra_patterns=()):
    """The rule that scrubs variable ``name`` (``"GH_TOKEN"``, ``"AZURE_*"``,
    ``"*TOKEN*"`` or the matching extra pattern), or None if it is kept."""
    upper = name.upper()
    if upper.startswith(NEVER_SCRUBBED_PREFIX):
        return None
    if upper in SCRUB_NAMES:
        return upper
    for prefix in SCRUB_PREFIXES:
        if upper.startswith(prefix):
            return prefix + "*"
    for part in SCRUB_SUBSTRINGS:
        if part in upper:
            return "*" + part + "*"
    for pattern in extra_patterns:
        if _glob(pattern.upper(), upper):
            return pattern
    return None


def scrub_env(env: dict, extra_patterns=(), pass_names=(), keep: bool = False):
    """Build the child's environment from ``env`` (which is not changed).

    Returns ``(child_env, scrubbed, passed)``: ``scrubbed`` are the sorted names removed;
    ``passed`` the sorted names that matched a scrub rule but were let through, because
    they match ``pass_names`` or because ``keep`` is true (nothing is scrubbed then).
    Only names are returned, never values.
    """
    extra = tuple(extra_patterns)
    passes = tuple(p.upper() for p in pass_names)
    child = {}
    scrubbed = []
    passed = []
    for name, value in env.items():
        if scrub_rule(name, extra) is None:
            child[name] = value
        elif keep or any(_glob(p, name.upper()) for p in passes):
            child[name] = value
            passed.append(name)
        else:
            scrubbed.append(name)
    scrubbed.sort()
    passed.sort()
    return child, scrubbed, passed


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
