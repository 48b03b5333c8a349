#!/usr/bin/env node
// Generates the Grafana dashboards in this folder (*.json) from one description,
// so that the five dashboards share their variables, datasource handling and
// panel defaults. The JSON files are committed (Grafana provisioning and the
// Kubernetes ConfigMaps read them directly); the test suite regenerates them
// into a temporary folder and fails when the committed files differ.
//
// Usage: node dashboards/grafana/generate.js [OUT_DIR]   (default: this folder)
//        node dashboards/grafana/generate.js --check [DIR]  exit 1 if DIR's
//        dashboards differ from what this script generates.
// Needs only Node.js; no packages.
'use strict';

const fs = require('fs');
const path = require('path');

const DS = { type: 'prometheus', uid: '${datasource}' };
// Label matchers every query applies; $region/$target/$mode are multi-value.
const SEL = 'region=~"$region", target=~"$target", mode=~"$mode"';
const SEL_REGION = 'region=~"$region"';

// ---------------------------------------------------------------- variables
function datasourceVar() {
  return {
    name: 'datasource',
    label: 'Prometheus',
    type: 'datasource',
    query: 'prometheus',
    hide: 0,
    includeAll: false,
    multi: false,
    options: [],
    refresh: 1,
    regex: '',
    skipUrlSync: false,
  };
}

function queryVar(name, label, query, { multi = true } = {}) {
  return {
    name,
    label,
    type: 'query',
    datasource: DS,
    query: { query, refId: `PrometheusVariableQueryEditor-${name}` },
    hide: 0,
    includeAll: multi,
    allValue: multi ? '.*' : undefined,
    multi,
    options: [],
    refresh: 2,
    regex: '',
    skipUrlSync: false,
    sort: 1,
  };
}

function standardVars({ singleRegion = false, sizeClass = false } = {}) {
  const vars = [
    datasourceVar(),
    queryVar('region', 'Region', 'label_values(fleetcanary_probes_total, region)', {
      multi: !singleRegion,
    }),
    queryVar('target', 'Target', `label_values(fleetcanary_probes_total{${SEL_REGION}}, target)`),
    queryVar('mode', 'Invoke mode', 'label_values(fleetcanary_probes_total, mode)'),
  ];
  if (sizeClass) {
    vars.push(
      queryVar(
        'size_class',
        'Body size',
        `label_values(fleetcanary_probes_total{${SEL}}, size_class)`,
      ),
    );
  }
  return vars;
}

// ------------------------------------------------------------------- panels
let nextId = 1;

function target(expr, legendFormat, extra = {}) {
  return { datasource: DS, expr, legendFormat, range: true, instant: false, ...extra };
}

function withRefIds(targets) {
  return targets.map((t, i) => ({ ...t, refId: String.fromCharCode(65 + i) }));
}

