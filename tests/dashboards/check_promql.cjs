#!/usr/bin/env node
// Checks every PromQL expression of the Grafana dashboards and of the
// Prometheus rules against the metric families the controller and the agents
// export (docs/metrics.md):
//   - each expression parses (Prometheus's own Lezer grammar, and promtool:
//     the expressions are written as recording rules into a scratch rules file
//     that `promtool check rules` must accept);
//   - it references only the allowed metric names or recording rules defined
//     in rules.yml, by name (no bare {__name__=...} selectors);
//   - its label matchers use only labels the metric carries;
//   - every panel (except rows and text) has a datasource and at least one
//     target, every target a refId, a datasource and an expression; every
//     template variable query is label_values(<allowed selector>, <label of it>).
//
// Usage: node check_promql.cjs NPM_DIR DASHBOARD_DIR RULES_FILE SCRATCH_DIR
// NPM_DIR holds node_modules (installed by npm_ci.sh). Exit 0 when clean.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { spawnSync } = require('child_process');

const [npmDir, dashboardDir, rulesFile, scratchDir] = process.argv.slice(2);
if (!scratchDir) {
  console.error('usage: check_promql.cjs NPM_DIR DASHBOARD_DIR RULES_FILE SCRATCH_DIR');
  process.exit(2);
}
const req = createRequire(path.join(path.resolve(npmDir), 'package.json'));
const { parser } = req('@prometheus-io/lezer-promql');
const YAML = req('yaml');

// Labels a scrape adds to every series (Prometheus / Prometheus Operator).
// Agents label their own series with `region`; no scrape adds it.
const SCRAPE_LABELS = ['instance', 'job', 'namespace', 'pod', 'service', 'container', 'endpoint'];
const STREAM = ['region', 'target', 'mode', 'size_class'];
const HIST = (labels) => ({ bucket: [...labels, 'le'], other: labels });

// The exported families: name -> label names (docs/metrics.md), and `up`,
// which Prometheus records for every scrape target.
const METRICS = {
  up: [],
  fleetcanary_ingest_commit_errors_total: [],
  fleetcanary_probes_total: [...STREAM, 'outcome'],
  fleetcanary_probe_received_bytes_total: STREAM,
  fleetcanary_platform_errors_total: ['region', 'target', 'mode'],
  fleetcanary_platform_invocations_total: ['region', 'target', 'mode'],
  fleetcanary_phantom_errors_total: ['region', 'target', 'mode'],
  fleetcanary_verdict: ['kind', ...STREAM, 'state'],
  fleetcanary_error_rate_upper_bound: STREAM,
  fleetcanary_agents: ['region', 'state'],
  fleetcanary_outbox_dropped_total: ['region'],
  fleetcanary_ingest_batches_total: [],
  fleetcanary_ingest_outcomes_total: [],
  fleetcanary_ingest_duplicates_total: [],
  fleetcanary_ingest_gaps_total: [],
  fleetcanary_sessions_active: [],
  fleetcanary_ingest_pending_outcomes: [],
  fleetcanary_ingest_pending_limit: [],
  fleetcanary_ingest_saturated: [],
  fleetcanary_ingest_sessions_paused: [],
  fleetcanary_regions_without_agents: [],
  fleetcanary_agent_probes_started_total: ['region'],
  fleetcanary_agent_in_flight: ['region'],
  fleetcanary_agent_outbox_depth: ['region'],
  fleetcanary_agent_outbox_dropped_total: ['region'],
  fleetcanary_agent_session_reconnects_total: ['region'],
  fleetcanary_agent_platform_metrics_enabled: ['region', 'target'],
  fleetcanary_agent_platform_last_success_timestamp_seconds: ['region'],
  fleetcanary_agent_credentials_expiry_seconds: ['region'],
};
for (const h of ['fleetcanary_probe_ttfb_seconds', 'fleetcanary_probe_duration_seconds']) {
  const { bucket, other } = HIST(STREAM);
  METRICS[`${h}_bucket`] = bucket;
  METRICS[`${h}_sum`] = other;
  METRICS[`${h}_count`] = other;
}

const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

// Grafana macros are not PromQL; give them a representative value to parse.
function expandGrafana(expr) {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
    .replace(/\$\{?__[a-z_]+\}?/g, '5m');
}

// Returns {metrics: [{name, labels:[...]}], syntaxError: string|null}.
function analyze(expr) {
  const tree = parser.parse(expr);
  const found = [];
  let syntaxError = null;
  const c = tree.cursor();
  do {
    if (c.type.isError && !syntaxError) {
      syntaxError = `syntax error at offset ${c.from}: "${expr.slice(Math.max(0, c.from - 20), c.from + 20)}"`;
    }
    if (c.name === 'VectorSelector') {
      const sel = c.node;
      const ident = sel.getChild('Identifier');
      const labels = [];
      const matchers = sel.getChild('LabelMatchers');
      if (matchers) {
        for (let m = matchers.firstChild; m; m = m.nextSibling) {
          const ln = m.getChild('LabelName');
          if (ln) labels.push(expr.slice(ln.from, ln.to));
          if (m.name === 'QuotedLabelName' || m.name === 'QuotedLabelMatcher') labels.push('__quoted__');
        }
      }
      found.push({ name: ident ? expr.slice(ident.from, ident.to) : null, labels });
    }
  } while (c.next());
  return { metrics: found, syntaxError };
}

