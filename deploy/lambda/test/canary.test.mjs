// Tests of the reference canary function: the body against the shared
// conformance vectors, both handlers' responses, and request validation.
// Node built-ins only; run with `node --test deploy/lambda/test/`.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { installAwsLambdaStandIn, PRELUDE_CONTENT_TYPE, ResponseStream } from './awslambda_standin.mjs';

const HANDLER_STREAMING = installAwsLambdaStandIn();
// Imported after the stand-in exists, as in the runtime.
const { fillPayload, makePayload, parseCanaryQuery, DEFAULT_LIMITS, limitsFromEnv, splitmix64 } =
  await import('../src/canary.mjs');
const index = await import('../src/index.mjs');

const here = dirname(fileURLToPath(import.meta.url));
const vectorsPath = join(here, '..', '..', '..', 'tests', 'testdata', 'payload_conformance.json');
const { vectors } = JSON.parse(readFileSync(vectorsPath, 'utf8'));

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

function event(query, { path = '/canary', method = 'GET', headers = {} } = {}) {
  return {
    version: '2.0',
    rawPath: path,
    rawQueryString: query,
    headers,
    requestContext: { http: { method, path } },
  };
}

// Runs the streaming handler against a recording stream.
async function runStream(handlers, ev) {
  const out = new ResponseStream();
  await handlers.streamBody(ev, out);
  return { out, ...out.parse() };
}

function handlersWithRecordedSleeps(limits = DEFAULT_LIMITS) {
  const sleeps = [];
  const handlers = index.makeHandlers({ limits, sleep: async (ms) => { sleeps.push(ms); } });
  return { handlers, sleeps };
}

test('conformance vectors exist and cover edge cases', () => {
  assert.ok(vectors.length >= 10);
  assert.ok(vectors.some((v) => v.size === 0));
  assert.ok(vectors.some((v) => v.seed === '18446744073709551615'));
});

test('splitmix64 wraps modulo 2^64', () => {
  // Word 0 of seed 2^64-1 is SplitMix64(2^64-1); word 1 is SplitMix64(0).
  const body = makePayload(18446744073709551615n, 16);
  assert.equal(body.readBigUInt64LE(0), splitmix64(18446744073709551615n));
  assert.equal(body.readBigUInt64LE(8), splitmix64(0n));
});

test('makePayload matches every conformance vector', () => {
  for (const v of vectors) {
    const body = makePayload(BigInt(v.seed), v.size);
    assert.equal(body.length, v.size);
    assert.equal(sha256(body), v.sha256, `seed ${v.seed} size ${v.size}`);
    assert.equal(body.subarray(0, 16).toString('hex'), v.first16_hex);
    assert.equal(body.subarray(Math.max(0, v.size - 16)).toString('hex'), v.last16_hex);
  }
});