function timeseries(title, description, gridPos, targets, { unit = 'short', stack = false, min } = {}) {
  return {
    id: nextId++,
    type: 'timeseries',
    title,
    description,
    datasource: DS,
    gridPos,
    targets: withRefIds(targets),
    fieldConfig: {
      defaults: {
        unit,
        min,
        color: { mode: 'palette-classic' },
        custom: {
          drawStyle: 'line',
          lineWidth: 1,
          fillOpacity: stack ? 60 : 10,
          showPoints: 'never',
          spanNulls: false,
          stacking: { mode: stack ? 'normal' : 'none', group: 'A' },
        },
        thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['lastNotNull', 'max'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  };
}

function stat(title, description, gridPos, expr, { unit = 'short', steps } = {}) {
  return {
    id: nextId++,
    type: 'stat',
    title,
    description,
    datasource: DS,
    gridPos,
    targets: withRefIds([target(expr, '', { instant: true, range: false })]),
    fieldConfig: {
      defaults: {
        unit,
        color: { mode: 'thresholds' },
        thresholds: {
          mode: 'absolute',
          steps: steps || [{ color: 'green', value: null }],
        },
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      textMode: 'auto',
    },
  };
}

function table(title, description, gridPos, expr) {
  return {
    id: nextId++,
    type: 'table',
    title,
    description,
    datasource: DS,
    gridPos,
    targets: withRefIds([target(expr, '', { instant: true, range: false, format: 'table' })]),
    fieldConfig: {
      defaults: { custom: { align: 'auto' }, thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] } },
      overrides: [],
    },
    options: { showHeader: true, cellHeight: 'sm' },
    transformations: [
      { id: 'organize', options: { excludeByName: { Time: true, Value: true, __name__: true } } },
    ],
  };
}

function row(title, y) {
  return { id: nextId++, type: 'row', title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] };
}

const STATE_CODES = [
  ['HEALTHY', 1, 'green'],
  ['SUSPECT', 2, 'yellow'],
  ['REGRESSION', 3, 'red'],
  ['RECOVERING', 4, 'orange'],
  ['FIX_CONFIRMED', 5, 'blue'],
];

// One numeric code per (kind, stream) from the verdict state set.
function verdictCodeExpr(selector) {
  const parts = STATE_CODES.map(
    ([s, code]) => `fleetcanary_verdict{${selector}, state="${s}"} * ${code}`,
  );
  return `max by (kind, region, target, mode, size_class) (\n    ${parts.join('\n  or ')}\n)`;
}

function stateTimeline(title, description, gridPos, expr) {
  const mappings = [
    {
      type: 'value',
      options: Object.fromEntries(
        STATE_CODES.map(([s, code, color], i) => [String(code), { text: s, color, index: i }]),
      ),
    },
  ];
  return {
    id: nextId++,
    type: 'state-timeline',
    title,
    description,
    datasource: DS,
    gridPos,
    targets: withRefIds([
      target(expr, '{{kind}} {{region}} {{target}} {{mode}} {{size_class}}'),
    ]),
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        mappings,
        thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
        custom: { fillOpacity: 80, lineWidth: 0 },
      },
      overrides: [],
    },
    options: {
      mergeValues: true,
      showValue: 'never',
      alignValue: 'left',
      rowHeight: 0.9,
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'single', sort: 'none' },
    },
  };
}

// ---------------------------------------------------------------- dashboards
function dashboard(uid, title, description, panels, { vars = standardVars(), annotations = [] } = {}) {
  return {
    uid,
    title,
    description,
    tags: ['fleetcanary'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '1m',
    time: { from: 'now-6h', to: 'now' },
    timezone: 'utc',
    fiscalYearStartMonth: 0,
    liveNow: false,
    links: [
      { title: 'fleetcanary', type: 'dashboards', tags: ['fleetcanary'], asDropdown: true, includeVars: true, keepTime: true, icon: 'external link', targetBlank: false, tooltip: '', url: '' },
    ],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        ...annotations,
      ],
    },
    templating: { list: vars },
    panels,
  };
}

function regressionAnnotation() {
  return {
    name: 'Regressions',
    datasource: DS,
    enable: true,
    hide: false,
    iconColor: 'red',
    target: {
      refId: 'Anno',
      expr: `fleetcanary_verdict{${SEL}, state="REGRESSION"} == 1`,
      interval: '60s',
    },
    titleFormat: '{{kind}} REGRESSION',
    textFormat: '{{region}} {{target}} {{mode}} {{size_class}}',
    tagKeys: 'kind,region,target,mode',
    useValueForTime: false,
  };
}

function fixAnnotation() {
  return {
    ...regressionAnnotation(),
    name: 'Fixes confirmed',
    iconColor: 'blue',
    target: {
      refId: 'Anno',
      expr: `fleetcanary_verdict{${SEL}, state="FIX_CONFIRMED"} == 1`,
      interval: '60s',
    },
    titleFormat: '{{kind}} FIX_CONFIRMED',
  };
}

const ERR = 'outcome!~"OK|AGENT_ERROR"';
const ALL = 'outcome!="AGENT_ERROR"';

