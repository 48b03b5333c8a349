#!/usr/bin/env bash
# Writes dashboards/kubernetes/prometheusrule.yaml: the Prometheus Operator
# PrometheusRule whose spec is dashboards/prometheus/rules.yml, embedded byte
# for byte (every non-empty line indented by two spaces). rules.yml stays the
# one file anyone edits; kustomize cannot wrap a file into an object's spec,
# so this small generator does, and the test suite (deploy_k8s_rules_sync_test
# and the rendered-manifest test) fails whenever the two disagree.
#
# Usage: generate-prometheusrule.sh            rewrite the file
#        generate-prometheusrule.sh --check    exit 1 if it is stale
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rules="$here/../prometheus/rules.yml"
out="$here/prometheusrule.yaml"

render() {
  cat <<'HEADER'
# GENERATED from dashboards/prometheus/rules.yml by
# dashboards/kubernetes/generate-prometheusrule.sh. Do not edit: edit
# rules.yml and run the script. `spec:` below is rules.yml, indented.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: fleetcanary
  labels:
    app.kubernetes.io/name: fleetcanary-rules
    app.kubernetes.io/component: monitoring
spec:
HEADER
  sed '/./s/^/  /' "$rules"
}

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -u "$out" <(render); then
    echo "$out is stale: run dashboards/kubernetes/generate-prometheusrule.sh" >&2
    exit 1
  fi
  echo "ok: $out embeds $rules byte for byte"
  exit 0
fi
render >"$out"
echo "wrote $out"
