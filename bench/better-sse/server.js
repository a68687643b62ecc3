// server.js - the better-sse side of the fan-out benchmark: GET /sub/<ch> subscribes, POST /pub/<ch> broadcasts.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { createSession, createChannel } = require('better-sse');

const port = Number(process.argv[2] || process.env.PORT || 8791);
const host = process.env.HOST || '127.0.0.1';

const channels = new Map();
// Ids count up per channel, like mod_sse's and Nchan's; the default random UUID would add work the others skip.
const lastId = new Map();

function channel(name) {
  let ch = channels.get(name);
  if (!ch) {
    ch = createChannel();
    channels.set(name, ch);
    lastId.set(name, 0);
  }
  return ch;
}

// The data goes out as it came in, as with mod_sse and Nchan; better-sse would JSON-quote it by default.
const sessionOptions = {
  serializer: (data) => String(data),
  retry: null,
  keepAlive: 30000,
};

const route = /^\/(sub|pub)\/([A-Za-z0-9_]+)$/;

const server = http.createServer(async (req, res) => {
  const m = route.exec(req.url);
  if (!m) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  const [, kind, name] = m;
  if (kind === 'sub') {
    if (req.method !== 'GET') {
      res.writeHead(405, { Allow: 'GET' }).end();
      return;
    }
    try {
      const session = await createSession(req, res, sessionOptions);
      channel(name).register(session);
    } catch (err) {
      // A client that left before the session was set up; nothing to deliver to.
      res.destroy();
    }
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { Allow: 'POST' }).end();
    return;
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const ch = channel(name);
    const id = lastId.get(name) + 1;
    lastId.set(name, id);
    ch.broadcast(Buffer.concat(parts).toString('utf8'), 'message', { eventId: String(id) });
    res.writeHead(201, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ id: String(id), subscribers: ch.sessionCount }) + '\n');
  });
});

// Streams live for the whole run; Node's request timeout must not cut them.
server.requestTimeout = 0;
server.headersTimeout = 60000;
server.keepAliveTimeout = 60000;

const version = JSON.parse(
  fs.readFileSync(path.join(__dirname, 'node_modules', 'better-sse', 'package.json'), 'utf8')).version;

server.listen({ port, host, backlog: 4096 }, () => {
  console.log(`better-sse ${version} listening on ${host}:${port}`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
