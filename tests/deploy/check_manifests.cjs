#!/usr/bin/env node
// Renders every kustomization of deploy/k8s (the base and each overlay) with
// `kubectl kustomize` and checks the result offline:
//   1. schema: each object validates against the Kubernetes, cert-manager and
//      Prometheus Operator schemas of the kubernetes-models packages (types,
//      enums, required fields), and type-checks with tsc against their
//      TypeScript interfaces (unknown or misspelled fields fail);
//   2. policy: app.kubernetes.io labels everywhere; every pod runs as non-root
//      with a read-only root filesystem, no capabilities, RuntimeDefault
//      seccomp, resource requests and limits, readiness and liveness probes
//      (gRPC health for the controller); every ConfigMap/Secret volume of a
//      generated config refers to an object in the render;
//   3. one source: the PrometheusRule spec equals dashboards/prometheus/rules.yml,
//      and the dashboard and rules ConfigMaps hold the files of dashboards/
//      byte for byte;
//   4. regions: in overlays/<region>, the region of the ConfigMap
//      fleetcanary-agent-env (what the agents are told), the pods' region
//      label and the certificate's SAN region all equal <region>; the agents
//      dial a name the controller's certificate carries;
//   5. operability: the Namespace only in base/namespace (deleting an
//      overlay never deletes it); agents are a StatefulSet running as the
//      fleetcanary-agent ServiceAccount (in the render), probed on /healthz
//      (liveness) and /readyz (readiness); the controller is probed on its
//      gRPC health listener (readiness, store-aware) and /healthz; the
//      controller's args in every render equal those of
//      base/controller/statefulset.yaml, which the operability e2e test
//      starts the controller with; the load balancer has source ranges and
//      NLB annotations and exposes the agents' port only; monitoring objects
//      of the overlays carry the kube-prometheus-stack `release` label; no
//      kustomization patches a list by index.
//
// Usage: node check_manifests.cjs NPM_DIR SOURCE_DIR
// Exits 77 (reported as skipped) when kubectl is not installed.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { spawnSync } = require('child_process');

const [npmDirArg, srcDirArg] = process.argv.slice(2);
if (!srcDirArg) {
  console.error('usage: check_manifests.cjs NPM_DIR SOURCE_DIR');
  process.exit(2);
}
const npmDir = path.resolve(npmDirArg);
const src = path.resolve(srcDirArg);
const req = createRequire(path.join(npmDir, 'package.json'));
const YAML = req('yaml');

const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
if (probe.error) {
  console.log('SKIP: kubectl not found; install kubectl (with kustomize) to render and check the manifests');
  process.exit(77);
}

const k8sRoot = path.join(src, 'deploy', 'k8s');
const overlaysDir = path.join(k8sRoot, 'overlays');
const builds = [
  'base',
  'base/namespace',
  ...fs.readdirSync(overlaysDir).filter((d) => fs.existsSync(path.join(overlaysDir, d, 'kustomization.yaml'))).sort().map((d) => `overlays/${d}`),
];
const REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-2'];

const errors = [];
// Key-order-independent JSON (kustomize sorts mapping keys).
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

// apiVersion -> module with one class per kind.
function modelModule(apiVersion) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (group === 'cert-manager.io') return { mod: `@kubernetes-models/cert-manager/cert-manager.io/${version}` };
  if (group === 'monitoring.coreos.com') return { mod: `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}` };
  return { mod: group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}` };
}

const tsDecls = [];
const tsImports = new Map();
let objectCount = 0;

function schemaCheck(where, obj) {
  const { mod } = modelModule(obj.apiVersion);
  let Model;
  try {
    Model = req(mod)[obj.kind];
  } catch (e) {
    Model = undefined;
  }
  if (!Model) return fail(where, `no schema for ${obj.apiVersion} ${obj.kind}`);
  try {
    new Model(obj).validate();
  } catch (e) {
    fail(where, `schema: ${e.message}`);
  }
  const alias = `${mod.replace(/[^a-zA-Z0-9]/g, '_')}_${obj.kind}`;
  tsImports.set(alias, `import type { I${obj.kind} as ${alias} } from '${mod}';`);
  tsDecls.push(`// ${where}\nexport const o${tsDecls.length}: ${alias} = ${JSON.stringify(obj, null, 2)};`);
}

