// The emulator's SigV4 verification against a signer not written here: npm
// aws4. Starts the real function-url-emulator (AWS_IAM Function URLs, signed
// CloudWatch, STS) on loopback ports and checks that requests aws4 signs are
// accepted -- a Function URL GET (service lambda), CloudWatch GetMetricData
// in JSON 1.0 and in the Query protocol (service monitoring), STS AssumeRole
// (service sts), and the issued session credentials after that -- while the
// same requests with one byte of the signature changed, or an unknown
// session token, are refused with 403.
//
// Usage: node aws4_test.cjs NODE_MODULES_PARENT BUILD_DIR
'use strict';
const path = require('path');
const fs = require('fs');
const os = require('os');
const http = require('http');
const { spawn } = require('child_process');
const readline = require('readline');

const aws4 = require(path.join(process.argv[2], 'node_modules', 'aws4'));
const build = process.argv[3];
const KEYS = { accessKeyId: 'AKIDAWS4TEST', secretAccessKey: 'aws4-secret' };

let emulator = null;
function fail(msg) {
  console.error('FAIL: ' + msg);
  if (emulator) emulator.kill('SIGKILL');
  process.exit(1);
}

function send(opts) {
  return new Promise((resolve, reject) => {
    const req = http.request(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers,
                  bytes: raw.length, body: raw.toString('latin1') });
      });
    });
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    if (opts.body) req.write(opts.body);
    req.end();
  });
}

function target(url) {
  const u = new URL(url);
  return { host: u.host, hostname: u.hostname, port: u.port, path: u.pathname };
}

function tamper(opts) {
  const o = { ...opts, headers: { ...opts.headers } };
  o.headers.Authorization = o.headers.Authorization.replace(
      /Signature=([0-9a-f])/, (m, c) => 'Signature=' + (c === '0' ? '1' : '0'));
  return o;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aws4-'));
  const config = path.join(dir, 'emulator.yaml');
  fs.writeFileSync(config, [
    'regions:', '  - name: eu-west-1', '    auth: AWS_IAM',
    'listen_host: 127.0.0.1', 'monitoring_auth: AWS_IAM',
    'credentials:', '  - access_key_id: ' + KEYS.accessKeyId,
    '    secret_access_key: ' + KEYS.secretAccessKey, ''].join('\n'));
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_')) delete env[k];
  const emu = spawn(path.join(build, 'emulator', 'function-url-emulator'),
                    ['--config=' + config], { stdio: ['ignore', 'pipe', 'ignore'], env });
  emulator = emu;
  const endpoints = {};
  const urls = {};
  try {
    const rl = readline.createInterface({ input: emu.stdout });
    for await (const line of rl) {
      if (line === 'ready') break;
      const [kind, ...rest] = line.split(' ');
      const fields = Object.fromEntries(rest.map((kv) => {
        const i = kv.indexOf('=');
        return [kv.slice(0, i), kv.slice(i + 1)];
      }));
      if (kind === 'url') urls[fields.mode] = fields.url;
      else endpoints[kind] = fields.url;
    }
    rl.close();
    await run(endpoints, urls);
    console.log('PASS');
  } finally {
    emu.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function run(endpoints, urls) {
  // 1. Function URL, service lambda.
  const fn = target(urls.BUFFERED);
  const get = aws4.sign({ ...fn, path: '/canary?bytes=100&seed=3', method: 'GET',
                          service: 'lambda', region: 'eu-west-1' }, KEYS);
  let r = await send(get);
  if (r.status !== 200 || r.bytes !== 100) {
    fail(`Function URL: ${r.status}, ${r.bytes} bytes`);
  }
  r = await send(tamper(get));
  if (r.status !== 403) fail(`tampered Function URL request answered ${r.status}`);

  // 2. CloudWatch JSON 1.0.
  const cw = target(endpoints.cloudwatch);
  const now = Math.floor(Date.now() / 1000);
  const query = {
    MetricDataQueries: [{ Id: 'q', MetricStat: { Metric: {
      Namespace: 'AWS/Lambda', MetricName: 'Invocations',
      Dimensions: [{ Name: 'FunctionName', Value: 'fleetcanary-canary' }] },
      Period: 60, Stat: 'Sum' } }],
    StartTime: now - 600, EndTime: now + 60 };
  const json = aws4.sign({ ...cw, method: 'POST', service: 'monitoring',
    region: 'eu-west-1', body: JSON.stringify(query),
    headers: { 'Content-Type': 'application/x-amz-json-1.0',
               'X-Amz-Target': 'GraniteServiceVersion20100801.GetMetricData' } }, KEYS);
  r = await send(json);
  if (r.status !== 200 || !JSON.parse(r.body).MetricDataResults) {
    fail(`CloudWatch JSON: ${r.status} ${r.body.slice(0, 300)}`);
  }
  r = await send(tamper(json));
  if (r.status !== 403) fail(`tampered CloudWatch JSON answered ${r.status}`);

  // 3. CloudWatch Query protocol.
  const form = 'Action=GetMetricData&Version=2010-08-01' +
    '&MetricDataQueries.member.1.Id=q' +
    '&MetricDataQueries.member.1.MetricStat.Metric.Namespace=AWS%2FLambda' +
    '&MetricDataQueries.member.1.MetricStat.Metric.MetricName=Invocations' +
    '&MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name=FunctionName' +
    '&MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value=fleetcanary-canary' +
    '&MetricDataQueries.member.1.MetricStat.Period=60' +
    '&MetricDataQueries.member.1.MetricStat.Stat=Sum' +
    '&StartTime=' + new Date((now - 600) * 1000).toISOString() +
    '&EndTime=' + new Date((now + 60) * 1000).toISOString();
  const q = aws4.sign({ ...cw, method: 'POST', service: 'monitoring',
    region: 'eu-west-1', body: form }, KEYS);
  r = await send(q);
  if (r.status !== 200 || !r.body.includes('<GetMetricDataResponse')) {
    fail(`CloudWatch Query: ${r.status} ${r.body.slice(0, 300)}`);
  }

  // 4. STS AssumeRole, then the issued session on CloudWatch.
  const sts = target(endpoints.sts);
  const assume = aws4.sign({ ...sts, method: 'POST', service: 'sts', region: 'us-east-1',
    body: 'Action=AssumeRole&Version=2011-06-15&RoleSessionName=aws4' +
          '&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fcanary' }, KEYS);
  r = await send(assume);
  const pick = (tag) => (r.body.match(new RegExp(`<${tag}>([^<]*)</${tag}>`)) || [])[1];
  const session = { accessKeyId: pick('AccessKeyId'), secretAccessKey: pick('SecretAccessKey'),
                    sessionToken: pick('SessionToken') };
  if (r.status !== 200 || !session.sessionToken) fail(`STS: ${r.status} ${r.body.slice(0, 300)}`);
  const withSession = aws4.sign({ ...cw, method: 'POST', service: 'monitoring',
    region: 'eu-west-1', body: form }, session);
  r = await send(withSession);
  if (r.status !== 200) fail(`issued session refused: ${r.status} ${r.body.slice(0, 300)}`);
  const forged = aws4.sign({ ...cw, method: 'POST', service: 'monitoring',
    region: 'eu-west-1', body: form }, { ...session, sessionToken: 'forged' });
  r = await send(forged);
  if (r.status !== 403) fail(`forged session token answered ${r.status}`);
}

main().catch((e) => fail(e.stack || String(e)));
