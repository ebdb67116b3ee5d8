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
