"""GitHub App installation tokens: the schema, the scope mapping, the app JWT, git's answers.

Pure (no sockets): :mod:`agentsess.edges.github` makes the HTTP calls.

Scopes map onto an installation token's ``permissions`` and ``repositories``:

- ``github:<permission>:<level>`` (``github:contents:write``, ``github:issues:read``): that
  permission on the profile's ``repositories`` (every repository of the installation when the
  profile names none);
- ``github:<owner>/<repo>:<permission>:<level>``: that permission on that repository alone;
- ``github:*`` (or ``github:<owner>/<repo>:*``): every permission the installation has;
  ``github:<permission>:*`` is ``write``.

Other ``github:`` scopes (``github:pr:create``) are the guard's and mint nothing. One
installation token carries one set of permissions for all its repositories, so scopes that
would give a repository more than they name (``github:contents:read`` on the profile's
repositories plus ``github:acme/other:contents:write``) are refused rather than widened.
"""

import time
from dataclasses import dataclass
from urllib.parse import unquote

from agentsess.core.credentials.services import SpecError, parse_upstream

KEYS = ("app_id", "installation_id", "private_key_secret", "api_url", "git_url", "repositories", "ca_file")
DEFAULTS: dict[str, object] = {"api_url": "https://api.github.com", "git_url": "https://github.com", "repositories": [], "ca_file": None}
LEVELS = ("read", "write", "admin")
ALL = "*"  # the installation's every permission
GIT_USER = "x-access-token"
API_SERVICE = "github"
GIT_SERVICE = "github-git"
JWT_LIFETIME = 540  # iat is 60 s back: the JWT spans 10 minutes, GitHub's maximum
TOKEN_LIFETIME = 3600  # GitHub's, fixed
REMINT_MARGIN = 300  # re-mint this long before a token ends, for runs that outlive it

_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_PERMISSION = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class ScopeError(Exception):
    """The run's github: scopes cannot be one installation token; ``str()`` says why."""


def is_repo(text) -> bool:
    """``owner/name`` as GitHub spells it (compared lowercased)."""
    if not isinstance(text, str) or text.count("/") != 1 or len(text) > 140:
        return False
    owner, name = text.lower().split("/")
    return (
        bool(owner) and bool(name) and _NAME.issuperset(owner) and _NAME.issuperset(name)
        and name not in (".", "..") and not owner.startswith((".", "-"))
    )


