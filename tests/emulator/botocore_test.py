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
  - a forged session token and a missing signature are refused.

Usage: botocore_test.py BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile
import time
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
        if kind == "url":
            urls[fields["mode"]] = fields["url"]
        else:
            endpoints[kind] = fields["url"]
    for need in ("sts", "cloudwatch", "imds", "container"):
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


if __name__ == "__main__":
    main()
