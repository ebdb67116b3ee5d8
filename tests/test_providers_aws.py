"""AWS STS per run: boto3 in the child against a moto server with IAM auth enabled, through the
broker's container-credentials endpoint; what agentsess sent to STS is read off the wire by a
recording hop in front of moto (moto itself drops SourceIdentity and tags)."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from agentsess.core.credentials.providers import aws
from helpers import running_run_id, show, spawn, stderr_lines, wait_for, write_config
from helpers import agentsess as ag

PY = sys.executable
CI = os.environ.get("AGENTSESS_CI") == "1"

try:
    import boto3  # noqa: F401
    import moto  # noqa: F401
except ImportError:  # pragma: no cover
    if CI:
        raise
    pytest.skip("boto3 and moto[server] are not installed", allow_module_level=True)


class _Hop(BaseHTTPRequestHandler):
    """Records each request's form body, forwards it to moto unchanged (the Host header too)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append({k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()})
        conn = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_POST = do_GET = _handle


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    srv = subprocess.Popen([PY, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return True
        except OSError:
            return False

    wait_for(up, what="moto")
    import boto3

    url = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                       aws_secret_access_key="x")
    iam.create_user(UserName="human")
    key = iam.create_access_key(UserName="human")["AccessKey"]
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="human", PolicyName="all", PolicyDocument=json.dumps(allow_all))
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                     "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    iam.create_role(RoleName="agent", AssumeRolePolicyDocument=json.dumps(trust))  # the 4th: auth is on now
    human = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"])
    role_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                           "Action": ["s3:ListAllMyBuckets", "sts:GetCallerIdentity"]}]}
    human.put_role_policy(RoleName="agent", PolicyName="s3", PolicyDocument=json.dumps(role_policy))
    folder = tmp_path_factory.mktemp("aws")
    creds = folder / "credentials"
    creds.write_text(f"[human]\naws_access_key_id = {key['AccessKeyId']}\n"
                     f"aws_secret_access_key = {key['SecretAccessKey']}\n")
    yield url, port, str(creds), key
    srv.terminate()
    srv.wait()


@pytest.fixture
def hop(moto_url):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hop)
    server.daemon_threads = True
    server.seen = []
    server.moto_port = moto_url[1]
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def configure(hop, scopes, extra=""):
    write_config(f"""
[profiles.ops]
default_scopes = {json.dumps(scopes)}
{extra}
[profiles.ops.providers.aws]
role_arn = "arn:aws:iam::123456789012:role/agent"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{hop.server_address[1]}"
source_credentials = "profile:human"
""")


CHILD = """
import os, sys, time, boto3
from botocore.config import Config
kw = dict(endpoint_url=os.environ["MOTO"], config=Config(retries={"max_attempts": 1}))
print("id", boto3.client("sts", **kw).get_caller_identity()["Arn"], flush=True)
print("buckets", len(boto3.client("s3", **kw).list_buckets()["Buckets"]), flush=True)
try:
    boto3.client("s3", **kw).create_bucket(Bucket="nope")
except Exception as e:
    print("create", type(e).__name__, flush=True)
"""