test('fillPayload is seekable: any offset and length agree with the whole body', () => {
  const seed = 12345n;
  const whole = makePayload(seed, 4096);
  // Deterministic pseudo-random offsets (seeded LCG).
  let state = 7;
  const next = (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  for (let i = 0; i < 500; i++) {
    const offset = next(4096);
    const len = next(4096 - offset + 1);
    const part = fillPayload(seed, offset, Buffer.alloc(len));
    assert.ok(part.equals(whole.subarray(offset, offset + len)), `offset ${offset} len ${len}`);
  }
});

test('buffered handler returns the exact body, base64-encoded, for every vector', async () => {
  const limits = { ...DEFAULT_LIMITS, maxBytesBuffered: 2 * 1024 * 1024 };
  const { handlers } = handlersWithRecordedSleeps(limits);
  for (const v of vectors) {
    const res = await handlers.buffered(
      event(`bytes=${v.size}&seed=${v.seed}`, { headers: { 'x-canary-probe-id': `p-${v.size}` } }));
    assert.equal(res.statusCode, 200);
    assert.equal(res.isBase64Encoded, true);
    const body = Buffer.from(res.body, 'base64');
    assert.equal(sha256(body), v.sha256, `seed ${v.seed} size ${v.size}`);
    assert.equal(res.headers['x-canary-bytes'], String(v.size));
    assert.equal(res.headers['x-canary-seed'], v.seed);
    assert.equal(res.headers['x-canary-probe-id'], `p-${v.size}`);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
  }
});

test('stream handler writes C-byte chunks with G ms gaps and the exact body', async () => {
  for (const v of vectors) {
    const chunk = v.size <= 2048 ? 7 : 65521; // Odd sizes cross word boundaries.
    const { handlers, sleeps } = handlersWithRecordedSleeps();
    const ev = event(`bytes=${v.size}&chunk=${chunk}&gap_ms=3&seed=${v.seed}`,
      { headers: { 'x-canary-probe-id': 'probe-1' } });
    const { out, prelude, body } = await runStream(handlers, ev);
    assert.equal(out.contentType, PRELUDE_CONTENT_TYPE);
    assert.equal(prelude.statusCode, 200);
    assert.equal(prelude.headers['x-canary-bytes'], String(v.size));
    assert.equal(prelude.headers['x-canary-seed'], v.seed);
    assert.equal(prelude.headers['x-canary-probe-id'], 'probe-1');
    assert.equal(sha256(body), v.sha256, `seed ${v.seed} size ${v.size}`);

    const writes = out.writes.filter((w) => w.length > 0);
    const expectedWrites = Math.ceil(v.size / chunk);
    assert.equal(writes.length, expectedWrites);
    writes.forEach((w, i) => {
      if (i < writes.length - 1) assert.equal(w.length, chunk);
      else assert.ok(w.length >= 1 && w.length <= chunk);
    });
    assert.deepEqual(sleeps, Array(Math.max(0, expectedWrites - 1)).fill(3));
  }
});

test('stream handler with gap_ms=0 never waits; zero bytes still sends the prelude', async () => {
  const { handlers, sleeps } = handlersWithRecordedSleeps();
  const { prelude, body } = await runStream(handlers, event('bytes=100000&chunk=1000&seed=1'));
  assert.equal(prelude.statusCode, 200);
  assert.equal(body.length, 100000);
  assert.deepEqual(sleeps, []);
  const empty = await runStream(handlers, event('bytes=0'));
  assert.equal(empty.prelude.statusCode, 200);
  assert.equal(empty.prelude.headers['x-canary-bytes'], '0');
  assert.equal(empty.body.length, 0);
});

test('stream handler really waits between chunks by default', async () => {
  const handlers = index.makeHandlers({ limits: DEFAULT_LIMITS });
  const out = new ResponseStream();
  const times = [];
  const origWrite = out._write.bind(out);
  out._write = (chunk, enc, cb) => {
    times.push(process.hrtime.bigint());
    origWrite(chunk, enc, cb);
  };
  await handlers.streamBody(event('bytes=30&chunk=10&gap_ms=20&seed=5'), out);
  assert.equal(times.length, 3);
  // Timers never fire early; the gaps are at least what was asked.
  for (let i = 1; i < times.length; i++) {
    assert.ok(Number(times[i] - times[i - 1]) / 1e6 >= 19, `gap ${i}`);
  }
});

test('defaults: seed 0, one chunk per MiB, no gaps; seed is normalised', async () => {
  const q = parseCanaryQuery('bytes=10', 'stream');
  assert.deepEqual(q, { bytes: 10, chunk: DEFAULT_LIMITS.maxChunk, gapMs: 0, seed: 0n });
  const { handlers } = handlersWithRecordedSleeps();
  const res = await handlers.buffered(event('bytes=8&seed=007'));
  assert.equal(res.headers['x-canary-seed'], '7');
  assert.equal(res.headers['x-canary-probe-id'], undefined);
});

test('bad requests get a clear 400 naming the parameter, in both modes', async () => {
  const { handlers } = handlersWithRecordedSleeps();
  const cases = [
    ['', 'missing query parameter "bytes"'],
    ['bytes=-1', '"bytes" must be a decimal integer'],
    ['bytes=0x10', '"bytes" must be a decimal integer'],
    ['bytes=1e3', '"bytes" must be a decimal integer'],
    ['bytes=%201', '"bytes" must be a decimal integer'],
    ['bytes=1&bytes=2', '"bytes" given more than once'],
    ['bytes=99999999999999999999999', '"bytes" must be a decimal integer'],
    [`bytes=${DEFAULT_LIMITS.maxBytesStream + 1}`, '"bytes" must be in [0, '],
    ['bytes=10&chunk=0', '"chunk" must be in [1, '],
    ['bytes=10&gap_ms=10001', '"gap_ms" must be in [0, 10000]'],
    ['bytes=10&seed=18446744073709551616', '"seed" must be in [0, 18446744073709551615]'],
    ['bytes=10&seed=abc', '"seed" must be a decimal integer'],
  ];
  for (const [query, message] of cases) {
    const res = await handlers.buffered(event(query));
    assert.equal(res.statusCode, 400, query);
    assert.match(JSON.parse(res.body).error, new RegExp(message.replace(/[[\]()]/g, '\\$&')), query);
    const { prelude, body } = await runStream(handlers, event(query));
    assert.equal(prelude.statusCode, 400, query);
    assert.equal(prelude.headers['content-type'], 'application/json');
    assert.match(JSON.parse(body.toString()).error, new RegExp(message.replace(/[[\]()]/g, '\\$&')), query);
  }
  // Buffered has the smaller cap (the 6 MB response payload limit).
  const tooBig = await handlers.buffered(event(`bytes=${DEFAULT_LIMITS.maxBytesBuffered + 1}`));
  assert.equal(tooBig.statusCode, 400);
  // Streams cannot ask for unbounded total wait.
  const slow = await runStream(handlers, event('bytes=1000&chunk=1&gap_ms=1000'));
  assert.equal(slow.prelude.statusCode, 400);
  assert.match(JSON.parse(slow.body.toString()).error, /ms of gaps/);
  // A malformed probe id is refused rather than echoed.
  const badId = await handlers.buffered(event('bytes=1', { headers: { 'x-canary-probe-id': 'a b' } }));
  assert.equal(badId.statusCode, 400);
  assert.match(JSON.parse(badId.body).error, /x-canary-probe-id/);
});

test('wrong path is 404 and wrong method 405', async () => {
  const { handlers } = handlersWithRecordedSleeps();
  assert.equal((await handlers.buffered(event('bytes=1', { path: '/' }))).statusCode, 404);
  const post = await handlers.buffered(event('bytes=1', { method: 'POST' }));
  assert.equal(post.statusCode, 405);
  assert.equal(post.headers.allow, 'GET');
  const { prelude } = await runStream(handlers, event('bytes=1', { path: '/x' }));
  assert.equal(prelude.statusCode, 404);
});

test('limits come from the environment and reject garbage', () => {
  assert.equal(limitsFromEnv({ CANARY_MAX_BYTES: '100' }).maxBytesStream, 100);
  assert.equal(limitsFromEnv({}).maxBytesBuffered, DEFAULT_LIMITS.maxBytesBuffered);
  assert.throws(() => limitsFromEnv({ CANARY_MAX_BYTES: '-5' }), /CANARY_MAX_BYTES/);
});

test('module exports the runtime entry points', async () => {
  assert.equal(index.stream[HANDLER_STREAMING], 'response');
  const res = await index.buffered(event('bytes=16&seed=7'));
  assert.equal(res.statusCode, 200);
  assert.equal(sha256(Buffer.from(res.body, 'base64')),
    vectors.find((v) => v.seed === '7' && v.size === 16).sha256);
});