function fleetOverview() {
  nextId = 1;
  const bad = [
    { color: 'green', value: null },
    { color: 'red', value: 1 },
  ];
  return dashboard(
    'fleetcanary-overview',
    'fleetcanary / Fleet overview',
    'Every region, target and invoke mode at a glance: verdicts, client-visible and phantom error ratios, probe volume and agents.',
    [
      // Top row: what needs attention now, then the verdicts themselves.
      ...[
        ['REGRESSION', 'Verdicts (any kind) currently in REGRESSION.', bad],
        ['SUSPECT', 'Verdicts currently SUSPECT (a change is pending).', [{ color: 'green', value: null }, { color: 'yellow', value: 1 }]],
        ['RECOVERING', 'Verdicts RECOVERING: the regression ended, the fix is not proven yet.', [{ color: 'green', value: null }, { color: 'orange', value: 1 }]],
        ['FIX_CONFIRMED', 'Verdicts whose fix is proven (error rate below the bound with the configured confidence).', [{ color: 'green', value: null }, { color: 'blue', value: 1 }]],
      ].map(([state, description, steps], i) =>
        stat(state, description, { h: 4, w: 4, x: 4 * i, y: 0 },
          `count(fleetcanary_verdict{${SEL}, state="${state}"} == 1) or vector(0)`, { steps })),
      stat('Phantom errors (1 h)', 'Platform errors no client observed, over the last hour (0 on a healthy fleet; the series exist from the first scrape).', { h: 4, w: 4, x: 16, y: 0 },
        `sum(increase(fleetcanary_phantom_errors_total{${SEL}}[1h])) or vector(0)`, { steps: bad }),
      stat('Live agents', 'Agents with a live session, in the selected regions.', { h: 4, w: 4, x: 20, y: 0 },
        `sum(fleetcanary:agents_live:sum{${SEL_REGION}}) or vector(0)`,
        { steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] }),
      table('Verdicts not HEALTHY', 'Current verdicts in any state but HEALTHY.', { h: 8, w: 24, x: 0, y: 4 },
        `fleetcanary_verdict{${SEL}, state!="HEALTHY"} == 1`),
      timeseries('Client-visible error ratio by region and mode',
        'Failed probes / probes (AGENT_ERROR excluded), over the selected targets and sizes.', { h: 9, w: 12, x: 0, y: 12 },
        [target(`sum by (region, mode) (rate(fleetcanary_probes_total{${SEL}, ${ERR}}[$__rate_interval]))\n/\nsum by (region, mode) (rate(fleetcanary_probes_total{${SEL}, ${ALL}}[$__rate_interval]))`, '{{region}} {{mode}}')],
        { unit: 'percentunit', min: 0 }),
      timeseries('Phantom error ratio by region and mode',
        'Platform errors that no client observed, per platform invocation (the January 2024 signature).', { h: 9, w: 12, x: 12, y: 12 },
        [target(`fleetcanary:phantom_error_ratio:rate5m{${SEL}}`, '{{region}} {{target}} {{mode}}')],
        { unit: 'percentunit', min: 0 }),
      timeseries('Platform vs client error ratio',
        'Platform-reported (CloudWatch Errors/Invocations) vs client-observed error ratio per mode.', { h: 9, w: 12, x: 0, y: 21 },
        [
          target(`fleetcanary:platform_error_ratio:rate5m{${SEL}}`, 'platform {{region}} {{target}} {{mode}}'),
          target(`sum by (region, target, mode) (rate(fleetcanary_probes_total{${SEL}, ${ERR}}[$__rate_interval]))\n/\nsum by (region, target, mode) (rate(fleetcanary_probes_total{${SEL}, ${ALL}}[$__rate_interval]))`, 'client {{region}} {{target}} {{mode}}'),
        ],
        { unit: 'percentunit', min: 0 }),
      timeseries('Probe rate by region', 'Client probes per second (AGENT_ERROR excluded).', { h: 9, w: 12, x: 12, y: 21 },
        [target(`sum by (region, mode) (fleetcanary:probes:rate5m{${SEL}})`, '{{region}} {{mode}}')],
        { unit: 'reqps', min: 0 }),
    ],
    { annotations: [regressionAnnotation(), fixAnnotation()] },
  );
}