def run_env(moto_url, **extra):
    return {"AWS_SHARED_CREDENTIALS_FILE": moto_url[2], "MOTO": moto_url[0], "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None, **extra}


def test_boto3_in_the_child_gets_sts_credentials_through_the_container_endpoint(moto_url, hop, agentsess_home):
    configure(hop, ["aws:s3:listallmybuckets", "aws:sts:getcalleridentity", "fs:write"])
    proc = ag("run", "-p", "ops", "--", PY, "-c", "import os; print(sorted(k for k in os.environ if k.startswith('AWS')))"
              + "\n" + CHILD, env=run_env(moto_url), check=0)
    out = proc.stdout.decode()
    assert "assumed-role/agent/agentsess-run_" in out, (out, proc.stderr.decode())
    assert "buckets 0" in out and "create AccessDenied" in out  # the role's own policy, enforced by moto
    names = eval(out.splitlines()[0])  # noqa: S307 - our own child's output
    assert "AWS_SHARED_CREDENTIALS_FILE" not in names and "AWS_ACCESS_KEY_ID" not in names
    assert {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_REGION"} <= set(names)
    (sent,) = [s for s in hop.seen if s.get("Action") == "AssumeRole"]
    run = show()
    assert sent["RoleSessionName"] == f"agentsess-{run['id']}"
    assert sent["SourceIdentity"] == run["user"] + "@" + run["host"]
    assert 3500 < int(sent["DurationSeconds"]) <= 3600  # what is left of the run, never more
    tags = {sent[f"Tags.member.{i}.Key"]: sent[f"Tags.member.{i}.Value"] for i in (1, 2)}
    assert tags == {"agentsess-run": run["id"], "agentsess-agent": "ops"}
    assert json.loads(sent["Policy"])["Statement"][0]["Action"] == ["s3:listallmybuckets", "sts:getcalleridentity"]
    (minted,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.minted" and r["data"].get("provider")]
    assert minted["provider"] == "aws" and minted["source_identity"] == sent["SourceIdentity"]
    assert "SecretAccessKey" not in json.dumps(minted) and moto_url[3]["SecretAccessKey"] not in json.dumps(run)
    (revoked,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.revoked"]
    assert revoked["providers"][0]["provider"] == "aws" and revoked["providers"][0]["result"] == "endpoint closed"


def test_the_endpoint_advertises_at_most_ten_minutes_and_wants_its_token(moto_url, hop):
    configure(hop, ["aws:s3:listallmybuckets"])
    script = ("import json, os, time, urllib.request\n"
              "u = os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI']\n"
              "r = urllib.request.Request(u, headers={'Authorization': os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']})\n"
              "d = json.load(urllib.request.urlopen(r))\n"
              "t = time.mktime(time.strptime(d['Expiration'], '%Y-%m-%dT%H:%M:%SZ')) - time.timezone\n"
              "print('ahead', int(t - time.time()))\n"
              "try:\n"
              "    urllib.request.urlopen(urllib.request.Request(u, headers={'Authorization': 'guess'}))\n"
              "except Exception as e:\n"
              "    print('guess', e.code)\n")
    out = ag("run", "-p", "ops", "--", PY, "-c", script, env=run_env(moto_url), check=0).stdout.decode()
    ahead = int(out.split("ahead ")[1].split()[0])
    assert 0 < ahead <= 600 and "guess 401" in out


def test_after_revoke_the_next_boto3_call_fails(moto_url, hop, tmp_path):
    configure(hop, ["aws:sts:getcalleridentity"], extra='on_revoke = "keep"')
    go = tmp_path / "go"
    script = ("import os, time, boto3\n"
              "c = boto3.client('sts', endpoint_url=os.environ['MOTO'])\n"
              "print('before', c.get_caller_identity()['Arn'], flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
              "try:\n"
              "    c.get_caller_identity(); print('after: still works', flush=True)\n"
              "except Exception as e:\n"
              "    print('after', type(e).__name__, flush=True)\n")
    proc = spawn("run", "-p", "ops", "--", PY, "-c", script, env=run_env(moto_url), stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        run_id = running_run_id()
        first = proc.stdout.readline()
        ag("revoke", run_id, check=0)
        go.write_text("")
        out, err = proc.communicate(timeout=60)
        out = first + out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"before arn:aws:sts::" in out and b"after: still works" not in out, (out, err)
    assert b"after " in out
    run = show(run_id)
    (revoked,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.revoked"]
    assert revoked["cause"] == "revoked" and revoked["providers"][0]["provider"] == "aws"


def test_an_oversized_session_policy_refuses_the_run_in_one_line(moto_url, hop):
    scopes = [f"aws:s3:action{i:03d}with-a-rather-long-name" for i in range(80)]
    configure(hop, scopes)
    (line,) = stderr_lines(ag("run", "-p", "ops", "--", "true", env=run_env(moto_url), check=125))
    assert "session policy from 80 aws: scopes is" in line and "STS allows 2048" in line
    assert not hop.seen


def test_assume_role_refused_by_aws_is_one_line(moto_url, hop):
    configure(hop, ["aws:sts:getcalleridentity"])
    (line,) = stderr_lines(ag("run", "-p", "ops", "--", "true", env=run_env(moto_url, AWS_SHARED_CREDENTIALS_FILE=os.devnull),
                              check=125))
    assert line.startswith("agentsess: error: profile 'ops': aws: AssumeRole of arn:aws:iam::123456789012:role/agent")


def test_policy_generator():
    assert aws.session_policy(["fs:write", "github:contents:read"]) is None and aws.actions([]) is None
    assert aws.session_policy(["aws:*", "aws:s3:getobject"]) is None
    policy = json.loads(aws.session_policy(["aws:s3:getobject", "aws:s3:*", "aws:s3:getobject", "aws:ec2"]))
    assert policy == {"Version": "2012-10-17",
                      "Statement": [{"Effect": "Allow", "Action": ["s3:*", "s3:getobject"], "Resource": "*"}]}
    assert aws.actions(["aws:*3:x", "aws:s3:get object", "aws:s3:"]) is None
    with pytest.raises(aws.ScopeError):
        aws.session_policy([f"aws:svc:a{i:04d}" for i in range(300)])
    params = aws.assume_role_params({"role_arn": "arn:aws:iam::1:role/r"}, "run_x", "my agent!", "me@host", 10, None)
    assert params["DurationSeconds"] == 900 and "Policy" not in params
    assert params["Tags"][1]["Value"] == "my-agent-"
    served = aws.served({"access_key_id": "A", "secret_access_key": "S", "session_token": "T",
                         "expiration": 2_000_000_000}, now=1_000_000_000)
    assert served["Expiration"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_000_000_600))


def test_deny_on_revoke_puts_a_deny_for_the_run_s_session_tag(moto_url, hop, tmp_path):
    import boto3

    configure(hop, ["aws:s3:listallmybuckets"], extra='on_revoke = "keep"')
    path = os.environ["AGENTSESS_CONFIG"]
    with open(path, "a") as fh:
        fh.write("deny_on_revoke = true\n")
    go = tmp_path / "go"
    script = ("import os, time, boto3\n"
              "c = boto3.client('s3', endpoint_url=os.environ['MOTO'])\n"
              "print('before', len(c.list_buckets()['Buckets']), flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n")
    proc = spawn("run", "-p", "ops", "--", PY, "-c", script, env=run_env(moto_url), stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        run_id = running_run_id()
        assert proc.stdout.readline().startswith(b"before")
        ag("revoke", run_id, check=0)
        run = wait_for(lambda: (lambda r: r if any(x["type"] == "credential.revoked" for x in r["receipts"])
                                else None)(show(run_id)), what="the revocation receipt")
        go.write_text("")
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (revoked,) = [r["data"] for r in run["receipts"] if r["type"] == "credential.revoked"]
    (entry,) = revoked["providers"]
    assert entry["result"] == "denied", entry
    assert entry["deny_policy"] == f"agentsess-revoked-{run_id}" and entry["latency"] >= 0
    key = moto_url[3]
    iam = boto3.client("iam", endpoint_url=moto_url[0], region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                       aws_secret_access_key=key["SecretAccessKey"])
    doc = iam.get_role_policy(RoleName="agent", PolicyName=entry["deny_policy"])["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert doc["Statement"][0]["Effect"] == "Deny"
    assert doc["Statement"][0]["Condition"] == {"StringEquals": {"aws:PrincipalTag/agentsess-run": run_id}}
