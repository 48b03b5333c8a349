// Contract test: the reference canary function (deploy/lambda, the code
// deployed on AWS) and the function-url-emulator's canary answer every
// request the same way. Each request below goes over HTTP to the real
// emulator binary (both invoke modes) and, as a Function URL event (payload
// format 2.0), to the reference handlers run in this process; status, the
// function's headers and the body must be equal byte for byte. Paths other
// than /canary are included: a Function URL forwards every path to the
// function, and so must the emulator.
//
// Usage: node function_contract_test.mjs <function-url-emulator binary>
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';

import { installAwsLambdaStandIn, ResponseStream } from '../../../deploy/lambda/test/awslambda_standin.mjs';

installAwsLambdaStandIn();
const { makeHandlers } = await import('../../../deploy/lambda/src/index.mjs');
const { DEFAULT_LIMITS } = await import('../../../deploy/lambda/src/canary.mjs');

const EMULATOR = process.argv[2];
// The headers the function sets; the platform's own (date, request id,
// trace id, content-length, transfer-encoding) are not the contract's.
const FUNCTION_HEADERS = ['content-type', 'cache-control', 'allow', 'x-canary-bytes', 'x-canary-seed',
  'x-canary-mode', 'x-canary-probe-id'];

const MAX = '18446744073709551615';
const CASES = [
  // Accepted.
  { path: '/canary?bytes=0' },
  { path: '/canary?bytes=1' },
  { path: '/canary?bytes=1000&seed=3' },
  { path: `/canary?bytes=17&seed=${MAX}` },
  { path: '/canary?bytes=100&chunk=7&gap_ms=0&seed=5' },
  { path: '/canary?bytes=4096&chunk=1000&gap_ms=1&seed=12' },
  { path: '/canary?bytes=007&seed=0010' },
  { path: '/canary?bytes=%35%30&seed=%31' },
  { path: '/canary?seed=9&bytes=33&foo=bar&&' },
  { path: '/canary?bytes=65536&seed=77' },
  { path: '/canary?bytes=4194304&seed=1' },
  { path: '/canary?bytes=10', headers: { 'x-canary-probe-id': 'probe-1_~!' } },
  // Bad queries.
  { path: '/canary' },
  { path: '/canary?' },
  { path: '/canary?bytes=' },
  { path: '/canary?bytes=abc' },
  { path: '/canary?bytes=-1' },
  { path: '/canary?bytes=1.5' },
  { path: '/canary?bytes=+5' },
  { path: '/canary?bytes=1&bytes=2' },
  { path: '/canary?bytes=4194305' },
  { path: '/canary?bytes=67108865' },
  { path: '/canary?bytes=123456789012345678901' },
  { path: '/canary?bytes=10&seed=18446744073709551616' },
  { path: '/canary?bytes=10&seed=abcdefghijklmnopqrstuvwxyz0123456789' },
  { path: '/canary?bytes=10&chunk=0' },
  { path: '/canary?bytes=10&chunk=1048577' },
  { path: '/canary?bytes=10&gap_ms=10001' },
  { path: '/canary?bytes=100&chunk=1&gap_ms=1000' },
  { path: '/canary?bytes=602&chunk=1&gap_ms=100' },
  { path: '/canary?bytes=10', headers: { 'x-canary-probe-id': 'has space' } },
  { path: '/canary?bytes=10', headers: { 'x-canary-probe-id': 'x'.repeat(129) } },
  // Wrong paths: forwarded to the function, which answers 404.
  { path: '/' },
  { path: '/nope' },
  { path: '/canary/extra?bytes=1' },
  { path: '/CANARY?bytes=1' },
  { path: '/canary/?bytes=1' },
  { path: '/index.html?bytes=1' },
  // Wrong methods.
  { path: '/canary?bytes=1', method: 'POST' },
  { path: '/canary?bytes=1', method: 'DELETE' },
  { path: '/nope', method: 'PUT' },
];