def check_table(table: dict) -> dict:
    """Validate ``[profiles.P.providers.github]``; returns it with every key present."""
    for key in table:
        if key not in KEYS:
            raise SpecError(f".{key}", f"unknown key (valid keys: {', '.join(KEYS)})")
    out = {**DEFAULTS, **table}
    for key in ("app_id", "installation_id"):
        if key not in table:
            raise SpecError("", f"missing {key} (the GitHub App's {key.replace('_', ' ')}, a number)")
        if type(out[key]) is not int or out[key] <= 0:
            raise SpecError(f".{key}", "expected a positive integer")
    secret = out.get("private_key_secret")
    if not isinstance(secret, str) or not secret or not secret.isprintable():
        raise SpecError(".private_key_secret", 'expected a secret name like "github-app-key" (the App\'s PEM, '
                        "stored with `agentsess secret set`)")
    for key in ("api_url", "git_url"):
        try:
            up = parse_upstream(out[key])
        except SpecError as e:
            raise SpecError(f".{key}", e.message) from None
        out[key] = f"{up.scheme}://{up.authority}{up.base_path}"
    repos = out["repositories"]
    if not isinstance(repos, list) or not all(is_repo(r) for r in repos):
        raise SpecError(".repositories", 'expected a list of repositories like ["acme/app"]')
    out["repositories"] = sorted({r.lower() for r in repos})
    if len({r.split("/")[0] for r in out["repositories"]}) > 1:
        raise SpecError(".repositories", "repositories of one installation belong to one account")
    ca = out["ca_file"]
    if ca is not None and (not isinstance(ca, str) or not ca.startswith("/") or "\0" in ca):
        raise SpecError(".ca_file", "expected an absolute path to a PEM file")
    return out


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What one installation token is asked for, and which scope gave each repository what."""

    repositories: tuple[str, ...]  # owner/name, lowercase; () = every repository of the installation
    permissions: tuple[tuple[str, str], ...]  # ((name, level), ...) sorted; () = all (github:*)
    grants: tuple[tuple[str, str | None, str, str], ...]  # (scope, repo or None, permission, level)

    def body(self) -> dict:
        """The JSON body of ``POST /app/installations/{id}/access_tokens``."""
        out: dict = {}
        if self.repositories:
            out["repositories"] = [r.split("/")[1] for r in self.repositories]
        if self.permissions:
            out["permissions"] = dict(self.permissions)
        return out

    def covers_repo(self, repo: str) -> bool:
        return not self.repositories or repo.lower() in self.repositories

    def allows(self, repo: str, permission: str, level: str) -> bool:
        """True if the token may ``level`` on ``permission`` of ``repo`` (what the scopes say)."""
        if not self.covers_repo(repo):
            return False
        if not self.permissions:
            return True
        have = dict(self.permissions).get(permission)
        return have is not None and LEVELS.index(have) >= LEVELS.index(level)

    def needed_scope(self, repo: str, permission: str, level: str, defaults: tuple[str, ...]) -> str:
        """The scope that would allow it, for a message: the general one for a default repository."""
        if repo.lower() in defaults:
            return f"github:{permission}:{level}"
        return f"github:{repo.lower()}:{permission}:{level}"


def _parse(scope: str) -> tuple[str | None, str, str] | None:
    """(repo or None, permission, level) of a token scope, or None for a scope that mints nothing."""
    parts = scope.split(":")
    if parts[0] != "github":
        return None
    if parts == ["github", "*"]:
        return None, ALL, ALL
    repo = None
    if len(parts) >= 2 and "/" in parts[1]:
        repo, parts = parts[1], ["github"] + parts[2:]
        if not is_repo(repo):
            return None
        if parts == ["github", "*"]:
            return repo, ALL, ALL
    if len(parts) != 3:
        return None
    permission, level = parts[1], parts[2]
    if not permission or not _PERMISSION.issuperset(permission):
        return None
    if level == "*":
        level = "write"
    if level not in LEVELS:
        return None
    return repo, permission, level


def token_request(scopes, default_repos) -> TokenRequest | None:
    """The installation token a run's scopes ask for; None when they ask for none.

    Raises ScopeError when one token would give a repository more than its scopes say.
    """
    grants = []
    general: dict[str, str] = {}
    specific: dict[str, dict[str, str]] = {}
    for scope in scopes:
        parsed = _parse(scope)
        if parsed is None:
            continue
        repo, permission, level = parsed
        grants.append((scope, repo, permission, level))
        table = general if repo is None else specific.setdefault(repo, {})
        if permission == ALL or table.get(ALL):
            table.clear()
            table[ALL] = ALL
        elif LEVELS.index(level) > LEVELS.index(table.get(permission, "read")) or permission not in table:
            table[permission] = level
    if not grants:
        return None
    defaults = tuple(default_repos)
    repos: dict[str, dict[str, str]] = {}  # what the scopes give each repository
    if general:
        if defaults:
            for repo in defaults:
                repos[repo] = dict(general)
        elif specific:
            raise ScopeError(
                "the github: scopes without a repository apply to every repository of the installation "
                "(the profile names no repositories); a repository's own scopes cannot narrow that"
            )
    for repo, table in specific.items():
        merged = dict(repos.get(repo, {}))
        if ALL in table or ALL in merged:
            merged = {ALL: ALL}
        else:
            for permission, level in table.items():
                if LEVELS.index(level) > LEVELS.index(merged.get(permission, "read")) or permission not in merged:
                    merged[permission] = level
        repos[repo] = merged
    wanted = general if not repos else None
    for table in repos.values():
        if wanted is None:
            wanted = table
        elif table != wanted:
            shown = {r: " ".join(f"{p}:{lv}" for p, lv in sorted(t.items())) for r, t in sorted(repos.items())}
            raise ScopeError(
                "one installation token has one set of permissions for all its repositories, and these scopes "
                "give repositories different ones (" + "; ".join(f"{r}: {s}" for r, s in shown.items())
                + "); ask for the same permissions on each repository, or use separate runs"
            )
    assert wanted is not None
    permissions = () if ALL in wanted else tuple(sorted(wanted.items()))
    return TokenRequest(tuple(sorted(repos)), permissions, tuple(grants))


def app_jwt(app_id: int, private_key_pem: str, now: float | None = None) -> str:
    """The App's own JWT (RS256, ``iss`` the App id, ``iat`` 60 s back, ``exp`` within 10 minutes)."""
    import jwt

    now = int(time.time() if now is None else now)
    try:
        return jwt.encode({"iat": now - 60, "exp": now + JWT_LIFETIME, "iss": str(app_id)}, private_key_pem,
                          algorithm="RS256")
    except (jwt.PyJWTError, ValueError, TypeError) as exc:  # never the key's text in the message
        raise ValueError(type(exc).__name__) from None