function podChecks(where, obj) {
  const spec = obj.spec.template.spec;
  const psc = spec.securityContext || {};
  if (psc.runAsNonRoot !== true) fail(where, 'pod securityContext.runAsNonRoot is not true');
  if (!(psc.runAsUser > 0)) fail(where, 'pod securityContext.runAsUser is not a non-zero uid');
  if (!psc.seccompProfile || psc.seccompProfile.type !== 'RuntimeDefault') fail(where, 'pod seccompProfile is not RuntimeDefault');
  const tmplLabels = obj.spec.template.metadata.labels || {};
  for (const l of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of']) {
    if (!tmplLabels[l]) fail(where, `pod template lacks label ${l}`);
  }
  for (const c of [...(spec.initContainers || []), ...spec.containers]) {
    const cw = `${where} container ${c.name}`;
    const sc = c.securityContext || {};
    if (sc.readOnlyRootFilesystem !== true) fail(cw, 'readOnlyRootFilesystem is not true');
    if (sc.allowPrivilegeEscalation !== false) fail(cw, 'allowPrivilegeEscalation is not false');
    if (sc.runAsNonRoot === false) fail(cw, 'runAsNonRoot is false');
    if (!sc.capabilities || !(sc.capabilities.drop || []).includes('ALL')) fail(cw, 'capabilities.drop lacks ALL');
    if ((sc.capabilities && sc.capabilities.add || []).length) fail(cw, 'adds capabilities');
    if (sc.privileged) fail(cw, 'privileged');
    const r = c.resources || {};
    for (const k of ['cpu', 'memory']) {
      if (!r.requests || !r.requests[k]) fail(cw, `no ${k} request`);
      if (!r.limits || !r.limits[k]) fail(cw, `no ${k} limit`);
    }
    if (!c.readinessProbe) fail(cw, 'no readinessProbe');
    if (!c.livenessProbe) fail(cw, 'no livenessProbe');
    const httpPath = (p) => (c[p] && c[p].httpGet ? c[p].httpGet.path : undefined);
    if (obj.metadata.name === 'fleetcanary-controller') {
      if (!c.readinessProbe || !c.readinessProbe.grpc || c.readinessProbe.grpc.port !== 7444) fail(cw, 'readinessProbe is not the gRPC health listener (port 7444)');
      if (httpPath('livenessProbe') !== '/healthz') fail(cw, `livenessProbe is not GET /healthz (${httpPath('livenessProbe')})`);
    }
    if (obj.metadata.name === 'fleetcanary-agent') {
      if (httpPath('readinessProbe') !== '/readyz') fail(cw, `readinessProbe is not GET /readyz (${httpPath('readinessProbe')})`);
      if (httpPath('livenessProbe') !== '/healthz') fail(cw, `livenessProbe is not GET /healthz (${httpPath('livenessProbe')})`);
      for (const p of ['readinessProbe', 'livenessProbe']) {
        if (c[p] && c[p].httpGet && c[p].httpGet.port !== 'http-metrics') fail(cw, `${p} is not on port http-metrics`);
      }
    }
    const mounts = new Set((c.volumeMounts || []).map((m) => m.mountPath));
    if (!mounts.has('/tmp')) fail(cw, 'no writable /tmp (read-only root filesystem)');
  }
}

