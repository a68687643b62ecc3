#!/usr/bin/env node
// es_h2_client.mjs - one EventSource from the npm package `eventsource` (4.x,
// the client Node services use) whose fetch is undici's over HTTP/2: an
// undici Agent with allowH2 offers h2 by ALPN and trusts the given CA (a
// self-signed test certificate). tests/test_945_tls_h2.py drives it.
//
//   node es_h2_client.mjs --url URL --ca FILE [--type NAME]... [--hold]
//                         [--timeout S]
//
// --type     also report events of this type ("message" always is).
// --hold     hold every reconnect (each fetch after the first) until a line
//            "release" arrives on standard input, so a test can publish
//            while the client is away.
// --timeout  exit with status 2 after this many seconds (default 60), in
//            case the harness forgot to end it.
// The end of standard input closes the EventSource and exits with status 0.
//
// Standard output is JSON, one object a line, written as things happen:
//   {"kind":"connected","alpn":"h2","n":1}   a new connection (n counts them)
//   {"kind":"request","lastEventId":null,"held":false}
//                                            each fetch the library makes,
//                                            with the Last-Event-ID it sends
//   {"kind":"open"}
//   {"kind":"event","type":"..","data":"..","lastEventId":".."}
//   {"kind":"error","message":"..","code":..} the library reconnects by itself
//                                            unless readyState is 2 (CLOSED)
import diagnostics_channel from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { EventSource } from 'eventsource';
import { Agent, fetch } from 'undici';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    ca: { type: 'string' },
    type: { type: 'string', multiple: true, default: [] },
    hold: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '60' },
  },
});
if (!opts.url || !opts.ca) {
  process.stderr.write('usage: es_h2_client.mjs --url URL --ca FILE [--type NAME]... [--timeout S]\n');
  process.exit(64);
}

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// which protocol each new connection negotiated: fetch's Response does not
// tell, the TLS socket does
let connections = 0;
diagnostics_channel.channel('undici:client:connected').subscribe(({ socket }) => {
  connections += 1;
  say({ kind: 'connected', alpn: socket.alpnProtocol || null, n: connections });
});

let releases = [];              // resolvers of held reconnects
let fetches = 0;
const agent = new Agent({ allowH2: true, connect: { ca: readFileSync(opts.ca) } });
const h2fetch = async (url, init) => {
  const h = init.headers || {};
  const held = opts.hold && fetches++ > 0;
  say({ kind: 'request', lastEventId: h['Last-Event-ID'] ?? null, held });
  if (held) await new Promise((resolve) => releases.push(resolve));
  return fetch(url, { ...init, dispatcher: agent });
};

const es = new EventSource(opts.url, { fetch: h2fetch });
es.addEventListener('open', () => say({ kind: 'open' }));
es.addEventListener('error', (e) => say({
  kind: 'error', message: e.message ?? null, code: e.code ?? null, readyState: es.readyState,
}));
for (const type of ['message', ...opts.type]) {
  es.addEventListener(type, (e) => say({
    kind: 'event', type: e.type, data: e.data, lastEventId: e.lastEventId,
  }));
}

const finish = async (code) => {
  es.close();
  await agent.close().catch(() => {});
  process.exit(code);
};
const timer = setTimeout(() => {
  process.stderr.write(`es_h2_client: no end of input within ${opts.timeout} s\n`);
  finish(2);
}, Number(opts.timeout) * 1000);
const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim() === 'release') {
    const waiting = releases;
    releases = [];
    waiting.forEach((resolve) => resolve());
  }
});
input.on('close', () => { clearTimeout(timer); finish(0); });