def explain_refusal(request: TokenRequest, installation: dict | None, installation_id: int) -> str:
    """Why GitHub answered 422, naming the scopes the installation does not grant."""
    head = f"github: installation {installation_id} does not grant"
    if installation:
        granted = installation.get("permissions") or {}
        missing = []
        for scope, _repo, permission, level in request.grants:
            if permission == ALL:
                continue
            have = granted.get(permission)
            if have not in LEVELS or LEVELS.index(have) < LEVELS.index(level):
                missing.append(f"{scope} (it grants {permission}:{have})" if have else scope)
        if missing:
            return f"{head} {', '.join(dict.fromkeys(missing))}; narrow the run's scopes or the App's permissions"
        account = ((installation.get("account") or {}).get("login") or "").lower()
        foreign = [r for r in request.repositories if account and r.split("/")[0] != account]
        if foreign:
            return f"{head} the repositories {', '.join(foreign)} (it is installed on {account})"
    repos = ", ".join(request.repositories) or "its repositories"
    return f"{head} access to {repos} with {_shown(request)}; check the App's repository access"


def _shown(request: TokenRequest) -> str:
    return " ".join(f"{p}:{lv}" for p, lv in request.permissions) or "all its permissions"


def minted_receipt(installation_id: int, request: TokenRequest, granted: dict, expires_at: str, digest: str,
                   rotated: bool = False) -> dict:
    """The data of a provider ``credential.minted`` receipt: never the token, only its digest."""
    return {
        "provider": "github", "kind": "installation_token", "installation_id": installation_id,
        "repositories": list(request.repositories) or "all",
        "permissions": granted or dict(request.permissions),
        "scopes": [g[0] for g in request.grants], "expires_at": expires_at, "token_sha256": digest,
        "rotated": rotated,
    }


# -- git ----------------------------------------------------------------------------------


def repo_of_path(path: str) -> str | None:
    """``owner/repo`` from a git remote's path (``acme/app.git``, ``acme/app``); None if it is not one.

    Percent-encoding is refused, not decoded: the repository is judged as the upstream reads it.
    """
    if not isinstance(path, str) or "\0" in path or "\\" in path or "%" in path:
        return None
    text = path.strip("/")
    if text.endswith(".git"):
        text = text[:-4]
    return text.lower() if is_repo(text) else None


def git_need(target: str, method: str = "GET") -> tuple[str, str, str] | None:
    """(repo, permission, level) a git smart-HTTP request needs, or None for a path that is no repository.

    Only what is plainly a fetch (``git-upload-pack``, its ref advertisement, a dumb-HTTP GET)
    needs ``contents:read``; anything else, however spelled, needs ``contents:write``.
    """
    from urllib.parse import parse_qsl

    path, _, query = target.partition("?")
    parts = path.split("/")
    if len(parts) < 4 or parts[0] != "":
        return None
    repo = repo_of_path("/".join(parts[1:3]))
    if repo is None:
        return None
    rest = unquote("/".join(parts[3:]))
    services = {v.lower() for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() == "service"}
    if rest == "git-upload-pack" and method == "POST":
        fetch = True
    elif rest == "info/refs" and method in ("GET", "HEAD"):
        fetch = services <= {"git-upload-pack"}
    else:
        fetch = method in ("GET", "HEAD") and rest not in ("git-receive-pack", "info/refs")
    return repo, "contents", "read" if fetch else "write"
