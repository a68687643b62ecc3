#!/usr/bin/python3
"""selftest.py - checks that sse_load counts what it claims, against a fake server that misbehaves on purpose.

The fake server serves GET /sub/<ch> and POST /pub/<ch> like the real ones, but per subscriber (in the order
they connect) it drops one message, sends one twice, swaps two, answers 404, or frames the stream differently
(chunks cut mid-line, CRLF line ends, JSON-quoted data, no chunking). The client must report exactly the
faults that were injected; a client that missed a dropped message would make every loss figure a lie.
The same runs again with the subscribers over TLS (--tls, certificate verified, publishes to a second, plain
port), and once more against a certificate the client must refuse. Last, two fake servers sharing their
subscribers (as two servers on one Redis do) check --port2/--pub-port2: subscribers and publishes split over
both, every event everywhere, and the deliveries that crossed from one server to the other counted exactly.
Exits non-zero when a count is off. Usage: selftest.py [path to sse_load]
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLIENT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / 'work' / 'sse_load'
MESSAGES = 60
DROP, DUP, SWAP = 13, 21, 30          # message numbers the faults hit

# per connection index: how the stream is framed and which fault it gets
PLAN = [
    dict(framing='chunked', fault='drop'),
    dict(framing='chunked-split', fault='dup'),
    dict(framing='raw', fault='swap'),
    dict(framing='raw-crlf', fault=None),
    dict(framing='chunked', fault='json'),
    dict(framing='chunked', fault='404'),
]


class Sub:
    def __init__(self, conn, plan):
        self.conn = conn
        self.plan = plan
        self.held = None
        self.lock = threading.Lock()

    def send(self, data):
        f = self.plan['framing']
        if f.startswith('raw'):
            self.conn.sendall(data)
        elif f == 'chunked':
            self.conn.sendall(b'%x\r\n%s\r\n' % (len(data), data))
        else:
            # a chunk boundary inside a line, and a chunk of a single byte
            a, b, c = data[:7], data[7:8], data[8:]
            for part in (a, b, c):
                if part:
                    self.conn.sendall(b'%x;ext=1\r\n%s\r\n' % (len(part), part))
                    time.sleep(0.001)

    def event(self, seq, body):
        eol = b'\r\n' if self.plan['framing'] == 'raw-crlf' else b'\n'
        data = json.dumps(body).encode() if self.plan['fault'] == 'json' else body.encode()
        return b'id: ' + str(seq).encode() + eol + b'data: ' + data + eol + eol

    def deliver(self, seq, body):
        fault = self.plan['fault']
        with self.lock:
            if fault == 'drop' and seq == DROP:
                return
            ev = self.event(seq, body)
            if fault == 'swap' and seq == SWAP:
                self.held = ev
                return
            self.send(ev)
            if fault == 'dup' and seq == DUP:
                self.send(ev)
            if self.held is not None:
                self.send(self.held)
                self.held = None


def listener():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    sock.listen(64)
    return sock


class FakeServer:
    """With tls (an ssl.SSLContext), port speaks TLS and pub_port is a second, plain listener. With hub (another
    FakeServer), subscribers and the fault plan are shared with it: a publish to either reaches both's."""

    def __init__(self, tls=None, hub=None, plan=None):
        self.tls = tls
        self.sock = listener()
        self.port = self.sock.getsockname()[1]
        self.pub_port = self.port
        self.subs = []
        self.n = 0
        self.lock = threading.Lock()
        self.hub = hub or self
        self.plan = plan or PLAN
        self.own_subs = self.publishes = 0
        threading.Thread(target=self.accept, args=(self.sock, tls), daemon=True).start()
        if tls:
            plain = listener()
            self.pub_port = plain.getsockname()[1]
            threading.Thread(target=self.accept, args=(plain, None), daemon=True).start()

    def accept(self, sock, tls):
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=self.handle, args=(conn, tls), daemon=True).start()

    def handle(self, conn, tls=None):
        if tls:
            try:
                conn = tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return      # a client that refused the certificate
        buf = b''
        while True:
            while b'\r\n\r\n' not in buf:
                d = conn.recv(4096)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b'\r\n\r\n', 1)
            lines = head.decode().split('\r\n')
            method, path = lines[0].split()[:2]
            hub = self.hub
            if method == 'GET' and path.startswith('/sub/'):
                with hub.lock:
                    plan = self.plan[hub.n % len(self.plan)]
                    hub.n += 1
                    self.own_subs += 1
                if plan['fault'] == '404':
                    conn.sendall(b'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
                    conn.close()
                    return
                chunked = plan['framing'].startswith('chunked')
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n' +
                             (b'Transfer-Encoding: chunked\r\n' if chunked else b'') + b'\r\n')
                sub = Sub(conn, plan)
                sub.send(b': ok\n\n')
                with hub.lock:
                    hub.subs.append(sub)
                return      # the connection now belongs to the publisher side
            length = 0
            for h in lines[1:]:
                k, v = h.split(':', 1)
                if k.strip().lower() == 'content-length':
                    length = int(v)
            while len(buf) < length:
                buf += conn.recv(65536)
            body, buf = buf[:length].decode(), buf[length:]
            seq = int(body.split('s=', 1)[1].split()[0])
            with hub.lock:
                subs = list(hub.subs)
                self.publishes += 1
            for s in subs:
                s.deliver(seq, body)
            conn.sendall(b'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok')


