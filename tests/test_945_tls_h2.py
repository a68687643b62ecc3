"""Streams over TLS and HTTP/2: HTTP/1.1 + TLS, h2 over TLS (ALPN) and h2c
carry events intact; streams multiplexed on one h2 connection stay apart
and a reset one ends alone; a graceful restart is resumed over h2 without
loss (curl, and npm eventsource on undici's h2 fetch); a TLS client that
vanishes is noticed; what a client sees when a child's h2 workers run out.
Servers come from tests/tls_env.py (mod_ssl + mod_http2, self-signed
certificate)."""
import json
import signal
import subprocess
import threading

import pytest
import requests

from sse_browser import node_path, node_problem
from sse_env import SANITIZE, TESTS, SseParser, SseStream, uniq, wait_until
from tls_env import (CURL, OPENSSL, CurlStream, H2Client, client_context, make_cert,
                     start_tls, tls_log)

pytestmark = pytest.mark.skipif(CURL is None or OPENSSL is None,
                                reason='curl and openssl are needed (scripts/install-deps.sh)')

GENERATION_LINE = r'resuming normal operations'
BROWSER_DIR = TESTS / 'browser'
ES_CLIENT = BROWSER_DIR / 'es_h2_client.mjs'

# (event type, data): a named event, multi-line data with an empty line,
# and text well outside ASCII
PAYLOADS = [('price', 'line one\nline two\n\nline four'),
            (None, 'h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f389'),
            ('price', '{"bid": 1.5, "ask": "\u20ac2"}')]


def publish_all(srv, ch, payloads=PAYLOADS, tag=''):
    """Publishes the payloads; returns what a client should see: (type, data, id)."""
    out = []
    for event, data in payloads:
        r = srv.pub(ch, data + tag, event=event)
        out.append((event or 'message', data + tag, r['id']))
    return out


def seen(events):
    return [(e.event, e.data, e.id) for e in events]


@pytest.fixture(scope='session')
def tls_cert(base_dir):
    return make_cert(base_dir)


@pytest.fixture(scope='module')
def tls(module_factory, tls_cert):
    cert, key = tls_cert
    return start_tls(module_factory, 'tls', cert, key)


# events arrive intact over HTTP/1.1 + TLS, h2 over TLS (ALPN) and h2c; the
# protocol is what the client asked for, and deleting the channel ends the
# stream cleanly
@pytest.mark.parametrize('proto', ['h1-tls', 'h2', 'h2c'])
def test_events_intact(tls, tls_cert, proto):
    cert = tls_cert[0]
    ch = uniq('intact-' + proto)
    path = '/tls-events/%s' % ch
    if proto == 'h1-tls':
        s = SseStream(tls.tls_port, path, ssl_context=client_context(cert, ['http/1.1']))
        assert (s.status, s.http_version) == (200, '1.1')
        assert s.sock.selected_alpn_protocol() == 'http/1.1'
        assert s.sock.version() in ('TLSv1.2', 'TLSv1.3')
        assert s.wait_open()
        want = publish_all(tls, ch)
        assert seen(s.wait_for(len(want))) == want
        assert tls.delete(ch).status_code == 200
        assert s.wait_ended() and s.clean_end, s
        assert 'channel deleted' in s.comments
    else:
        url = tls.tls_url(path) if proto == 'h2' else tls.url(path)
        c = CurlStream([url], proto, cert)
        try:
            assert c.wait(lambda c: 'ok' in c.comments()), c.close()
            want = publish_all(tls, ch)
            assert c.wait(lambda c: len(c.events()) >= len(want)), c.events()
            assert seen(c.events()) == want
            assert tls.delete(ch).status_code == 200
            assert c.exited(10) == 0, c.close()
        finally:
            err = c.close()
        assert 'channel deleted' in c.comments()
        assert 'HTTP/2 200' in err and 'http=2 ' in err, err
        assert 'content-type: text/event-stream; charset=utf-8' in err.lower()
    assert tls.channel(ch) is None
    # the server's view: which protocol and whether TLS
    if proto == 'h2c':
        assert wait_until(lambda: '"GET %s HTTP/2.0" 200' % path in tls.read_file('logs/access_log'))
    else:
        version = 'HTTP/2.0' if proto == 'h2' else 'HTTP/1.1'
        assert wait_until(lambda: [line for line in tls_log(tls) if path + ' ' in line
                                   and (' %s TLSv1.' % version) in line]), tls_log(tls)


