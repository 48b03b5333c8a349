// A minimal stand-in for the `awslambda` global of the Lambda Node.js runtime:
// streamifyResponse() marks a handler as streaming, and
// HttpResponseStream.from() sets the http-integration content type and emits
// the JSON prelude plus 8 NUL bytes before the first body write, as the
// runtime does. ResponseStream records every write so tests can check the
// chunking the handler produced.
import { Writable } from 'node:stream';

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
export const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const DELIMITER = Buffer.alloc(8);

export class ResponseStream extends Writable {
  constructor() {
    super({ highWaterMark: 16 * 1024 });
    this.contentType = undefined;
    this.writes = []; // Buffers as written by the handler (after the prelude).
    this.raw = []; // Everything, prelude included, as sent to the platform.
    this._onBeforeFirstWrite = undefined;
    this._firstWriteDone = false;
  }

  setContentType(type) {
    this.contentType = type;
  }

  _write(chunk, encoding, callback) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
    if (!this._firstWriteDone) {
      this._firstWriteDone = true;
      if (typeof this._onBeforeFirstWrite === 'function') {
        this._onBeforeFirstWrite((b) => this.raw.push(Buffer.from(b)));
      }
    }
    this.writes.push(buf);
    this.raw.push(buf);
    // Complete asynchronously so that back-pressure paths are exercised.
    setImmediate(callback);
  }

  /** Splits what was sent into {prelude, body}, as the platform does. */
  parse() {
    const all = Buffer.concat(this.raw);
    const cut = all.indexOf(DELIMITER);
    if (this.contentType !== PRELUDE_CONTENT_TYPE || cut < 0) {
      return { prelude: undefined, body: all };
    }
    return { prelude: JSON.parse(all.subarray(0, cut).toString('utf8')), body: all.subarray(cut + 8) };
  }
}

export function installAwsLambdaStandIn() {
  globalThis.awslambda = {
    streamifyResponse(handler) {
      handler[HANDLER_STREAMING] = 'response';
      return handler;
    },
    HttpResponseStream: {
      from(underlying, prelude) {
        underlying.setContentType(PRELUDE_CONTENT_TYPE);
        const json = JSON.stringify(prelude);
        underlying._onBeforeFirstWrite = (write) => {
          write(json);
          write(DELIMITER);
        };
        return underlying;
      },
    },
  };
  return HANDLER_STREAMING;
}
