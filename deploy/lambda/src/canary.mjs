// The canary function contract (v1), independent of the Lambda runtime:
// request parameter parsing and the deterministic body.
//
//   GET /canary?bytes=N&chunk=C&gap_ms=G&seed=S
//
// Body: exactly N bytes; bytes 8i..8i+7 are the little-endian encoding of
// SplitMix64(S + i) (all arithmetic mod 2^64). The same stream is produced
// by common/payload/payload.cc and checked against
// tests/testdata/payload_conformance.json.

import { endianness } from 'node:os';

const MASK64 = (1n << 64n) - 1n;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** SplitMix64 finaliser of x, mod 2^64 (x: BigInt in [0, 2^64)). */
export function splitmix64(x) {
  let z = BigInt.asUintN(64, x + 0x9e3779b97f4a7c15n);
  z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
  z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
  return z ^ (z >> 31n);
}

/**
 * Writes body bytes [offset, offset + out.length) of the stream for `seed`
 * (BigInt) into `out` (Buffer). Any offset and length; extra memory is one
 * scratch array of about out.length bytes.
 */
export function fillPayload(seed, offset, out) {
  if (out.length === 0) return out;
  const firstWord = Math.floor(offset / 8);
  const lastWord = Math.floor((offset + out.length - 1) / 8);
  const words = new BigUint64Array(lastWord - firstWord + 1);
  let x = BigInt.asUintN(64, seed + BigInt(firstWord));
  for (let i = 0; i < words.length; i++) {
    words[i] = splitmix64(x);
    x = BigInt.asUintN(64, x + 1n);
  }
  let bytes = new Uint8Array(words.buffer);
  if (!LITTLE_ENDIAN_HOST) {
    const le = new DataView(new ArrayBuffer(words.length * 8));
    words.forEach((w, i) => le.setBigUint64(i * 8, w, true));
    bytes = new Uint8Array(le.buffer);
  }
  const start = offset - firstWord * 8;
  out.set(bytes.subarray(start, start + out.length));
  return out;
}

/** The whole body of `size` bytes for `seed` (BigInt). */
export function makePayload(seed, size) {
  return fillPayload(seed, 0, Buffer.allocUnsafe(size));
}

/** Limits on what one request may ask for. */
export const DEFAULT_LIMITS = Object.freeze({
  // Buffered responses travel base64-encoded inside a 6 MB (6,291,556-byte)
  // response payload: 4 MiB of body is 5.6 MB of base64.
  maxBytesBuffered: 4 * 1024 * 1024,
  // Streamed responses may be far larger; keep each invocation bounded.
  maxBytesStream: 64 * 1024 * 1024,
  maxChunk: 1024 * 1024,
  maxGapMs: 10_000,
  // Upper bound on the sum of gaps of one response.
  maxTotalGapMs: 60_000,
  maxProbeIdLength: 128,
});

/** Reads limits from the environment (CANARY_MAX_BYTES, ...), else defaults. */
export function limitsFromEnv(env = process.env) {
  const limits = { ...DEFAULT_LIMITS };
  const read = (name, key) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return;
    if (!/^[0-9]{1,15}$/.test(raw)) {
      throw new Error(`environment variable ${name} must be a non-negative integer, got "${raw}"`);
    }
    limits[key] = Number(raw);
  };
  read('CANARY_MAX_BYTES', 'maxBytesBuffered');
  read('CANARY_MAX_BYTES', 'maxBytesStream');
  read('CANARY_MAX_CHUNK', 'maxChunk');
  read('CANARY_MAX_GAP_MS', 'maxGapMs');
  read('CANARY_MAX_TOTAL_GAP_MS', 'maxTotalGapMs');
  return Object.freeze(limits);
}

const DECIMAL = /^[0-9]+$/;

function parseInteger(params, name, { required, def, min, max }) {
  const values = params.getAll(name);
  if (values.length === 0) {
    if (required) return { error: `missing query parameter "${name}"` };
    return { value: def };
  }
  if (values.length > 1) return { error: `query parameter "${name}" given more than once` };
  const raw = values[0];
  if (!DECIMAL.test(raw) || raw.length > 20) {
    return { error: `query parameter "${name}" must be a decimal integer, got "${raw.slice(0, 32)}"` };
  }
  const value = BigInt(raw);
  if (value < BigInt(min) || value > BigInt(max)) {
    return { error: `query parameter "${name}" must be in [${min}, ${max}], got ${raw}` };
  }
  return { value };
}

/**
 * Parses and bounds the request of one invocation.
 *
 * @param {string} rawQueryString the query as received (no leading "?").
 * @param {'buffered'|'stream'} mode selects the byte limit.
 * @returns {{bytes:number, chunk:number, gapMs:number, seed:bigint}|{error:string}}
 */
export function parseCanaryQuery(rawQueryString, mode, limits = DEFAULT_LIMITS) {
  const params = new URLSearchParams(rawQueryString ?? '');
  const maxBytes = mode === 'stream' ? limits.maxBytesStream : limits.maxBytesBuffered;
  const bytes = parseInteger(params, 'bytes', { required: true, min: 0, max: maxBytes });
  if (bytes.error) return bytes;
  const chunk = parseInteger(params, 'chunk', {
    required: false, def: BigInt(limits.maxChunk), min: 1, max: limits.maxChunk,
  });
  if (chunk.error) return chunk;
  const gap = parseInteger(params, 'gap_ms', { required: false, def: 0n, min: 0, max: limits.maxGapMs });
  if (gap.error) return gap;
  const seed = parseInteger(params, 'seed', { required: false, def: 0n, min: 0, max: MASK64 });
  if (seed.error) return seed;
  const out = {
    bytes: Number(bytes.value),
    chunk: Number(chunk.value),
    gapMs: Number(gap.value),
    seed: seed.value,
  };
  if (mode === 'stream') {
    const gaps = Math.max(0, Math.ceil(out.bytes / out.chunk) - 1);
    if (gaps * out.gapMs > limits.maxTotalGapMs) {
      return {
        error: `bytes/chunk*gap_ms asks for ${gaps * out.gapMs} ms of gaps; at most ${limits.maxTotalGapMs} ms`,
      };
    }
  }
  return out;
}

/** The x-canary-probe-id to echo, or an error for a malformed one. */
export function parseProbeId(headers, limits = DEFAULT_LIMITS) {
  const value = headers?.['x-canary-probe-id'];
  if (value === undefined) return { value: undefined };
  const re = new RegExp(`^[\\x21-\\x7e]{1,${limits.maxProbeIdLength}}$`);
  if (!re.test(value)) {
    return { error: `header x-canary-probe-id must be 1-${limits.maxProbeIdLength} visible ASCII characters` };
  }
  return { value };
}
