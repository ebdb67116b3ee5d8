"""AWS STS as agentsess itself calls it (boto3): ``AssumeRole`` for one run.

Only the supervisor calls this, with the credentials named by the provider's
``source_credentials`` (``default``: boto3's own chain in the supervisor's environment, or
``profile:NAME``); the child never gets those. boto3 is optional: ``pip install boto3``.
"""


class AwsError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def assume_role(cfg: dict, params: dict) -> dict:
    """``sts:AssumeRole``: {access_key_id, secret_access_key, session_token, expiration (epoch)}."""
    import importlib

    try:  # imported by name: boto3 is optional, and untyped
        boto3 = importlib.import_module("boto3")
        errors = importlib.import_module("botocore.exceptions")
        BotoCoreError, ClientError = errors.BotoCoreError, errors.ClientError
    except ImportError:
        raise AwsError("providers.aws needs boto3 in agentsess's environment (pip install boto3)") from None
    source = cfg["source_credentials"]
    try:
        session = boto3.Session(profile_name=source[len("profile:"):] if source.startswith("profile:") else None,
                                region_name=cfg["region"])
        client = session.client("sts", endpoint_url=cfg.get("endpoint_url"), verify=cfg.get("ca_file") or None)
        answer = client.assume_role(**params)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise AwsError(f"aws: AssumeRole of {params['RoleArn']} failed: {err.get('Code')}: "
                       f"{str(err.get('Message') or '')[:200]}") from None
    except BotoCoreError as exc:
        raise AwsError(f"aws: AssumeRole of {params['RoleArn']} failed: {type(exc).__name__}") from None
    creds = answer["Credentials"]
    return {
        "access_key_id": creds["AccessKeyId"], "secret_access_key": creds["SecretAccessKey"],
        "session_token": creds["SessionToken"], "expiration": creds["Expiration"].timestamp(),
    }


def deny_session(cfg: dict, run_id: str) -> str:
    """The provider-side revoke IAM allows: an inline deny on the role for sessions tagged with
    this run (``aws:PrincipalTag/agentsess-run``). Returns the policy's name."""
    import importlib
    import json

    try:
        boto3 = importlib.import_module("boto3")
        errors = importlib.import_module("botocore.exceptions")
    except ImportError:
        raise AwsError("providers.aws needs boto3 in agentsess's environment (pip install boto3)") from None
    role = cfg["role_arn"].rsplit("/", 1)[-1]
    name = f"agentsess-revoked-{run_id}"[:128]
    document = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/agentsess-run": run_id}},
    }]}
    source = cfg["source_credentials"]
    try:
        session = boto3.Session(profile_name=source[len("profile:"):] if source.startswith("profile:") else None,
                                region_name=cfg["region"])
        client = session.client("iam", endpoint_url=cfg.get("endpoint_url"), verify=cfg.get("ca_file") or None)
        client.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    except errors.ClientError as exc:
        err = exc.response.get("Error", {})
        raise AwsError(f"PutRolePolicy on {role} failed: {err.get('Code')}: {str(err.get('Message') or '')[:200]}") \
            from None
    except errors.BotoCoreError as exc:
        raise AwsError(f"PutRolePolicy on {role} failed: {type(exc).__name__}") from None
    return name