# three streams multiplexed by curl on ONE h2 connection each get their own
# channel's events and nothing else
def test_h2_multiplexed_streams(tls, tls_cert, tmp_path):
    chans = [uniq('mux%d' % i) for i in range(3)]
    outs = [tmp_path / ('out%d' % i) for i in range(3)]
    c = CurlStream([tls.tls_url('/tls-events/%s' % ch) for ch in chans], 'h2', tls_cert[0],
                   parallel=True, outputs=outs)
    try:
        for ch in chans:
            assert tls.wait_channel_subscribers(ch, 1), (ch, c.close())
        want = {ch: [] for ch in chans}
        for round_ in range(2):          # interleaved across the channels
            for ch in chans:
                want[ch] += publish_all(tls, ch, tag=' %s/%d' % (ch, round_))
        for ch in chans:
            assert tls.delete(ch).status_code == 200
        assert c.exited(10) == 0, c.close()
    finally:
        err = c.close()
    transfers = [line.split() for line in err.splitlines() if line.startswith('transfer ')]
    assert len(transfers) == 3 and all(t[2:4] == ['200', 'http=2'] for t in transfers), err
    # curl opened one connection for the first transfer and reused it
    assert sorted(t[4] for t in transfers) == ['connects=0', 'connects=0', 'connects=1'], err
    for ch, out in zip(chans, outs):
        p = SseParser()
        p.feed(out.read_bytes())
        assert seen(p.events) == want[ch], ch
    # the server saw one client port for the three requests
    def lines():
        return [x for x in tls_log(tls) if any('/tls-events/%s ' % ch in x for ch in chans)]
    assert wait_until(lambda: len(lines()) == 3), tls_log(tls)
    assert len({x.split()[0] for x in lines()}) == 1, lines()


# a client resets one of three streams on an h2 connection (RST_STREAM): the
# server drops that subscriber, the other streams keep their events, and the
# connection takes a new stream afterwards
def test_h2_reset_one_stream(tls, tls_cert):
    a, b, d = (uniq('rst-' + n) for n in 'abd')
    h2 = H2Client(tls.tls_port, tls_cert[0])
    try:
        sa, sb = h2.get('/tls-events/%s' % a), h2.get('/tls-events/%s' % b)
        assert h2.wait(lambda: 'ok' in sa.parser.comments and 'ok' in sb.parser.comments)
        assert (sa.status, sb.status) == (200, 200)
        assert tls.wait_channel_subscribers(a, 1) and tls.wait_channel_subscribers(b, 1)
        h2.reset(sa)
        # mod_sse notices at its next write (a keepalive within SSEKeepAlive 1)
        assert tls.wait_channel_subscribers(a, 0), tls.channel(a)
        want_b = publish_all(tls, b)
        assert tls.pub(a, 'to nobody')['subscribers'] == 0
        assert h2.wait(lambda: len(sb.parser.events) >= len(want_b))
        assert seen(h2.events(sb)) == want_b and not sb.ended and sb.reset_by is None
        assert h2.events(sa) == []
        sd = h2.get('/tls-events/%s' % d)
        assert h2.wait(lambda: 'ok' in sd.parser.comments) and sd.status == 200
        want_d = publish_all(tls, d)
        assert h2.wait(lambda: len(sd.parser.events) >= len(want_d))
        assert seen(h2.events(sd)) == want_d
        assert not h2.closed and h2.terminated is None
    finally:
        h2.close()
    assert tls.wait_channel_subscribers(b, 0) and tls.wait_channel_subscribers(d, 0)