function streamVsBuffered() {
  nextId = 1;
  const S = `${SEL}, size_class=~"$size_class"`;
  const perMode = (mode) =>
    `fleetcanary:probe_error_ratio:rate5m{region=~"$region", target=~"$target", mode="${mode}", size_class=~"$size_class"}`;
  return dashboard(
    'fleetcanary-stream-vs-buffered',
    'fleetcanary / Stream vs buffered by body size',
    'The A/B comparison: the same function through its RESPONSE_STREAM and BUFFERED Function URLs, across the body-size ladder (dose-response).',
    [
      timeseries('Error ratio, stream mode, by body size', 'Client-visible error ratio of the stream URL per size class.', { h: 9, w: 12, x: 0, y: 0 },
        [target(perMode('stream'), '{{region}} {{target}} {{size_class}}')], { unit: 'percentunit', min: 0 }),
      timeseries('Error ratio, buffered mode, by body size', 'Client-visible error ratio of the buffered URL per size class (the concurrent control).', { h: 9, w: 12, x: 12, y: 0 },
        [target(perMode('buffered'), '{{region}} {{target}} {{size_class}}')], { unit: 'percentunit', min: 0 }),
      timeseries('Stream minus buffered error ratio', 'Positive: streaming fails more often than buffering for the same size at the same time.', { h: 9, w: 12, x: 0, y: 9 },
        [target(`sum by (region, target, size_class) (${perMode('stream')})\n-\nsum by (region, target, size_class) (${perMode('buffered')})`, '{{region}} {{target}} {{size_class}}')],
        { unit: 'percentunit' }),
      timeseries('Fix-confirmation upper bound on the error rate', 'Upper confidence bound on the error rate after a declared fix (fleetcanary_error_rate_upper_bound).', { h: 9, w: 12, x: 12, y: 9 },
        [target(`fleetcanary_error_rate_upper_bound{${S}}`, '{{region}} {{target}} {{mode}} {{size_class}}')], { unit: 'percentunit', min: 0 }),
      timeseries('TTFB p99 by mode and size', 'Time to first response byte, 99th percentile over 5 minutes.', { h: 9, w: 12, x: 0, y: 18 },
        [target(`fleetcanary:probe_ttfb_seconds:p99_5m{${S}}`, '{{region}} {{mode}} {{size_class}}')], { unit: 's', min: 0 }),
      timeseries('Duration p99 by mode and size', 'Whole invocation duration, 99th percentile over 5 minutes.', { h: 9, w: 12, x: 12, y: 18 },
        [target(`fleetcanary:probe_duration_seconds:p99_5m{${S}}`, '{{region}} {{mode}} {{size_class}}')], { unit: 's', min: 0 }),
      timeseries('Received bytes per second by mode', 'Body bytes received by the agents.', { h: 9, w: 12, x: 0, y: 27 },
        [target(`sum by (mode, size_class) (fleetcanary:probe_received_bytes:rate5m{${S}})`, '{{mode}} {{size_class}}')], { unit: 'Bps', min: 0 }),
      timeseries('Failures by outcome class and mode', 'What went wrong, per mode: TRUNCATED, RESET, STALLED, HTTP_5XX, ...', { h: 9, w: 12, x: 12, y: 27 },
        [target(`sum by (mode, outcome) (fleetcanary:probes_by_outcome:rate5m{${S}, ${ERR}})`, '{{mode}} {{outcome}}')], { unit: 'reqps', stack: true, min: 0 }),
    ],
    { vars: standardVars({ sizeClass: true }), annotations: [regressionAnnotation()] },
  );
}

