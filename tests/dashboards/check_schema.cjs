#!/usr/bin/env node
// Validates the Grafana dashboards against Grafana's published schema: the
// TypeScript types of the `@grafana/schema` npm package (pinned in
// package.json). For each dashboard it writes a .ts file that assigns the JSON
// to the `Dashboard` type, and each panel's `options` / `fieldConfig.defaults.custom`
// to the Options / FieldConfig types of its panel plugin, then runs
// `tsc --noEmit` (strict). Object literals get TypeScript's excess-property
// checks, so misspelled or unknown fields fail as well as wrong types.
//
// Panel targets and annotation queries are typed with the Prometheus data
// source's query model (PromQuery), which @grafana/schema leaves open.
//
// JSON carries the *values* of Grafana's string enums ("absolute", "table"),
// so the types are mapped with Json<T>, which turns each string enum into the
// union of its values — the exact set JSON may hold.
//
// Usage: node check_schema.cjs NPM_DIR DASHBOARD_DIR [GEN_NAME]
// NPM_DIR holds node_modules (installed by npm_ci.sh); the generated files go
// to NPM_DIR/GEN_NAME/ (default "gen") so that they resolve the packages from
// there; runs that may overlap use different GEN_NAMEs.
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const [npmDir, dashboardDir] = process.argv.slice(2, 4).map((p) => p && path.resolve(p));
const genName = process.argv[4] || 'gen';
if (!dashboardDir) {
  console.error('usage: check_schema.cjs NPM_DIR DASHBOARD_DIR [GEN_NAME]');
  process.exit(2);
}

// Panel plugin id -> module of its generated types in @grafana/schema.
const PANEL_TYPES = {
  timeseries: { module: 'timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen', fieldConfig: true },
  stat: { module: 'stat/panelcfg/x/StatPanelCfg_types.gen', fieldConfig: false },
  table: { module: 'table/panelcfg/x/TablePanelCfg_types.gen', fieldConfig: true },
  'state-timeline': { module: 'statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen', fieldConfig: true },
};
const RAW = '@grafana/schema/dist/esm/raw/composable/';

const genDir = path.join(npmDir, genName);
fs.rmSync(genDir, { recursive: true, force: true });
fs.mkdirSync(genDir, { recursive: true });

fs.writeFileSync(
  path.join(genDir, 'json.ts'),
  `// JSON view of a schema type: string enums become the union of their values.
export type Json<T> = T extends string
  ? \`\${T}\`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;
// The Prometheus data source's query model (its plugin's PromQuery; the schema
// leaves a panel target's fields to the data source plugin).
import type { DataQuery, AnnotationQuery, AnnotationContainer, Dashboard } from '@grafana/schema';
export interface PromQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  exemplar?: boolean;
}
// Prometheus annotation options the plugin reads from the annotation itself.
export interface PromAnnotation extends AnnotationQuery<PromQuery> {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}
export type PromDashboard = Omit<Dashboard, 'annotations'> & {
  annotations?: Omit<AnnotationContainer, 'list'> & { list?: PromAnnotation[] };
};
// Grafana fills panel options it is not given with defaults.
export type DeepPartial<T> = T extends Array<infer U>
  ? Array<DeepPartial<U>>
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;
`,
);

const problems = [];
const files = fs.readdirSync(dashboardDir).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) problems.push(`no dashboards in ${dashboardDir}`);

function flatPanels(panels) {
  const out = [];
  for (const p of panels || []) {
    out.push(p);
    if (p.type === 'row') out.push(...flatPanels(p.panels));
  }
  return out;
}

for (const file of files) {
  const text = fs.readFileSync(path.join(dashboardDir, file), 'utf8');
  const d = JSON.parse(text);
  const imports = new Set();
  const lines = [];
  for (const p of flatPanels(d.panels)) {
    if (p.type === 'row') continue;
    const t = PANEL_TYPES[p.type];
    if (!t) {
      problems.push(`${file} panel ${p.id}: panel type "${p.type}" has no schema mapping in check_schema.cjs`);
      continue;
    }
    const alias = p.type.replace(/[^a-z]/g, '_');
    imports.add(
      `import type { Options as ${alias}_Options${t.fieldConfig ? `, FieldConfig as ${alias}_FieldConfig` : ''} } from '${RAW}${t.module}';`,
    );
    lines.push(`export const panel_${p.id}_targets: Json<PromQuery[]> = ${JSON.stringify(p.targets || [], null, 2)};`);
    lines.push(`export const panel_${p.id}_options: Json<DeepPartial<${alias}_Options>> = ${JSON.stringify(p.options || {}, null, 2)};`);
    const custom = p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.custom;
    if (custom !== undefined) {
      if (!t.fieldConfig) problems.push(`${file} panel ${p.id}: ${p.type} has no custom field config`);
      else lines.push(`export const panel_${p.id}_custom: Json<DeepPartial<${alias}_FieldConfig>> = ${JSON.stringify(custom, null, 2)};`);
    }
  }
  const ts = [
    `// Generated by tests/dashboards/check_schema.cjs from ${file}.`,
    `import type { Json, DeepPartial, PromDashboard, PromQuery } from './json';`,
    ...imports,
    '',
    `export const dashboard: Json<PromDashboard> = ${text.trim()};`,
    '',
    ...lines,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(genDir, file.replace(/\.json$/, '.ts')), ts);
}

fs.writeFileSync(
  path.join(genDir, 'tsconfig.json'),
  JSON.stringify(
    {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'es2020',
        module: 'esnext',
        moduleResolution: 'bundler',
        skipLibCheck: true,
        types: [],
      },
      include: ['*.ts'],
    },
    null,
    2,
  ),
);

if (problems.length) {
  for (const p of problems) console.error(`FAIL ${p}`);
  process.exit(1);
}

const tsc = path.join(npmDir, 'node_modules', 'typescript', 'bin', 'tsc');
const res = spawnSync(process.execPath, [tsc, '-p', path.join(genDir, 'tsconfig.json')], { encoding: 'utf8' });
process.stdout.write(res.stdout);
process.stderr.write(res.stderr);
if (res.status !== 0) {
  console.error(`FAIL tsc found schema violations (generated sources in ${genDir})`);
  process.exit(1);
}
const schemaVersion = require(path.join(npmDir, 'node_modules', '@grafana', 'schema', 'package.json')).version;
console.log(`ok: ${files.length} dashboards conform to @grafana/schema ${schemaVersion} (tsc --noEmit, strict)`);