# mod_http2 runs at most 6 requests of a fresh connection at once and raises
# that only when requests complete, which streams do not: a 7th stream on the
# connection gets no answer until one of the six ends (README "H2 worker
# sizing")
def test_h2_seventh_stream_waits(tls, tls_cert):
    if SANITIZE:
        pytest.skip('mod_http2 behaviour, measured for the README; no module code beyond '
                    'the other tests of this file')
    chans = [uniq('six%d' % i) for i in range(7)]
    h2 = H2Client(tls.tls_port, tls_cert[0])
    try:
        streams = [h2.get('/tls-events/%s' % ch) for ch in chans]
        assert h2.wait(lambda: all('ok' in st.parser.comments for st in streams[:6]))
        assert h2.ping()
        assert not h2.wait(lambda: streams[6].status is not None, 1)
        assert tls.channel(chans[6]) is None
        # a stream the server ends (here: its channel is deleted) frees the
        # place (a reset by the client would lower the limit instead)
        assert tls.delete(chans[0]).status_code == 200
        assert h2.wait(lambda: streams[0].ended)
        assert h2.wait(lambda: 'ok' in streams[6].parser.comments), streams[6].status
        want = publish_all(tls, chans[6])
        assert h2.wait(lambda: len(streams[6].parser.events) >= len(want))
        assert seen(h2.events(streams[6])) == want
    finally:
        h2.close()


# a TLS client that vanishes (socket closed without close_notify, or curl
# killed on an h2 connection) is noticed: the channel's subscriber count
# drops back to 0 (SSEKeepAlive 1 bounds how long that can take)
@pytest.mark.parametrize('how', ['h1-tls-closed', 'h2-curl-killed'])
def test_tls_client_gone(tls, tls_cert, how):
    cert = tls_cert[0]
    ch = uniq('gone')
    path = '/tls-events/%s' % ch
    since = tls.log_size()
    if how == 'h1-tls-closed':
        s = SseStream(tls.tls_port, path, ssl_context=client_context(cert, ['http/1.1']))
        assert s.wait_open()
        assert tls.wait_channel_subscribers(ch, 1)
        s.close()
    else:
        c = CurlStream([tls.tls_url(path)], 'h2', cert)
        assert c.wait(lambda c: 'ok' in c.comments()), c.close()
        assert tls.wait_channel_subscribers(ch, 1)
        c.close(signal.SIGKILL)
    assert tls.wait_channel_subscribers(ch, 0, 10), tls.channel(ch)
    assert wait_until(lambda: tls.count_log(r'SSE00104: stream ends \(client gone\)', since) >= 1)


# a TLS client that closes its socket without close_notify is noticed at the
# stream's next write even with no keepalives: mod_ssl answers the check for
# input with EAGAIN at such an end, so mod_sse asks the socket itself
def test_tls_close_without_close_notify_noticed(tls, tls_cert):
    ch = uniq('quiet')
    s = SseStream(tls.tls_port, '/tls-quiet/%s' % ch,
                  ssl_context=client_context(tls_cert[0], ['http/1.1']))
    assert s.wait_open()
    assert tls.wait_channel_subscribers(ch, 1)
    closing = tls.half_closed_connections(tls.tls_port)
    s.close()
    # the server holds the client's FIN before anything is written
    assert wait_until(lambda: tls.half_closed_connections(tls.tls_port) > closing)
    assert tls.pub(ch, 'one write')['subscribers'] == 1
    assert tls.wait_channel_subscribers(ch, 0), tls.channel(ch)