function regionDrilldown() {
  nextId = 1;
  const S = SEL;
  return dashboard(
    'fleetcanary-region',
    'fleetcanary / Region drill-down',
    'One region in detail: outcome classes, latency, platform reconciliation, agents and outbox.',
    [
      row('Outcomes', 0),
      timeseries('Failures by outcome class', 'Probe failures per second by class (OK excluded).', { h: 9, w: 12, x: 0, y: 1 },
        [target(`sum by (outcome) (fleetcanary:probes_by_outcome:rate5m{${S}, outcome!="OK"})`, '{{outcome}}')], { unit: 'reqps', stack: true, min: 0 }),
      timeseries('Error ratio per stream', 'Client-visible error ratio per target, mode and size.', { h: 9, w: 12, x: 12, y: 1 },
        [target(`fleetcanary:probe_error_ratio:rate5m{${S}}`, '{{target}} {{mode}} {{size_class}}')], { unit: 'percentunit', min: 0 }),
      row('Latency', 10),
      timeseries('TTFB p50 and p99', 'Time to first response byte.', { h: 9, w: 12, x: 0, y: 11 },
        [
          target(`fleetcanary:probe_ttfb_seconds:p50_5m{${S}}`, 'p50 {{target}} {{mode}} {{size_class}}'),
          target(`fleetcanary:probe_ttfb_seconds:p99_5m{${S}}`, 'p99 {{target}} {{mode}} {{size_class}}'),
        ], { unit: 's', min: 0 }),
      timeseries('Duration p50 and p99', 'Whole invocation duration.', { h: 9, w: 12, x: 12, y: 11 },
        [
          target(`fleetcanary:probe_duration_seconds:p50_5m{${S}}`, 'p50 {{target}} {{mode}} {{size_class}}'),
          target(`fleetcanary:probe_duration_seconds:p99_5m{${S}}`, 'p99 {{target}} {{mode}} {{size_class}}'),
        ], { unit: 's', min: 0 }),
      row('Platform reconciliation', 20),
      timeseries('Platform invocations and errors', 'What the platform (CloudWatch) reports per mode.', { h: 9, w: 12, x: 0, y: 21 },
        [
          target(`sum by (target, mode) (rate(fleetcanary_platform_invocations_total{${S}}[$__rate_interval]))`, 'invocations {{target}} {{mode}}'),
          target(`sum by (target, mode) (rate(fleetcanary_platform_errors_total{${S}}[$__rate_interval]))`, 'errors {{target}} {{mode}}'),
          target(`sum by (target, mode) (rate(fleetcanary_phantom_errors_total{${S}}[$__rate_interval]))`, 'phantom {{target}} {{mode}}'),
        ], { unit: 'reqps', min: 0 }),
      timeseries('Phantom error ratio', 'Platform errors no client observed, per invocation.', { h: 9, w: 12, x: 12, y: 21 },
        [target(`fleetcanary:phantom_error_ratio:rate5m{${S}}`, '{{target}} {{mode}}')], { unit: 'percentunit', min: 0 }),
      row('Agents', 30),
      timeseries('Agents by state', 'LIVE, LOST and DRAINING agents in the region.', { h: 8, w: 12, x: 0, y: 31 },
        [target(`sum by (state) (fleetcanary_agents{${SEL_REGION}})`, '{{state}}')], { min: 0 }),
      timeseries('Outcomes dropped by agents', 'Outcomes dropped because an agent outbox was full.', { h: 8, w: 12, x: 12, y: 31 },
        [target(`sum by (region) (increase(fleetcanary_outbox_dropped_total{${SEL_REGION}}[$__rate_interval]))`, '{{region}}')], { min: 0 }),
    ],
    { vars: standardVars({ singleRegion: true }), annotations: [regressionAnnotation(), fixAnnotation()] },
  );
}

