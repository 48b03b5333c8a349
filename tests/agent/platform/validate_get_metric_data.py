#!/usr/bin/env python3
"""Validates a GetMetricData request body (AWS JSON 1.0, as the agent sends
it) against the GetMetricData input shape of botocore's CloudWatch service
model: member names, types, required members, enum values and ranges.
Exit 0 when valid; prints the report and exits 1 otherwise.

Usage: validate_get_metric_data.py BODY.json X-AMZ-TARGET
"""
import json
import sys

import botocore.session
from botocore.validate import ParamValidator


def main():
    with open(sys.argv[1]) as f:
        body = json.load(f)
    target = sys.argv[2]
    model = botocore.session.get_session().get_service_model("cloudwatch")
    op = model.operation_model("GetMetricData")
    if target.rsplit(".", 1)[-1] != op.name:
        print(f"X-Amz-Target {target} does not name {op.name}")
        return 1
    # JSON 1.0 sends timestamps as epoch seconds; botocore's validator takes
    # them as numbers too. Reject members the model does not know.
    report = ParamValidator().validate(body, op.input_shape)
    if report.has_errors():
        print(report.generate_report())
        return 1
    stats = {q["MetricStat"]["Stat"] for q in body["MetricDataQueries"]}
    for stat in stats:
        if stat not in ("Sum", "Average", "Minimum", "Maximum", "SampleCount") \
                and not stat.startswith(("p", "tm", "tc", "ts", "wm", "PR")):
            print(f"unknown statistic {stat}")
            return 1
    print(f"valid GetMetricData request: {len(body['MetricDataQueries'])} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