def make_cert(d, name):
    """A self-signed certificate for 127.0.0.1, as bench/run.py makes one."""
    cert, key = os.path.join(d, name + '.pem'), os.path.join(d, name + '.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                    '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                    '-addext', 'basicConstraints=critical,CA:FALSE',
                    '-keyout', key, '-out', cert], check=True, capture_output=True)
    return cert, key


def run_client(srv, extra=()):
    r = subprocess.run([str(CLIENT), 'fanout', '--port', str(srv.port), '--pub-port', str(srv.pub_port),
                        '--subs', str(len(PLAN)), '--procs', '2',
                        '--messages', str(MESSAGES), '--rate', '200', '--drain-timeout', '3',
                        '--server-pid', str(os.getpid()), '--src-base', '100'] + list(extra),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        print(r.stderr)
        sys.exit('selftest: client exited %d' % r.returncode)
    return json.loads(r.stdout)


def check_faults(res, what):
    n = len(PLAN)
    connected = n - 1
    want = {
        'subs_connected': connected,
        'non200': 1,
        'expected': connected * MESSAGES,
        'received': connected * MESSAGES - 1,
        'loss': 1,
        'duplicates': 1,
        'out_of_order': 1,
        'foreign_events': 0,
        'bad_seq': 0,
        'protocol_errors': 0,
        'publish_errors': 0,
        'published': MESSAGES,
        'complete_subs': connected - 1,
        'drain_timed_out': True,
    }
    bad = {k: (res.get(k), v) for k, v in want.items() if res.get(k) != v}
    if res['latency_count'] != res['received'] or not 0 < res['latency_p50_ms'] < 1000:
        bad['latency'] = (res['latency_count'], res['latency_p50_ms'])
    fail(res, bad, what)
    print('selftest: %s: the client counted the injected loss, duplicate, reordering and 404 exactly '
          '(%d subscribers, %d messages, chunked/raw/CRLF/JSON framing)' % (what, n, MESSAGES))


def fail(res, bad, what):
    if bad:
        print(json.dumps(res, indent=1))
        for k, (got, exp) in bad.items():
            print('selftest: %s: %s is %r, expected %r' % (what, k, got, exp))
        sys.exit(1)


def main():
    res = run_client(FakeServer())
    if 'tls' in res:
        fail(res, {'tls': (res['tls'], 'absent without --tls')}, 'plain')
    check_faults(res, 'plain')

    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d, 'server')
        other, _ = make_cert(d, 'other')
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        res = run_client(FakeServer(ctx), ['--tls', '--tls-ca', cert])
        bad = {} if res.get('tls', '').startswith('TLSv1.') and res.get('tls_verified') is True \
            and res.get('tls_errors') == 0 else {'tls': (res.get('tls'), 'TLSv1.x, verified, no errors')}
        fail(res, bad, 'TLS')
        check_faults(res, 'TLS')

        # a certificate the client was not told to trust: no subscriber may connect
        res = run_client(FakeServer(ctx), ['--tls', '--tls-ca', other])
        want = {'subs_connected': 0, 'received': 0, 'published': MESSAGES}
        bad = {k: (res.get(k), v) for k, v in want.items() if res.get(k) != v}
        if not res.get('tls_errors') or res.get('connect_failed') != len(PLAN):
            bad['refused'] = ((res.get('tls_errors'), res.get('connect_failed')),
                              'TLS errors > 0, every subscriber failed to connect')
        fail(res, bad, 'TLS, untrusted certificate')
        print('selftest: TLS, untrusted certificate: every subscriber refused it (%d TLS errors)' %
              res['tls_errors'])

    # two servers: worker k's odd subscribers on the second (2 of 3 per worker on the first), even seqs
    # published there; no faults, so every subscriber has all, and half of each one's crossed servers
    clean = [dict(framing='chunked', fault=None)]
    a = FakeServer(plan=clean)
    b = FakeServer(hub=a, plan=clean)
    res = run_client(a, ['--port2', str(b.port), '--pub-port2', str(b.pub_port)])
    n = len(PLAN)
    want = {'subs_connected': n, 'subs_connected_port2': 2, 'expected': n * MESSAGES, 'received': n * MESSAGES,
            'loss': 0, 'duplicates': 0, 'out_of_order': 0, 'publish_errors': 0, 'published': MESSAGES,
            'complete_subs': n, 'cross_server_received': n * MESSAGES // 2}
    bad = {k: (res.get(k), v) for k, v in want.items() if res.get(k) != v}
    if (a.own_subs, b.own_subs, a.publishes, b.publishes) != (n - 2, 2, MESSAGES // 2, MESSAGES // 2):
        bad['split'] = ((a.own_subs, b.own_subs, a.publishes, b.publishes),
                        (n - 2, 2, MESSAGES // 2, MESSAGES // 2))
    fail(res, bad, 'two servers')
    print('selftest: two servers: subscribers %d + %d, publishes %d + %d, every event at every subscriber, '
          '%d deliveries crossed servers' % (a.own_subs, b.own_subs, a.publishes, b.publishes,
                                            res['cross_server_received']))


if __name__ == '__main__':
    main()