/** Starts the emulator; resolves to {process, urls: {BUFFERED, RESPONSE_STREAM}}. */
async function startEmulator(dir) {
  const config = join(dir, 'emulator.yaml');
  writeFileSync(config, 'regions:\n  - name: us-east-1\nlisten_host: 127.0.0.1\n');
  const child = spawn(EMULATOR, [`--config=${config}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const urls = {};
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    if (line === 'ready') break;
    const [kind, ...rest] = line.split(' ');
    const fields = Object.fromEntries(rest.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
    if (kind === 'url') urls[fields.mode] = fields.url;
  }
  lines.close();
  assert.ok(urls.BUFFERED && urls.RESPONSE_STREAM, `emulator printed no URLs: ${JSON.stringify(urls)}`);
  return { child, urls };
}

/** One HTTP exchange with the emulator. */
function fetchEmulator(base, { path, method = 'GET', headers = {} }) {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const sent = method === 'GET' ? headers : { 'content-length': '0', ...headers };
    const req = http.request({
      host: url.hostname, port: url.port, method, path, headers: sent, agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The same request through the reference handler, as a Function URL would. */
async function invokeReference(handlers, mode, { path, method = 'GET', headers = {} }) {
  const q = path.indexOf('?');
  const event = {
    version: '2.0',
    rawPath: q < 0 ? path : path.slice(0, q),
    rawQueryString: q < 0 ? '' : path.slice(q + 1),
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])),
    requestContext: { http: { method, path: q < 0 ? path : path.slice(0, q) } },
    isBase64Encoded: false,
  };
  const lower = (h) => Object.fromEntries(Object.entries(h ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  if (mode === 'BUFFERED') {
    const r = await handlers.buffered(event);
    return {
      status: r.statusCode,
      headers: lower(r.headers),
      body: r.isBase64Encoded ? Buffer.from(r.body, 'base64') : Buffer.from(r.body ?? '', 'utf8'),
    };
  }
  const stream = new ResponseStream();
  await handlers.streamBody(event, stream);
  const { prelude, body } = stream.parse();
  return { status: prelude.statusCode, headers: lower(prelude.headers), body };
}

test('the emulator and deploy/lambda answer every request alike', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'function-contract-'));
  const { child, urls } = await startEmulator(dir);
  // The reference function with its default limits (whatever CANARY_MAX_*
  // says here); gaps are not waited for (timing is not compared).
  const handlers = makeHandlers({
    limits: DEFAULT_LIMITS,
    sleep: async () => {},
    httpResponseStream: globalThis.awslambda.HttpResponseStream,
  });
  let compared = 0;
  try {
    for (const mode of ['BUFFERED', 'RESPONSE_STREAM']) {
      for (const c of CASES) {
        const what = `${mode} ${c.method ?? 'GET'} ${c.path.slice(0, 80)} ${JSON.stringify(c.headers ?? {}).slice(0, 60)}`;
        const ref = await invokeReference(handlers, mode, c);
        const emu = await fetchEmulator(urls[mode], c);
        assert.equal(emu.status, ref.status, `${what}: status; emulator body ${emu.body.toString().slice(0, 200)}`);
        for (const h of FUNCTION_HEADERS) {
          assert.equal(emu.headers[h], ref.headers[h], `${what}: header ${h}`);
        }
        for (const h of Object.keys(emu.headers)) {
          if (h.startsWith('x-canary-')) assert.ok(h in ref.headers, `${what}: emulator adds ${h}`);
        }
        assert.equal(emu.body.length, ref.body.length, `${what}: body length`);
        assert.ok(emu.body.equals(ref.body), `${what}: body bytes differ: ${emu.body.toString().slice(0, 200)} vs ${ref.body.toString().slice(0, 200)}`);
        compared++;
      }
    }
  } finally {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(compared, 2 * CASES.length);
});
