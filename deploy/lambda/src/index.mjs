// Reference canary function for real AWS Lambda Function URLs (Node.js 20).
//
// Two handlers over the same contract (docs/function-contract.md), one per
// invoke mode:
//   - `buffered` (index.buffered): for a Function URL with InvokeMode
//     BUFFERED; returns the whole body base64-encoded.
//   - `stream` (index.stream): for InvokeMode RESPONSE_STREAM; writes the
//     body in `chunk`-byte writes with `gap_ms` between them.
// A Lambda version has a single handler, so each mode is its own function
// (same code package) with its own alias; see template.yaml.
//
// The `awslambda` global is provided by the Lambda Node.js runtime (and by a
// stand-in in the tests).

import { finished } from 'node:stream/promises';
import { once } from 'node:events';
import { setTimeout as sleepMs } from 'node:timers/promises';

import { fillPayload, limitsFromEnv, makePayload, parseCanaryQuery, parseProbeId } from './canary.mjs';

const PATH = '/canary';

function errorResponse(statusCode, message, extraHeaders = {}) {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...extraHeaders },
    body: JSON.stringify({ error: message }),
  };
}

/**
 * Validates one Function URL event (payload format 2.0) for `mode`.
 * Returns {request, headers} on success or {response} (an error response).
 */
function admit(event, mode, limits) {
  const method = event?.requestContext?.http?.method ?? 'GET';
  if ((event?.rawPath ?? '/') !== PATH) {
    return { response: errorResponse(404, `no such path; use GET ${PATH}?bytes=N&chunk=C&gap_ms=G&seed=S`) };
  }
  if (method !== 'GET') {
    return { response: errorResponse(405, `method ${method} not allowed; use GET`, { allow: 'GET' }) };
  }
  const probeId = parseProbeId(event.headers, limits);
  if (probeId.error) return { response: errorResponse(400, probeId.error) };
  const request = parseCanaryQuery(event.rawQueryString, mode, limits);
  if (request.error) return { response: errorResponse(400, request.error) };
  const headers = {
    'content-type': 'application/octet-stream',
    'cache-control': 'no-store',
    'x-canary-bytes': String(request.bytes),
    'x-canary-seed': request.seed.toString(),
    'x-canary-mode': mode,
  };
  if (probeId.value !== undefined) headers['x-canary-probe-id'] = probeId.value;
  return { request, headers };
}

/**
 * Builds both handlers. `options.sleep(ms)` waits between stream chunks
 * (tests inject a recorder); `options.limits` bounds requests.
 */
export function makeHandlers(options = {}) {
  const limits = options.limits ?? limitsFromEnv();
  const sleep = options.sleep ?? ((ms) => sleepMs(ms));
  const httpResponseStream = () => options.httpResponseStream ?? globalThis.awslambda.HttpResponseStream;

  async function buffered(event) {
    const admitted = admit(event, 'buffered', limits);
    if (admitted.response) return admitted.response;
    const { request, headers } = admitted;
    return {
      statusCode: 200,
      headers,
      body: makePayload(request.seed, request.bytes).toString('base64'),
      isBase64Encoded: true,
    };
  }

  async function streamBody(event, responseStream) {
    const admitted = admit(event, 'stream', limits);
    if (admitted.response) {
      const { statusCode, headers, body } = admitted.response;
      const out = httpResponseStream().from(responseStream, { statusCode, headers });
      out.write(body);
      out.end();
      await finished(out);
      return;
    }
    const { request, headers } = admitted;
    const out = httpResponseStream().from(responseStream, { statusCode: 200, headers });
    // An empty body still needs one (empty) write: the runtime sends the
    // status/headers prelude on the first write.
    if (request.bytes === 0) out.write(Buffer.alloc(0));
    let offset = 0;
    while (offset < request.bytes) {
      if (offset > 0 && request.gapMs > 0) await sleep(request.gapMs);
      const n = Math.min(request.chunk, request.bytes - offset);
      const chunk = fillPayload(request.seed, offset, Buffer.allocUnsafe(n));
      offset += n;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await finished(out);
  }

  return { buffered, streamBody, limits };
}

const defaults = makeHandlers({
  limits: limitsFromEnv(),
  // Resolved per call so that the module loads where `awslambda` is absent.
  httpResponseStream: undefined,
});

export const buffered = defaults.buffered;
export const stream =
  typeof globalThis.awslambda?.streamifyResponse === 'function'
    ? globalThis.awslambda.streamifyResponse(defaults.streamBody)
    : defaults.streamBody;