function verdicts() {
  nextId = 1;
  return dashboard(
    'fleetcanary-verdicts',
    'fleetcanary / Verdicts and incident timeline',
    'Verdict state over time for every kind (STREAM_HEALTH, MODE_DIFFERENCE, SIZE_TREND, PHANTOM_ERRORS, HARD_DOWN): HEALTHY, SUSPECT, REGRESSION, RECOVERING, FIX_CONFIRMED.',
    [
      stateTimeline('Verdict timeline', 'One row per verdict that was not HEALTHY at some time in the dashboard range; colour = state.', { h: 14, w: 24, x: 0, y: 0 },
        `${verdictCodeExpr(SEL)}\nand on (kind, region, target, mode, size_class)\n(max_over_time(fleetcanary_verdict{${SEL}, state!="HEALTHY"}[$__range] @ end()) == 1)`),
      table('Current verdicts not HEALTHY', 'Kind, stream and state of every verdict that is not HEALTHY now.', { h: 8, w: 12, x: 0, y: 14 },
        `fleetcanary_verdict{${SEL}, state!="HEALTHY"} == 1`),
      timeseries('Verdicts by state', 'How many verdicts are in each state.', { h: 8, w: 12, x: 12, y: 14 },
        [target(`sum by (state) (fleetcanary_verdict{${SEL}})`, '{{state}}')], { min: 0 }),
      timeseries('Fix-confirmation upper bound', 'Proven upper bound on the error rate after a fix, per stream.', { h: 9, w: 12, x: 0, y: 22 },
        [target(`fleetcanary_error_rate_upper_bound{${SEL}}`, '{{region}} {{target}} {{mode}} {{size_class}}')], { unit: 'percentunit', min: 0 }),
      timeseries('Error ratio of streams not HEALTHY', 'Client-visible error ratio of the streams whose STREAM_HEALTH verdict is not HEALTHY.', { h: 9, w: 12, x: 12, y: 22 },
        [target(`fleetcanary:probe_error_ratio:rate5m{${SEL}}\nand on (region, target, mode, size_class)\n(fleetcanary_verdict{${SEL}, kind="STREAM_HEALTH", state!="HEALTHY"} == 1)`, '{{region}} {{target}} {{mode}} {{size_class}}')],
        { unit: 'percentunit', min: 0 }),
    ],
    { annotations: [regressionAnnotation(), fixAnnotation()] },
  );
}

