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
sed -i 's/containerPort: 9091/containerPort: "9091"/' "$k/base/agent/deployment.yaml"
# eu-west-1 agents with a certificate of another region.
sed -i 's#spiffe://fleetcanary/agent/eu-west-1/#spiffe://fleetcanary/agent/us-east-1/#' "$k/overlays/eu-west-1/kustomization.yaml"
# rules.yml edited without regenerating the PrometheusRule.
sed -i 's/for: 5m/for: 6m/' "$t1/dashboards/prometheus/rules.yml"
# No memory limit on the agent.
sed -i '/^              memory: 512Mi$/d' "$k/base/agent/deployment.yaml"
bash "$expect_fail" \
  "base StatefulSet/fleetcanary-controller container controller: readOnlyRootFilesystem is not true" \
  "containerPort must be integer" \
  "overlays/eu-west-1: certificate SAN" \
  "PrometheusRule/fleetcanary: spec differs from dashboards/prometheus/rules.yml" \
  "container agent: no memory limit" \
  -- node "$here/check_manifests.cjs" "$npm_dir" "$t1"

# Tree 2: a misspelled field, which only the TypeScript interfaces see.
t2=$scratch/typo
copy "$t2"
sed -i 's/^  replicas: 2$/  replicas: 2\n  replicaz: 3/' "$t2/deploy/k8s/base/agent/deployment.yaml"
bash "$expect_fail" "'\"replicaz\"' does not exist in type 'IDeploymentSpec'" \
  -- node "$here/check_manifests.cjs" "$npm_dir" "$t2"