# a graceful restart (SIGUSR1) over h2 + TLS: the stream ends, curl comes back
# with Last-Event-ID and gets what was published while it was away, once and
# in order, then live events
def test_h2_tls_graceful_restart_resume(httpd_factory, tls_cert):
    cert, key = tls_cert
    srv = start_tls(httpd_factory, 'tls-restart', cert, key)
    ch = uniq('h2restart')
    url = srv.tls_url('/tls-events/%s' % ch)
    c1 = CurlStream([url], 'h2', cert)
    try:
        assert c1.wait(lambda c: 'ok' in c.comments()), c1.close()
        before = publish_all(srv, ch, tag=' before')
        assert c1.wait(lambda c: len(c.events()) >= len(before))
        gens = srv.count_log(GENERATION_LINE)
        r = srv.apachectl('graceful')
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert c1.exited(15) is not None, 'the h2 stream did not end at the graceful restart'
    finally:
        c1.close()
    assert 'server restarting' in c1.comments()
    last_id = c1.parser.last_id
    assert last_id == before[-1][2]
    assert wait_until(lambda: srv.count_log(GENERATION_LINE) > gens, 15)
    assert wait_until(srv.status_after_restart, 10)
    assert srv.wait_channel_subscribers(ch, 0)
    meanwhile = publish_all(srv, ch, tag=' meanwhile')
    c2 = CurlStream([url], 'h2', cert, headers=['Last-Event-ID: %s' % last_id])
    try:
        assert c2.wait(lambda c: len(c.events()) >= len(meanwhile)), c2.events()
        after = publish_all(srv, ch, tag=' after')
        assert c2.wait(lambda c: len(c.events()) >= len(meanwhile) + len(after))
    finally:
        err = c2.close()
    assert seen(c1.events()) == before
    assert seen(c2.events()) == meanwhile + after
    assert 'HTTP/2 200' in err and 'sse-resume: exact' in err.lower(), err
    assert srv.wait_channel_subscribers(ch, 0)
    line = wait_until(lambda: [x for x in tls_log(srv) if 'lei=%s ' % last_id in x])
    assert line and ' HTTP/2.0 TLSv1.' in line[0] and 'resume=exact' in line[0], tls_log(srv)