function agentsPipeline() {
  nextId = 1;
  // Agent metrics carry their own `region` label (scrape configs add none).
  return dashboard(
    'fleetcanary-agents',
    'fleetcanary / Agents and pipeline health',
    'The path from agent to verdict: agents and sessions, agent outboxes, ingest (exactly-once batches, duplicates, gaps, flow control).',
    [
      row('Controller', 0),
      timeseries('Agents by region and state', 'Registered agents per region and state.', { h: 8, w: 12, x: 0, y: 1 },
        [target(`sum by (region, state) (fleetcanary_agents{${SEL_REGION}})`, '{{region}} {{state}}')], { min: 0 }),
      timeseries('Active sessions and uncovered regions', 'Agent sessions open on the controller; scheduled regions without agents.', { h: 8, w: 12, x: 12, y: 1 },
        [
          target('sum(fleetcanary_sessions_active)', 'sessions'),
          target('max(fleetcanary_regions_without_agents)', 'regions without agents'),
        ], { min: 0 }),
      timeseries('Ingest', 'Outcome batches and outcomes applied per second; duplicates (resends) and sequence gaps.', { h: 8, w: 8, x: 0, y: 9 },
        [
          target('sum(rate(fleetcanary_ingest_batches_total[$__rate_interval]))', 'batches'),
          target('sum(rate(fleetcanary_ingest_outcomes_total[$__rate_interval]))', 'outcomes'),
          target('sum(rate(fleetcanary_ingest_duplicates_total[$__rate_interval]))', 'duplicates'),
          target('sum(rate(fleetcanary_ingest_gaps_total[$__rate_interval]))', 'gaps'),
        ], { unit: 'ops', min: 0 }),
      timeseries('Ingest flow control', 'Outcomes pending in the controller (queued, committing, or held by the verdict engine) against the limit at which ingest saturates; while saturated the agent sessions are paused until half the limit is pending.', { h: 8, w: 8, x: 8, y: 9 },
        [
          target('sum(fleetcanary_ingest_pending_outcomes)', 'pending outcomes'),
          target('max(fleetcanary_ingest_pending_limit)', 'limit'),
          target('sum(fleetcanary_ingest_sessions_paused)', 'sessions paused'),
        ], { min: 0 }),
      timeseries('Outcomes dropped (reported by agents)', 'Dropped because an outbox was full, per region.', { h: 8, w: 8, x: 16, y: 9 },
        [target(`sum by (region) (increase(fleetcanary_outbox_dropped_total{${SEL_REGION}}[$__rate_interval]))`, '{{region}}')], { min: 0 }),
      row('Agents', 17),
      timeseries('Probes started per second', 'Per agent pod.', { h: 8, w: 12, x: 0, y: 18 },
        [target(`sum by (region, pod) (rate(fleetcanary_agent_probes_started_total{${SEL_REGION}}[$__rate_interval]))`, '{{region}} {{pod}}')], { unit: 'ops', min: 0 }),
      timeseries('Probes in flight', 'Concurrent probes per agent.', { h: 8, w: 12, x: 12, y: 18 },
        [target(`sum by (region, pod) (fleetcanary_agent_in_flight{${SEL_REGION}})`, '{{region}} {{pod}}')], { min: 0 }),
      timeseries('Outbox depth', 'Outcomes waiting for the controller acknowledgement, per agent.', { h: 8, w: 8, x: 0, y: 26 },
        [target(`sum by (region, pod) (fleetcanary_agent_outbox_depth{${SEL_REGION}})`, '{{region}} {{pod}}')], { min: 0 }),
      timeseries('Outbox drops (agent side)', 'Outcomes the agent dropped, per agent.', { h: 8, w: 8, x: 8, y: 26 },
        [target(`sum by (region, pod) (increase(fleetcanary_agent_outbox_dropped_total{${SEL_REGION}}[$__rate_interval]))`, '{{region}} {{pod}}')], { min: 0 }),
      timeseries('Session reconnects', 'Reconnects of the agent session to the controller.', { h: 8, w: 8, x: 16, y: 26 },
        [target(`sum by (region, pod) (increase(fleetcanary_agent_session_reconnects_total{${SEL_REGION}}[$__rate_interval]))`, '{{region}} {{pod}}')], { min: 0 }),
      timeseries('Client probe rate by region', 'Probes per second the controller ingested, per region and mode.', { h: 8, w: 24, x: 0, y: 34 },
        [target(`sum by (region, mode) (fleetcanary:probes:rate5m{${SEL}})`, '{{region}} {{mode}}')], { unit: 'reqps', min: 0 }),
    ],
  );
}

const DASHBOARDS = {
  'fleet-overview.json': fleetOverview,
  'stream-vs-buffered.json': streamVsBuffered,
  'region-drilldown.json': regionDrilldown,
  'verdicts.json': verdicts,
  'agents-pipeline.json': agentsPipeline,
};

function check(dir) {
  let stale = 0;
  for (const [file, build] of Object.entries(DASHBOARDS)) {
    const p = path.join(dir, file);
    const want = JSON.stringify(build(), null, 2) + '\n';
    const have = fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : null;
    if (have !== want) {
      console.error(`${p}: ${have === null ? 'missing' : 'differs from the generator'}`);
      stale++;
    }
  }
  const extra = fs.readdirSync(dir).filter((f) => f.endsWith('.json') && !(f in DASHBOARDS));
  for (const f of extra) console.error(`${path.join(dir, f)}: not produced by the generator`);
  if (stale || extra.length) {
    console.error('regenerate with: node dashboards/grafana/generate.js');
    process.exit(1);
  }
  console.log(`ok: ${Object.keys(DASHBOARDS).length} dashboards match the generator`);
}

function main() {
  if (process.argv[2] === '--check') return check(path.resolve(process.argv[3] || __dirname));
  const out = path.resolve(process.argv[2] || __dirname);
  fs.mkdirSync(out, { recursive: true });
  for (const [file, build] of Object.entries(DASHBOARDS)) {
    // JSON.stringify drops undefined fields (e.g. allValue of single-value vars).
    fs.writeFileSync(path.join(out, file), JSON.stringify(build(), null, 2) + '\n');
  }
}

if (require.main === module) main();
module.exports = { DASHBOARDS };
