"""AWS STS credentials per run: the schema, the session policy from ``aws:`` scopes, the
AssumeRole parameters, and what the container-credentials endpoint answers. Pure.

Scopes ``aws:<service>:<action>`` (``aws:s3:getobject``, ``aws:s3:*``) become one inline
session policy allowing those actions (IAM action names are case-insensitive); ``aws:*``
means no session policy (the role's own permissions). A run without ``aws:`` scopes gets no
AWS credentials.
"""

import json
import time

from agentsess.core.credentials.services import SpecError, parse_upstream

KEYS = ("role_arn", "region", "endpoint_url", "source_credentials", "ca_file", "deny_on_revoke")
POLICY_LIMIT = 2048  # STS: an inline session policy of at most 2,048 characters
MIN_DURATION = 900
MAX_DURATION = 43200
SERVED_FOR = 600  # the endpoint advertises an Expiration at most this far ahead
_ACTION = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_*")
_IDENTITY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-")


class ScopeError(Exception):
    """The run's aws: scopes cannot be one session policy; ``str()`` says why."""


def check_table(table: dict) -> dict:
    for key in table:
        if key not in KEYS:
            raise SpecError(f".{key}", f"unknown key (valid keys: {', '.join(KEYS)})")
    out = {"endpoint_url": None, "source_credentials": "default", "ca_file": None, "deny_on_revoke": False, **table}
    if type(out["deny_on_revoke"]) is not bool:
        raise SpecError(".deny_on_revoke", "expected true or false")
    arn = out.get("role_arn")
    if not isinstance(arn, str) or not arn.startswith("arn:") or arn.count(":") < 5 or ":role/" not in arn:
        raise SpecError(".role_arn", 'expected a role ARN like "arn:aws:iam::123456789012:role/agent"')
    region = out.get("region")
    if not isinstance(region, str) or not region or not _ACTION.issuperset(region) or "*" in region:
        raise SpecError(".region", 'expected a region like "eu-west-1"')
    if out["endpoint_url"] is not None:
        try:
            parse_upstream(out["endpoint_url"])
        except SpecError as e:
            raise SpecError(".endpoint_url", e.message) from None
    source = out["source_credentials"]
    if not isinstance(source, str) or not (source == "default" or (source.startswith("profile:") and len(source) > 8)):
        raise SpecError(".source_credentials", 'expected "default" or "profile:NAME" (how agentsess itself calls STS)')
    ca = out["ca_file"]
    if ca is not None and (not isinstance(ca, str) or not ca.startswith("/")):
        raise SpecError(".ca_file", "expected an absolute path to a PEM file")
    return out


def actions(scopes) -> list[str] | None:
    """IAM actions named by the run's ``aws:`` scopes; ``["*"]`` for ``aws:*``; None for none."""
    out = []
    for scope in scopes:
        parts = scope.split(":")
        if parts[0] != "aws":
            continue
        if parts == ["aws", "*"]:
            return ["*"]
        if len(parts) != 3 or not parts[1] or not parts[2] or "*" in parts[1]:
            continue
        if not _ACTION.issuperset(parts[1]) or not _ACTION.issuperset(parts[2]):
            continue
        out.append(f"{parts[1]}:{parts[2]}")
    return sorted(set(out)) or None


def session_policy(scopes) -> str | None:
    """The inline session policy (compact JSON), None for ``aws:*``; ScopeError when too large."""
    acts = actions(scopes)
    if acts is None or acts == ["*"]:
        return None
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": acts, "Resource": "*"}]},
                        separators=(",", ":"))
    if len(policy) > POLICY_LIMIT:
        raise ScopeError(
            f"the session policy from {len(acts)} aws: scopes is {len(policy)} characters; STS allows "
            f"{POLICY_LIMIT}: use wildcards such as aws:s3:* or fewer actions")
    return policy


def _identity(text: str, limit: int = 64) -> str:
    return "".join(c if c in _IDENTITY else "-" for c in text)[:limit] or "-"


def assume_role_params(cfg: dict, run_id: str, agent: str, human: str, seconds: int, policy: str | None) -> dict:
    """The parameters of ``sts:AssumeRole`` for one run."""
    params = {
        "RoleArn": cfg["role_arn"],
        "RoleSessionName": _identity(f"agentsess-{run_id}"),
        "SourceIdentity": _identity(human),
        "DurationSeconds": max(MIN_DURATION, min(MAX_DURATION, int(seconds))),
        "Tags": [{"Key": "agentsess-run", "Value": _identity(run_id, 256)},
                 {"Key": "agentsess-agent", "Value": _identity(agent, 256)}],
    }
    if policy is not None:
        params["Policy"] = policy
    return params


def served(credentials: dict, now: float | None = None) -> dict:
    """The container endpoint's answer: the STS credentials, with an Expiration at most 10 minutes ahead."""
    now = time.time() if now is None else now
    real = credentials["expiration"]
    shown = min(real, now + SERVED_FOR)
    from agentsess.timefmt import rfc3339

    return {
        "AccessKeyId": credentials["access_key_id"], "SecretAccessKey": credentials["secret_access_key"],
        "Token": credentials["session_token"], "Expiration": rfc3339(shown),
    }


def minted_receipt(params: dict, credentials: dict, digest: str) -> dict:
    from agentsess.timefmt import rfc3339

    return {
        "provider": "aws", "kind": "sts_assume_role", "role_arn": params["RoleArn"],
        "role_session_name": params["RoleSessionName"], "source_identity": params["SourceIdentity"],
        "tags": {t["Key"]: t["Value"] for t in params["Tags"]}, "duration_seconds": params["DurationSeconds"],
        "session_policy": json.loads(params["Policy"]) if "Policy" in params else None,
        "expires_at": rfc3339(credentials["expiration"]), "access_key_id": credentials["access_key_id"],
        "secret_sha256": digest,
    }