// Recording rules: name -> labels (the grouping of their outermost `by`).
function loadRules(file) {
  const doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  const recorded = {};
  const exprs = [];
  for (const g of doc.groups || []) {
    for (const r of g.rules || []) {
      const where = `${path.basename(file)} ${r.record || r.alert}`;
      exprs.push({ where, expr: r.expr });
      if (r.record) {
        const m = /by\s*\(([^)]*)\)/.exec(r.expr);
        const labels = m ? m[1].split(',').map((s) => s.trim()).filter((s) => s && s !== 'le') : [];
        recorded[r.record] = labels;
      }
    }
  }
  return { recorded, exprs };
}

const { recorded, exprs: ruleExprs } = loadRules(rulesFile);
const known = { ...METRICS, ...recorded };

let exprCount = 0;
const promtoolRules = [];
function checkExpr(where, rawExpr, { grafana }) {
  exprCount++;
  if (typeof rawExpr !== 'string' || !rawExpr.trim()) return fail(where, 'empty expression');
  const expr = grafana ? expandGrafana(rawExpr) : rawExpr;
  const { metrics, syntaxError } = analyze(expr);
  if (syntaxError) fail(where, syntaxError);
  if (metrics.length === 0 && !/^\s*vector\(/.test(expr)) fail(where, 'references no metric');
  for (const { name, labels } of metrics) {
    if (!name) {
      fail(where, 'selector without a metric name');
      continue;
    }
    if (!(name in known)) {
      fail(where, `unknown metric "${name}" (not exported and not a recording rule in rules.yml)`);
      continue;
    }
    const allowed = new Set([...known[name], ...SCRAPE_LABELS, '__name__']);
    for (const l of labels) {
      if (!allowed.has(l)) fail(where, `metric "${name}" has no label "${l}"`);
    }
  }
  if (grafana) promtoolRules.push({ record: `dashboard:expr_${promtoolRules.length}:check`, expr, where });
}

for (const { where, expr } of ruleExprs) checkExpr(where, expr, { grafana: false });

function checkPanel(file, p) {
  const where = `${file} panel ${p.id} "${p.title}"`;
  if (p.type === 'row') {
    for (const inner of p.panels || []) checkPanel(file, inner);
    return;
  }
  if (p.type === 'text') return;
  if (!p.datasource || !p.datasource.uid || !p.datasource.type) fail(where, 'no datasource');
  if (!Array.isArray(p.targets) || p.targets.length === 0) fail(where, 'no targets');
  const refIds = new Set();
  for (const t of p.targets || []) {
    const tw = `${where} target ${t.refId}`;
    if (!t.refId) fail(tw, 'no refId');
    if (refIds.has(t.refId)) fail(tw, 'duplicate refId');
    refIds.add(t.refId);
    if (!t.datasource || !t.datasource.uid) fail(tw, 'no datasource');
    checkExpr(tw, t.expr, { grafana: true });
  }
}

const files = fs.readdirSync(dashboardDir).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) fail(dashboardDir, 'no dashboards');
const uids = new Set();
for (const file of files) {
  let d;
  try {
    d = JSON.parse(fs.readFileSync(path.join(dashboardDir, file), 'utf8'));
  } catch (e) {
    fail(file, `not JSON: ${e.message}`);
    continue;
  }
  if (!d.uid) fail(file, 'no uid');
  if (uids.has(d.uid)) fail(file, `duplicate uid ${d.uid}`);
  uids.add(d.uid);
  const vars = (d.templating && d.templating.list) || [];
  const names = vars.map((v) => v.name);
  for (const need of ['datasource', 'region', 'target', 'mode']) {
    if (!names.includes(need)) fail(file, `no template variable "${need}"`);
  }
  for (const v of vars.filter((x) => x.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : v.query && v.query.query;
    const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q || '');
    if (!m) {
      fail(`${file} variable ${v.name}`, `query is not label_values(selector, label): ${q}`);
      continue;
    }
    checkExpr(`${file} variable ${v.name}`, m[1], { grafana: true });
    const { metrics } = analyze(expandGrafana(m[1]));
    for (const { name } of metrics) {
      if (name in known && !known[name].includes(m[2])) {
        fail(`${file} variable ${v.name}`, `metric "${name}" has no label "${m[2]}"`);
      }
    }
  }
  for (const a of (d.annotations && d.annotations.list) || []) {
    if (a.builtIn) continue;
    const aw = `${file} annotation "${a.name}"`;
    if (!a.datasource || !a.datasource.uid) fail(aw, 'no datasource');
    checkExpr(aw, a.target && a.target.expr, { grafana: true });
  }
  for (const p of d.panels || []) checkPanel(file, p);
}

// Prometheus's own parser: every dashboard expression as a recording rule.
fs.mkdirSync(scratchDir, { recursive: true });
const scratch = path.join(scratchDir, 'dashboard-exprs.rules.yml');
fs.writeFileSync(
  scratch,
  YAML.stringify({ groups: [{ name: 'dashboards', rules: promtoolRules.map(({ record, expr }) => ({ record, expr })) }] }),
);
const pt = spawnSync('promtool', ['check', 'rules', scratch], { encoding: 'utf8' });
if (pt.error) fail('promtool', `cannot run promtool: ${pt.error.message} (scripts/install-deps.sh installs it)`);
else if (pt.status !== 0) fail('promtool check rules (dashboard expressions)', pt.stdout + pt.stderr);

if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  console.error(`${errors.length} problem(s) in ${exprCount} expressions`);
  process.exit(1);
}
console.log(`ok: ${files.length} dashboards, ${exprCount} expressions (${promtoolRules.length} from dashboards, parsed by promtool), metrics and labels allowed`);