function render(build) {
  const res = spawnSync('kubectl', ['kustomize', path.join(k8sRoot, build)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.status !== 0) {
    fail(build, `kubectl kustomize failed: ${res.stderr}`);
    return [];
  }
  fs.writeFileSync(path.join(npmDir, 'rendered', `${build.replace(/\//g, '_')}.yaml`), res.stdout);
  return YAML.parseAllDocuments(res.stdout).map((d) => d.toJSON()).filter(Boolean);
}

fs.mkdirSync(path.join(npmDir, 'rendered'), { recursive: true });
const rulesText = fs.readFileSync(path.join(src, 'dashboards', 'prometheus', 'rules.yml'), 'utf8');
const rulesParsed = YAML.parse(rulesText);
const dashboardFiles = fs.readdirSync(path.join(src, 'dashboards', 'grafana')).filter((f) => f.endsWith('.json')).sort();

const rendered = {};
for (const build of builds) {
  const objs = render(build);
  rendered[build] = objs;
  const names = new Set(objs.map((o) => `${o.kind}/${o.metadata && o.metadata.name}`));
  for (const obj of objs) {
    objectCount++;
    const where = `${build} ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    schemaCheck(where, obj);
    const labels = (obj.metadata && obj.metadata.labels) || {};
    if (labels['app.kubernetes.io/part-of'] !== 'fleetcanary') fail(where, 'label app.kubernetes.io/part-of is not fleetcanary');
    if (obj.kind !== 'Namespace' && !labels['app.kubernetes.io/name'] && !labels['app.kubernetes.io/component']) {
      fail(where, 'no app.kubernetes.io/name or component label');
    }
    if (obj.kind !== 'Namespace' && obj.metadata.namespace !== 'fleetcanary') fail(where, 'not in namespace fleetcanary');
    if (obj.kind === 'Deployment' || obj.kind === 'StatefulSet') {
      if (obj.kind === 'Deployment' && obj.metadata.name === 'fleetcanary-agent') fail(where, 'agents are a Deployment (new ids every rollout, outbox lost); use the StatefulSet');
      podChecks(where, obj);
      for (const v of obj.spec.template.spec.volumes || []) {
        if (v.configMap && !names.has(`ConfigMap/${v.configMap.name}`)) fail(where, `volume ${v.name}: ConfigMap ${v.configMap.name} not in the render`);
      }
    }
    if (obj.kind === 'StatefulSet' && !(obj.spec.volumeClaimTemplates || []).length) fail(where, 'no PersistentVolumeClaim template');
    if (obj.kind === 'PrometheusRule' && canonical(obj.spec) !== canonical(rulesParsed)) {
      fail(where, 'spec differs from dashboards/prometheus/rules.yml (run dashboards/kubernetes/generate-prometheusrule.sh)');
    }
    if (obj.kind === 'ConfigMap' && obj.data) {
      for (const f of dashboardFiles) {
        if (f in obj.data) {
          const want = fs.readFileSync(path.join(src, 'dashboards', 'grafana', f), 'utf8');
          if (obj.data[f] !== want) fail(where, `${f} differs from dashboards/grafana/${f}`);
          if ((labels.grafana_dashboard || '') !== '1') fail(where, 'dashboard ConfigMap lacks label grafana_dashboard: "1"');
        }
      }
      if ('rules.yml' in obj.data && obj.data['rules.yml'] !== rulesText) fail(where, 'rules.yml differs from dashboards/prometheus/rules.yml');
    }
  }
}

// Objects each build must contain.
const agentObjects = ['StatefulSet/fleetcanary-agent', 'ServiceAccount/fleetcanary-agent', 'Certificate/fleetcanary-agent', 'PodDisruptionBudget/fleetcanary-agent', 'NetworkPolicy/fleetcanary-agent', 'ConfigMap/fleetcanary-agent-env'];
const need = {
  base: ['StatefulSet/fleetcanary-controller', 'PrometheusRule/fleetcanary', 'ServiceMonitor/fleetcanary-controller', 'PodMonitor/fleetcanary-agent', ...agentObjects],
  'base/namespace': ['Namespace/fleetcanary'],
  'overlays/controller': ['StatefulSet/fleetcanary-controller', 'Service/fleetcanary-controller-external', 'PrometheusRule/fleetcanary'],
  'overlays/controller-ha': ['Deployment/fleetcanary-controller', 'Service/fleetcanary-controller-external', 'PrometheusRule/fleetcanary'],
};
for (const r of REGIONS) need[`overlays/${r}`] = agentObjects;
for (const [build, kinds] of Object.entries(need)) {
  if (!rendered[build]) {
    fail(build, 'missing kustomization');
    continue;
  }
  // ConfigMaps carry a content hash suffix.
  const names = new Set(rendered[build].map((o) => `${o.kind}/${o.kind === 'ConfigMap' ? o.metadata.name.replace(/-[a-z0-9]{10}$/, '') : o.metadata.name}`));
  for (const k of kinds) if (!names.has(k)) fail(build, `no ${k}`);
  if (build === 'base' || build === 'overlays/controller') {
    for (const f of dashboardFiles) {
      if (!rendered[build].some((o) => o.kind === 'ConfigMap' && o.data && f in o.data)) fail(build, `no ConfigMap for dashboard ${f}`);
    }
  }
}

// The Namespace lives in base/namespace only.
for (const build of builds) {
  if (build === 'base/namespace') continue;
  for (const o of rendered[build] || []) if (o.kind === 'Namespace') fail(build, `contains Namespace/${o.metadata.name} (apply base/namespace once instead)`);
}

// Region consistency: what the agents are told, pod label and certificate
// SAN; the agents dial a name the controller's certificate carries.
const SAN = /^spiffe:\/\/fleetcanary\/agent\/([a-z0-9-]+)\/([a-z0-9-]+)$/;
const controllerCert = (rendered.base || []).find((o) => o.kind === 'Certificate' && o.metadata.name === 'fleetcanary-controller');
const controllerNames = new Set((controllerCert && controllerCert.spec.dnsNames) || []);
for (const build of ['base', ...REGIONS.map((r) => `overlays/${r}`)]) {
  const objs = rendered[build] || [];
  const expected = build === 'base' ? 'us-east-1' : build.split('/')[1];
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.data && o.data['agent.yaml']);
  const env = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('fleetcanary-agent-env'));
  const sts = objs.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'fleetcanary-agent');
  const cert = objs.find((o) => o.kind === 'Certificate' && o.metadata.name === 'fleetcanary-agent');
  if (!cm || !env || !sts || !cert) {
    fail(build, 'agent ConfigMaps, StatefulSet or Certificate missing');
    continue;
  }
  const agentCfg = YAML.parse(cm.data['agent.yaml']) || {};
  for (const k of ['region', 'controller_address', 'agent_id']) {
    if (k in agentCfg) fail(build, `agent.yaml sets ${k}; it comes from fleetcanary-agent-env and the pod name`);
  }
  if (env.data.region !== expected) fail(build, `fleetcanary-agent-env region ${env.data.region}, want ${expected}`);
  if (sts.metadata.labels['fleetcanary.io/region'] !== expected || sts.spec.template.metadata.labels['fleetcanary.io/region'] !== expected) {
    fail(build, 'label fleetcanary.io/region does not match the region');
  }
  const uris = cert.spec.uris || [];
  if (uris.length !== 1 || !SAN.test(uris[0]) || SAN.exec(uris[0])[1] !== expected) {
    fail(build, `certificate SAN ${JSON.stringify(uris)} is not spiffe://fleetcanary/agent/${expected}/<name>`);
  } else if (!('fleetcanary-agent'.startsWith(SAN.exec(uris[0])[2]))) {
    fail(build, `certificate SAN name ${SAN.exec(uris[0])[2]} is not a prefix of the agent ids fleetcanary-agent-<n>-<region>`);
  }
  if (cert.spec.commonName !== `fleetcanary-agent.${expected}.agents.fleetcanary`) fail(build, `certificate commonName ${cert.spec.commonName} does not name ${expected}`);
  if (!(cert.spec.usages || []).includes('client auth')) fail(build, 'agent certificate lacks client auth usage');
  const pod = sts.spec.template.spec;
  const c = pod.containers[0];
  const args = c.args || [];
  const envOf = (name) => (c.env || []).find((e) => e.name === name);
  for (const [arg, variable, key] of [['--region=$(FLEETCANARY_REGION)', 'FLEETCANARY_REGION', 'region'], ['--controller=$(FLEETCANARY_CONTROLLER)', 'FLEETCANARY_CONTROLLER', 'controller']]) {
    if (!args.includes(arg)) fail(build, `agent args lack ${arg}`);
    const e = envOf(variable);
    const ref = e && e.valueFrom && e.valueFrom.configMapKeyRef;
    if (!ref || ref.name !== env.metadata.name || ref.key !== key) fail(build, `env ${variable} is not ${env.metadata.name}/${key}`);
  }
  if (!args.includes('--agent_id=$(POD_NAME)-$(FLEETCANARY_REGION)')) fail(build, 'agent id is not <pod name>-<region> (stable and unique across regions)');
  const host = (env.data.controller || '').replace(/:\d+$/, '');
  if (!controllerNames.has(host)) fail(build, `agents dial ${host}, not a name of the controller certificate (${[...controllerNames].join(', ')})`);
  if (pod.serviceAccountName !== 'fleetcanary-agent') fail(build, `agents run as ServiceAccount ${pod.serviceAccountName}, not fleetcanary-agent`);
  if (!(sts.spec.volumeClaimTemplates || []).some((t) => t.metadata.name === 'outbox')) fail(build, 'agents have no outbox PersistentVolumeClaim');
  if (!(c.volumeMounts || []).some((m) => m.name === 'outbox' && m.mountPath === '/var/lib/fleetcanary-agent')) fail(build, 'outbox volume not mounted at the data_dir');
}

// The controller's args: one source, base/controller/statefulset.yaml, which
// the operability e2e test starts the controller with.
const ARGS_TEST = path.join(src, 'tests', 'integration', 'operability_test.cc');
const sourceSts = YAML.parse(fs.readFileSync(path.join(k8sRoot, 'base', 'controller', 'statefulset.yaml'), 'utf8'));
const sourceArgs = sourceSts.spec.template.spec.containers.find((c) => c.name === 'controller').args;
if (!fs.existsSync(ARGS_TEST) || !fs.readFileSync(ARGS_TEST, 'utf8').includes('deploy/k8s/base/controller/statefulset.yaml')) {
  fail('tests/integration/operability_test.cc', 'does not start the controller from deploy/k8s/base/controller/statefulset.yaml');
}
for (const build of builds) {
  for (const o of rendered[build] || []) {
    if (o.kind !== 'StatefulSet' || o.metadata.name !== 'fleetcanary-controller') continue;
    const c = o.spec.template.spec.containers.find((x) => x.name === 'controller');
    if (canonical(c.args) !== canonical(sourceArgs)) fail(build, `controller args ${JSON.stringify(c.args)} differ from base/controller/statefulset.yaml (the e2e-tested flags)`);
    for (const want of ['--admin_listen=', '--client_ca=', '--admin_tokens=', '--health_listen=']) {
      if (!c.args.some((a) => a.startsWith(want))) fail(build, `controller args lack ${want}`);
    }
  }
  // Several replicas: the StatefulSet's flags plus a PostgreSQL store,
  // leader election and a per-pod replica id; no single-writer StatefulSet.
  for (const o of rendered[build] || []) {
    if (o.kind !== 'Deployment' || o.metadata.name !== 'fleetcanary-controller') continue;
    const c = o.spec.template.spec.containers.find((x) => x.name === 'controller');
    for (const a of sourceArgs) if (!c.args.includes(a)) fail(build, `controller Deployment lacks ${a} of base/controller/statefulset.yaml`);
    for (const want of ['--store=postgresql://', '--leader_election', '--replica_id=$(POD_NAME)', '--advertise_address=']) {
      if (!c.args.some((a) => a.startsWith(want))) fail(build, `controller Deployment args lack ${want}`);
    }
    if (!(o.spec.replicas >= 2)) fail(build, 'controller Deployment with fewer than 2 replicas');
    if (!(c.env || []).some((e) => e.name === 'PGPASSWORD' && e.valueFrom && e.valueFrom.secretKeyRef)) fail(build, 'PGPASSWORD not from a Secret');
    if ((rendered[build] || []).some((x) => x.kind === 'StatefulSet' && x.metadata.name === 'fleetcanary-controller')) fail(build, 'both the StatefulSet and the Deployment of the controller');
  }
  for (const o of rendered[build] || []) {
    if (o.kind === 'Service' && o.spec.type === 'LoadBalancer') {
      const w = `${build} Service/${o.metadata.name}`;
      if (!(o.spec.loadBalancerSourceRanges || []).length) fail(w, 'LoadBalancer without loadBalancerSourceRanges');
      const ann = o.metadata.annotations || {};
      if (ann['service.beta.kubernetes.io/aws-load-balancer-type'] !== 'external' || ann['service.beta.kubernetes.io/aws-load-balancer-nlb-target-type'] !== 'ip') fail(w, 'LoadBalancer without the NLB annotations');
      for (const p of o.spec.ports) if (p.targetPort !== 'grpc') fail(w, `LoadBalancer exposes ${p.name} (${p.targetPort}); only the agents' port (grpc) may be external`);
    }
    if (build.startsWith('overlays/') && ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'].includes(o.kind) && !(o.metadata.labels || {}).release) {
      fail(`${build} ${o.kind}/${o.metadata.name}`, 'no `release` label (components/kube-prometheus-stack)');
    }
  }
}

// No JSON patch addresses a list by index (fragile, silently wrong when the
// list changes).
function kustomizationFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...kustomizationFiles(p));
    else if (e.name === 'kustomization.yaml') out.push(p);
  }
  return out;
}
for (const f of kustomizationFiles(k8sRoot)) {
  const k = YAML.parse(fs.readFileSync(f, 'utf8')) || {};
  for (const p of k.patches || []) {
    const ops = typeof p.patch === 'string' ? YAML.parse(p.patch) : null;
    for (const op of Array.isArray(ops) ? ops : []) {
      if (/\/\d+(\/|$)/.test(op.path || '')) fail(path.relative(src, f), `patch addresses a list by index (${op.path})`);
    }
  }
}

// TypeScript interfaces: excess-property checks catch unknown fields.
const genDir = path.join(npmDir, 'gen');
fs.rmSync(genDir, { recursive: true, force: true });
fs.mkdirSync(genDir, { recursive: true });
fs.writeFileSync(path.join(genDir, 'manifests.ts'), [...tsImports.values(), '', ...tsDecls, ''].join('\n'));
fs.writeFileSync(
  path.join(genDir, 'tsconfig.json'),
  JSON.stringify({ compilerOptions: { strict: true, noEmit: true, target: 'es2020', module: 'commonjs', moduleResolution: 'node10', skipLibCheck: true, types: [] }, include: ['*.ts'] }, null, 2),
);
const tsc = spawnSync(process.execPath, [path.join(npmDir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(genDir, 'tsconfig.json')], { encoding: 'utf8' });
if (tsc.status !== 0) fail('tsc (kubernetes-models interfaces)', tsc.stdout + tsc.stderr);

if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  console.error(`${errors.length} problem(s) in ${objectCount} objects`);
  process.exit(1);
}
console.log(`ok: ${builds.length} kustomizations (${builds.join(', ')}), ${objectCount} objects valid and policy-conformant`);
