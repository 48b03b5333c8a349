#!/usr/bin/env python3
"""The emulator's STS and CloudWatch Query endpoints, driven by an SDK not
written here: Debian's python3-botocore (whose CloudWatch model speaks the
Query protocol). Starts the real function-url-emulator binary on loopback
ports, then:
  - STS AssumeRoleWithWebIdentity (unsigned) issues credentials; a token the
    emulator does not accept is refused with InvalidIdentityToken;
  - STS AssumeRole and GetCallerIdentity, SigV4-signed by botocore;
  - CloudWatch GetMetricData over the Query protocol, signed with the issued
    session credentials, returns exactly the invocations made;
  - a forged session token and a missing signature are refused;
  - a Function URL with auth AWS_IAM accepts a GET that botocore's SigV4
    signer signed (service "lambda") with AssumeRole credentials of a
    per-target role, refuses it unsigned or with another role's altered
    secret, and GET /_emulator/sessions records which role's session
    signed it (what the agent's end-to-end test reads).

Usage: botocore_test.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/canary"
CONFIG = """
regions:
  - name: us-east-1
  - name: eu-west-1
    auth: AWS_IAM
listen_host: 127.0.0.1
monitoring_auth: AWS_IAM
credentials:
  - access_key_id: AKIDBOTOCORE
    secret_access_key: botocore-secret
metrics_period: 1s
identity:
  web_identity_tokens: [good-token]
  credential_lifetime: 900s
