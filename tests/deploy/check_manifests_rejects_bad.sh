#!/usr/bin/env bash
# Proves check_manifests.cjs catches what it claims to: copies deploy/k8s and
# dashboards/ into scratch trees, breaks them in known ways, and expects the
# checker to fail reporting each break. Two trees, because tsc reports an
# unknown field only in an object without other type errors.
# Usage: check_manifests_rejects_bad.sh NPM_DIR SOURCE_DIR SCRATCH_DIR
set -euo pipefail
npm_dir=$1 src=$2 scratch=$3
here=$(cd "$(dirname "$0")" && pwd)
command -v kubectl >/dev/null 2>&1 || { echo "SKIP: kubectl not found"; exit 77; }
expect_fail="$here/../dashboards/expect_fail.sh"

copy() {
  rm -rf "$1" && mkdir -p "$1/deploy"
  cp -r "$src/deploy/k8s" "$1/deploy/k8s"
  cp -r "$src/dashboards" "$1/dashboards"
}

# Tree 1: policy, schema, region and one-source breaks.
t1=$scratch/policy
copy "$t1"
k=$t1/deploy/k8s
# A writable root filesystem for the controller.
sed -i 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "$k/base/controller/statefulset.yaml"
# A wrong type.
sed -i 's/containerPort: 9091/containerPort: "9091"/' "$k/base/agent/statefulset.yaml"
# The region no longer reaches the certificate: region overlays keep the
# base's us-east-1 SAN.
sed -i 's/index: 4/index: 3/' "$k/components/region/kustomization.yaml"
# rules.yml edited without regenerating the PrometheusRule.
sed -i 's/for: 5m/for: 6m/' "$t1/dashboards/prometheus/rules.yml"
# No memory limit on the agent.
sed -i '/^              memory: 512Mi$/d' "$k/base/agent/statefulset.yaml"
# A region overlay that brings the Namespace (kubectl delete -k would take it).
sed -i 's#^  - ../../base/agent$#  - ../../base/agent\n  - ../../base/namespace#' "$k/overlays/us-east-1/kustomization.yaml"
# Agent readiness on /metrics (ignores the controller session).
sed -i 's#httpGet: {path: /readyz, port: http-metrics}#httpGet: {path: /metrics, port: http-metrics}#' "$k/base/agent/statefulset.yaml"
# The controller overlay changes a flag the e2e test does not run with, by
# list index.
cat >> "$k/overlays/controller/kustomization.yaml" <<'EOF2'

patches:
  - target:
      kind: StatefulSet
      name: fleetcanary-controller
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/args/1
        value: --admin_listen=0.0.0.0:7446
EOF2
# No ServiceAccount for the agents.
sed -i '/^  - serviceaccount.yaml$/d' "$k/base/agent/kustomization.yaml"
# An open load balancer carrying the admin port.
sed -i '/loadBalancerSourceRanges:/,+1d' "$k/overlays/controller/service-external.yaml"
printf '    - name: admin\n      port: 7445\n      targetPort: grpc-admin\n' >> "$k/overlays/controller/service-external.yaml"
bash "$expect_fail" \
  "base StatefulSet/fleetcanary-controller container controller: readOnlyRootFilesystem is not true" \
  "containerPort must be integer" \
  "overlays/eu-west-1: certificate SAN" \
  "PrometheusRule/fleetcanary: spec differs from dashboards/prometheus/rules.yml" \
  "container agent: no memory limit" \
  "overlays/us-east-1: contains Namespace/fleetcanary" \
  "container agent: readinessProbe is not GET /readyz" \
  "overlays/controller: controller args" \
  "patch addresses a list by index (/spec/template/spec/containers/0/args/1)" \
  "base: no ServiceAccount/fleetcanary-agent" \
  "LoadBalancer without loadBalancerSourceRanges" \
  "LoadBalancer exposes admin" \
  -- node "$here/check_manifests.cjs" "$npm_dir" "$t1"

# Tree 2: a misspelled field, which only the TypeScript interfaces see.
t2=$scratch/typo
copy "$t2"
sed -i 's/^  replicas: 2$/  replicas: 2\n  replicaz: 3/' "$t2/deploy/k8s/base/agent/statefulset.yaml"
bash "$expect_fail" "'\"replicaz\"' does not exist in type 'IStatefulSetSpec'" \
  -- node "$here/check_manifests.cjs" "$npm_dir" "$t2"