class EsClient:
    """tests/browser/es_h2_client.mjs: npm eventsource on undici's h2 fetch."""

    def __init__(self, url, cert, types=(), hold=False):
        if node_problem():
            raise AssertionError('%s: run `sh scripts/install-deps.sh` as root' % node_problem())
        for dep in ('eventsource', 'undici'):
            if not (BROWSER_DIR / 'node_modules' / dep / 'package.json').exists():
                raise AssertionError('%s is not installed in %s: run `sh scripts/install-deps.sh`'
                                     ' (npm ci)' % (dep, BROWSER_DIR))
        args = [node_path(), str(ES_CLIENT), '--url', url, '--ca', str(cert), '--timeout', '60']
        for t in types:
            args += ['--type', t]
        if hold:
            args.append('--hold')
        self.cond = threading.Condition()
        self.lines = []
        self.proc = subprocess.Popen(args, cwd=str(BROWSER_DIR), text=True, bufsize=1,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def kinds(self, kind):
        with self.cond:
            return [x for x in self.lines if x['kind'] == kind]

    def wait(self, pred, what, timeout=15):
        if not wait_until(pred, timeout):
            raise AssertionError('es_h2_client: no %s within %d s; saw %r; stderr %r'
                                 % (what, timeout, self.lines, self.close()))

    def send(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def close(self):
        """Ends the client (end of its input); returns its stderr."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.thread.join(5)
        return self.proc.stderr.read()


# npm eventsource 4 with undici's fetch over h2 + TLS, a second client
# independent of curl: named events, multi-line data and unicode arrive; at a
# graceful restart the library reconnects by itself, over h2 again, with
# Last-Event-ID, and misses nothing that was published while it was away
def test_npm_eventsource_over_h2(httpd_factory, tls_cert):
    if SANITIZE:
        pytest.skip('client interoperability; the module code it runs is covered by the other '
                    'tests of this file under the sanitizers')
    cert, key = tls_cert
    srv = start_tls(httpd_factory, 'tls-npm', cert, key)
    ch = uniq('npm')
    # --hold: a reconnect waits for our "release", so the events published
    # meanwhile can only arrive by replay from Last-Event-ID
    es = EsClient(srv.tls_url('/tls-events/%s' % ch), cert, types=['price'], hold=True)
    try:
        es.wait(lambda: es.kinds('open'), 'open')
        assert srv.wait_channel_subscribers(ch, 1)
        before = publish_all(srv, ch, tag=' before')
        es.wait(lambda: len(es.kinds('event')) >= len(before), 'events')
        gens = srv.count_log(GENERATION_LINE)
        assert srv.apachectl('graceful').returncode == 0
        es.wait(lambda: len(es.kinds('request')) >= 2, 'reconnect')
        assert wait_until(lambda: srv.count_log(GENERATION_LINE) > gens, 15)
        assert wait_until(srv.status_after_restart, 10)
        assert srv.wait_channel_subscribers(ch, 0)
        meanwhile = publish_all(srv, ch, tag=' meanwhile')
        es.send('release')
        es.wait(lambda: len(es.kinds('event')) >= len(before) + len(meanwhile), 'replay')
        after = publish_all(srv, ch, tag=' after')
        es.wait(lambda: len(es.kinds('event')) >= len(before) + len(meanwhile) + len(after),
                'live events')
    finally:
        err = es.close()
    assert es.proc.returncode == 0, err
    got = [(x['type'], x['data'], x['lastEventId']) for x in es.kinds('event')]
    assert got == before + meanwhile + after
    assert [x['lastEventId'] for x in es.kinds('request')] == [None, before[-1][2]]
    assert [x['alpn'] for x in es.kinds('connected')] == ['h2', 'h2']
    assert len(es.kinds('open')) == 2
    # the server's view of the reconnect: HTTP/2 over TLS, resumed exactly
    assert srv.wait_channel_subscribers(ch, 0)
    line = wait_until(lambda: [x for x in tls_log(srv) if 'lei=%s ' % before[-1][2] in x])
    assert line and ' HTTP/2.0 TLSv1.' in line[0] and 'resume=exact' in line[0], tls_log(srv)


# H2MaxWorkers smaller than the streams of a child: the streams beyond it get
# no answer at all (no HEADERS), nor does any other h2 request of that child,
# while HTTP/1.1 is still served; freeing workers lets them start (README
# "H2 worker sizing")
def test_h2_workers_exhausted(httpd_factory, tls_cert):
    if SANITIZE:
        pytest.skip('mod_http2 behaviour, measured for the README; no module code beyond '
                    'the other tests of this file')
    cert, key = tls_cert
    mpm = ['StartServers 1', 'ServerLimit 1', 'ThreadsPerChild 8', 'MaxRequestWorkers 8',
           'MinSpareThreads 1', 'MaxSpareThreads 8']
    srv = start_tls(httpd_factory, 'h2workers', cert, key, mpm_conf=mpm,
                    extra=['H2MinWorkers 1', 'H2MaxWorkers 2'])
    chans = [uniq('w%d' % i) for i in range(3)]
    clients = [H2Client(srv.tls_port, cert) for _ in range(4)]
    try:
        # one after the other: which waiting connection a freed worker serves
        # next is mod_http2's choice
        streams = []
        for c, ch in zip(clients[:2], chans):
            st = c.get('/tls-events/%s' % ch)
            assert c.wait(lambda: 'ok' in st.parser.comments) and st.status == 200
            streams.append(st)
        streams.append(clients[2].get('/tls-events/%s' % chans[2]))
        page = clients[3].get('/index.html')
        # both requests were read by the server (their PINGs, sent after
        # them, were answered) and stay unanswered
        assert clients[2].ping() and clients[3].ping()
        assert not clients[2].wait(lambda: streams[2].status is not None, 1)
        assert page.status is None and streams[2].status is None
        assert srv.channel(chans[2]) is None or srv.channel(chans[2])['subscribers'] == 0
        # HTTP/1.1 (an MPM thread, not an h2 worker) is still answered
        assert requests.get(srv.tls_url('/index.html'), verify=str(cert), timeout=10).status_code == 200
        clients[0].reset(streams[0])
        clients[1].reset(streams[1])
        assert clients[2].wait(lambda: 'ok' in streams[2].parser.comments), streams[2].status
        assert clients[3].wait(lambda: page.ended) and page.status == 200
        want = publish_all(srv, chans[2])
        assert clients[2].wait(lambda: len(streams[2].parser.events) >= len(want))
        assert seen(clients[2].events(streams[2])) == want
    finally:
        for c in clients:
            c.close()