"""


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def expect_error(code, fn):
    try:
        fn()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        if got != code:
            fail(f"expected {code}, got {got}: {e}")
        return
    fail(f"expected {code}, the call succeeded")


def main():
    build = sys.argv[1]
    # Nothing from the machine's own AWS setup.
    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "emulator.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        emu = subprocess.Popen(
            [os.path.join(build, "emulator", "function-url-emulator"),
             "--config=" + cfg],
            stdout=subprocess.PIPE, text=True)
        try:
            run(emu)
        finally:
            emu.terminate()
            emu.wait(timeout=30)
    print("PASS")


def run(emu):
    endpoints = {}
    urls = {}
    for line in emu.stdout:
        line = line.strip()
        if line == "ready":
            break
        kind, _, rest = line.partition(" ")
        fields = dict(kv.split("=", 1) for kv in rest.split())
        if kind == "url" and fields["region"] == "us-east-1":
            urls[fields["mode"]] = fields["url"]
        elif kind == "url":
            urls[fields["region"] + "/" + fields["mode"]] = fields["url"]
        elif kind == "cloudwatch" and fields["region"] != "us-east-1":
            pass
        else:
            endpoints[kind] = fields["url"]
    for need in ("sts", "cloudwatch", "imds", "container", "control"):
        if need not in endpoints:
            fail(f"emulator printed no {need} endpoint: {endpoints}")

    session = botocore.session.get_session()

    # STS, unsigned.
    anon = session.create_client(
        "sts", region_name="us-east-1", endpoint_url=endpoints["sts"],
        config=Config(signature_version=UNSIGNED))
    r = anon.assume_role_with_web_identity(
        RoleArn=ROLE, RoleSessionName="botocore", WebIdentityToken="good-token")
    creds = r["Credentials"]
    if not creds["AccessKeyId"].startswith("ASIA"):
        fail(f"unexpected AccessKeyId {creds['AccessKeyId']}")
    lifetime = creds["Expiration"] - datetime.now(timezone.utc)
    if not timedelta(seconds=800) < lifetime <= timedelta(seconds=901):
        fail(f"credential lifetime {lifetime}, configured 900s")
    expect_error("InvalidIdentityToken", lambda: anon.assume_role_with_web_identity(
        RoleArn=ROLE, RoleSessionName="botocore", WebIdentityToken="forged"))

    # STS, signed with long-term keys, then with the issued session.
    signed = session.create_client(
        "sts", region_name="us-east-1", endpoint_url=endpoints["sts"],
        aws_access_key_id="AKIDBOTOCORE",
        aws_secret_access_key="botocore-secret")
    assumed = signed.assume_role(RoleArn=ROLE, RoleSessionName="b2")["Credentials"]
    as_session = session.create_client(
        "sts", region_name="eu-west-1", endpoint_url=endpoints["sts"],
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"])
    if as_session.get_caller_identity()["Account"] != "123456789012":
        fail("GetCallerIdentity")
    wrong = session.create_client(
        "sts", region_name="us-east-1", endpoint_url=endpoints["sts"],
        aws_access_key_id="AKIDBOTOCORE", aws_secret_access_key="wrong")
    expect_error("SignatureDoesNotMatch",
                 lambda: wrong.assume_role(RoleArn=ROLE, RoleSessionName="xx"))

    # Invocations the platform will count.
    n = 7
    for i in range(n):
        with urllib.request.urlopen(urls["BUFFERED"] + f"canary?bytes={16 + i}",
                                    timeout=30) as resp:
            resp.read()

    cw = session.create_client(
        "cloudwatch", region_name="us-east-1",
        endpoint_url=endpoints["cloudwatch"],
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"])
    if cw.meta.service_model.protocol != "query":
        fail(f"botocore's CloudWatch protocol is {cw.meta.service_model.protocol}")
    now = datetime.now(timezone.utc)
    query = dict(
        MetricDataQueries=[{
            "Id": "inv",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": "Invocations",
                    "Dimensions": [
                        {"Name": "FunctionName", "Value": "fleetcanary-canary"},
                        {"Name": "Resource", "Value": "fleetcanary-canary:buffered"},
                    ],
                },
                "Period": 1,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }, {
            "Id": "url4xx",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": "Url4xxCount",
                    "Dimensions": [
                        {"Name": "FunctionName", "Value": "fleetcanary-canary"},
                        {"Name": "Resource", "Value": "fleetcanary-canary:buffered"},
                    ],
                },
                "Period": 1,
                "Stat": "Sum",
            },
        }],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=2),
        ScanBy="TimestampAscending")
    # A period is visible once complete (1s here): wait for the event, with
    # a bound, never for a fixed time.
    deadline = time.monotonic() + 120
    while True:
        out = cw.get_metric_data(**query)
        results = {r["Id"]: r for r in out["MetricDataResults"]}
        if sum(results.get("inv", {}).get("Values", [])) >= n:
            break
        if time.monotonic() > deadline:
            fail(f"Invocations never reached {n}: {results}")
        time.sleep(0.05)
    if set(results) != {"inv", "url4xx"}:
        fail(f"results {list(results)}")
    if sum(results["inv"]["Values"]) != n:
        fail(f"Invocations sum {results['inv']['Values']} != {n}")
    if results["inv"]["StatusCode"] != "Complete":
        fail(f"StatusCode {results['inv']['StatusCode']}")
    if sum(results["url4xx"]["Values"]) != 0:
        fail(f"Url4xxCount {results['url4xx']['Values']}")
    for ts in results["inv"]["Timestamps"]:
        if ts.tzinfo is None or ts.microsecond != 0:
            fail(f"timestamp {ts} is not a period start in UTC")

    # Pagination through NextToken, as botocore's paginator does it.
    pages = list(cw.get_paginator("get_metric_data").paginate(
        **query, PaginationConfig={"PageSize": 1}))
    if len(pages) < 1:
        fail("no pages")

    # Invalid input: a 400 with the JSON handler's code.
    expect_error("InvalidParameterValue", lambda: cw.get_metric_data(
        MetricDataQueries=query["MetricDataQueries"],
        StartTime=now, EndTime=now - timedelta(minutes=1)))

    forged = session.create_client(
        "cloudwatch", region_name="us-east-1",
        endpoint_url=endpoints["cloudwatch"],
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token="forged-token")
    try:
        forged.get_metric_data(**query)
        fail("a forged session token was accepted")
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 403:
            fail(f"forged token: {e}")
    unsigned = session.create_client(
        "cloudwatch", region_name="us-east-1",
        endpoint_url=endpoints["cloudwatch"],
        config=Config(signature_version=UNSIGNED))
    try:
        unsigned.get_metric_data(**query)
        fail("an unsigned request was accepted")
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 403:
            fail(f"unsigned: {e}")

    role_signed_function_url(session, endpoints, urls)


TARGET_ROLE = "arn:aws:iam::210987654321:role/canary-cross-account"


def role_signed_function_url(session, endpoints, urls):
    """botocore signs a Function URL GET with a per-target role's session."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = session.create_client(
        "sts", region_name="us-east-1", endpoint_url=endpoints["sts"],
        aws_access_key_id="AKIDBOTOCORE",
        aws_secret_access_key="botocore-secret")
    role = signed.assume_role(RoleArn=TARGET_ROLE,
                              RoleSessionName="target")["Credentials"]
    url = urls["eu-west-1/BUFFERED"] + "canary?bytes=64&seed=7"

    def get(credentials):
        req = AWSRequest(method="GET", url=url)
        if credentials is not None:
            SigV4Auth(credentials, "lambda", "eu-west-1").add_auth(req)
        prepared = req.prepare()
        r = urllib.request.Request(url, headers=dict(prepared.headers))
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    good = Credentials(role["AccessKeyId"], role["SecretAccessKey"],
                       role["SessionToken"])
    status, body = get(good)
    if status != 200 or len(body) != 64:
        fail(f"role-signed Function URL GET: {status} {body[:200]!r}")
    status, _ = get(None)
    if status != 403:
        fail(f"unsigned GET of an AWS_IAM Function URL: {status}")
    altered = Credentials(role["AccessKeyId"], role["SecretAccessKey"] + "x",
                          role["SessionToken"])
    status, _ = get(altered)
    if status != 403:
        fail(f"GET signed with an altered secret: {status}")

    control = endpoints["control"]
    with urllib.request.urlopen(control + "_emulator/sessions",
                                timeout=30) as resp:
        sessions = [json.loads(l) for l in resp.read().decode().splitlines()
                    if l]
    mine = [s for s in sessions if s["access_key_id"] == role["AccessKeyId"]]
    if len(mine) != 1 or mine[0]["role_arn"] != TARGET_ROLE:
        fail(f"/_emulator/sessions has no session for the role: {sessions}")
    # The good GET and the altered one presented the key (a valid session);
    # the unsigned one did not.
    if mine[0]["uses"].get("lambda") != 2:
        fail(f"lambda uses of the role's session: {mine[0]}")
    if "SecretAccessKey" in json.dumps(sessions) or \
            role["SecretAccessKey"] in json.dumps(sessions):
        fail("/_emulator/sessions shows a secret")


if __name__ == "__main__":
    main()
