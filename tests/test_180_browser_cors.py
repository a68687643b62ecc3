"""CORS for subscribers on other origins, seen by a real browser: Debian's
headless Chromium (tests/browser/eventsource.mjs) opens a page on one origin
and its EventSource subscribes on another. The server listens on three ports:
its own (the streams), APP (a page origin some locations list by name) and
OTHER (a page origin no location lists by name). All three are on 127.0.0.1,
so they are one site and cross-origin to each other: cookies for 127.0.0.1
are sent to the stream's port when credentials are asked for."""
import re

import pytest

from sse_env import MODULES, SseStream, free_port, uniq, wait_until

AUTH_MODULES = ['LoadModule %s_module %s/mod_%s.so' % (m, MODULES, m)
                for m in ('auth_basic', 'authn_core', 'authn_file', 'authz_user')]

# one line per request, written when it ends (streams: when they end)
CORS_LOG = ('LogFormat "%m %U%q %>s origin=\\"%{Origin}i\\" lei=\\"%{Last-Event-ID}i\\" '
            'cookie=\\"%{Cookie}i\\" acao=\\"%{Access-Control-Allow-Origin}o\\" '
            'acac=\\"%{Access-Control-Allow-Credentials}o\\" '
            'resume=\\"%{SSE-Resume}o\\"" cors')
LOG_LINE = re.compile(r'(?P<method>\S+) (?P<url>\S+) (?P<status>\d+) origin="(?P<origin>[^"]*)" '
                      r'lei="(?P<lei>[^"]*)" cookie="(?P<cookie>[^"]*)" acao="(?P<acao>[^"]*)" '
                      r'acac="(?P<acac>[^"]*)" resume="(?P<resume>[^"]*)"$')

LOCATIONS = """
<Directory "{dir}/htdocs">
    Require all granted
    ForceType text/html
</Directory>

# any origin, no credentials
<Location /open>
    SetHandler sse-stream
    SSECorsOrigins *
</Location>
# only APP and two sites on default ports, by name
<Location /app>
    SetHandler sse-stream
    SSECorsOrigins http://127.0.0.1:{app} http://apps.example:80 https://secure.example:443
</Location>
# APP by name (in capitals: compared case-insensitively) beside *; needs a cookie
<Location /cookie>
    SetHandler sse-stream
    SSECorsOrigins * HTTP://127.0.0.1:{app}
    <If "%{{HTTP_COOKIE}} !~ /sess=ok/">
        Require all denied
    </If>
</Location>
<Location /resume>
    SetHandler sse-stream
    SSECorsOrigins *
    SSERetry 300
</Location>
<Location /private>
    SetHandler sse-stream
    SSECorsOrigins http://127.0.0.1:{app}
    AuthType Basic
    AuthName "private events"
    AuthUserFile "{dir}/conf/htpasswd"
    Require user alice
</Location>

<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1
</Location>
"""

# alice:wonderland
HTPASSWD = 'alice:{SHA}tiY7sUhYKUwI5L3866kDY+ENcrQ=\n'
ALICE = {'Authorization': 'Basic YWxpY2U6d29uZGVybGFuZA=='}


class Cors:
    def __init__(self, srv, app, other):
        self.srv, self.app, self.other = srv, app, other

    def origin(self, port):
        return 'http://127.0.0.1:%d' % port

    def page(self, port):
        return self.origin(port) + '/page.html'

    def stream(self, path):
        return self.srv.url(path)

    def log_lines(self, path_prefix):
        out = []
        for line in self.srv.read_file('logs/cors_log').splitlines():
            m = LOG_LINE.match(line)
            assert m, 'unexpected cors_log line %r' % line
            if m['url'].startswith(path_prefix):
                out.append(m.groupdict())
        return out

    def wait_log(self, path_prefix, n=1, timeout=10):
        """The log lines of requests to path_prefix, once there are n
        (a stream's line is written when the server has seen it end)."""
        wait_until(lambda: len(self.log_lines(path_prefix)) >= n, timeout)
        lines = self.log_lines(path_prefix)
        assert len(lines) >= n, 'cors_log has %d of %d lines for %s:\n%s' % (
            len(lines), n, path_prefix, self.srv.read_file('logs/cors_log')[-2000:])
        return lines


@pytest.fixture(scope='module')
def cors(module_factory):
    app, other = free_port(), free_port()
    srv = module_factory.create('cors', global_extra=AUTH_MODULES + [
        'Listen 127.0.0.1:%d' % app, 'Listen 127.0.0.1:%d' % other,
        CORS_LOG, 'CustomLog logs/cors_log cors'])
    srv.locations = LOCATIONS.format(dir=srv.dir, app=app)
    srv.write_config()
    (srv.dir / 'conf' / 'htpasswd').write_text(HTPASSWD)
    (srv.dir / 'htdocs' / 'page.html').write_text(
        '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<title>mod_sse CORS test page</title>\n')
    srv.start()
    return Cors(srv, app, other)


def opened(run, n=1):
    run.wait(lambda r: r.count('open') >= n, what='open event #%d' % n)


def refused(run):
    """Waits for the run's EventSource to fail; checks that it opened
    nothing and got no event, and is retrying (CONNECTING) or CLOSED.
    Returns the console lines (where Chromium says why)."""
    run.wait(lambda r: r.count('error') >= 1, what='error event')
    s = run.close()['sources'][0]
    assert s['events'] == [] and s['opens'] == 0, s
    assert s['errors'] >= 1 and s['readyState'] in (0, 2), s
    return run.console()


# a: a page on another origin subscribes without credentials where any origin
# may: named events, multi-line data and unicode arrive exactly as published
def test_any_origin_receives_events(cors, browser):
    srv, ch = cors.srv, uniq('a')
    sent = [('price', 'first line\nsecond line'),
            (None, 'h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f680'),
            ('price', 'a\r\nb\rc\n\nlast'),
            ('x-\u00e9v\u00e9nement', '\u00a0spaces  inside\u00a0')]
    with browser.open(cors.page(cors.app), cors.stream('/open/%s' % ch),
                      types=['price', 'x-\u00e9v\u00e9nement']) as run:
        opened(run)
        assert srv.wait_channel_subscribers(ch, 1)
        ids = [srv.pub(ch, data, event=ev)['id'] for ev, data in sent]
        run.wait(lambda r: len(r.events()) >= len(sent), what='%d events' % len(sent))
        res = run.close()
    got = [(e['type'], e['data'], e['lastEventId'], e['origin'])
           for e in res['sources'][0]['events']]
    want = [(ev or 'message', data.replace('\r\n', '\n').replace('\r', '\n'), i,
             cors.origin(srv.port)) for (ev, data), i in zip(sent, ids)]
    assert got == want
    line = cors.wait_log('/open/%s' % ch)[0]
    assert (line['status'], line['origin'], line['acao'], line['acac']) == (
        '200', cors.origin(cors.app), '*', '-')


# b: withCredentials from an origin listed by name: the cookie for the stream's
# host goes along (the location refuses streams without it) and events arrive
def test_listed_origin_with_credentials_sends_cookie(cors, browser):
    srv, ch = cors.srv, uniq('b')
    # the location really wants the cookie
    assert srv.get('/cookie/%s' % ch).status_code == 403
    with browser.open(cors.page(cors.app), cors.stream('/cookie/%s' % ch),
                      with_credentials=True,
                      cookies=['sess=ok@%s/' % cors.origin(srv.port)]) as run:
        opened(run)
        assert srv.wait_channel_subscribers(ch, 1)
        i = srv.pub(ch, 'for a credentialed page')['id']
        run.wait(lambda r: len(r.events()) >= 1, what='the event')
        res = run.close()
    s = res['sources'][0]
    assert s['withCredentials'] is True
    assert [(e['data'], e['lastEventId']) for e in s['events']] == [('for a credentialed page', i)]
    first, line = cors.wait_log('/cookie/%s' % ch, 2)
    assert (first['status'], first['cookie']) == ('403', '-'), first
    assert line['status'] == '200' and 'sess=ok' in line['cookie'], line
    # the origin as the browser wrote it, not '*' (which a browser refuses with credentials)
    assert (line['origin'], line['acao'], line['acac']) == (
        cors.origin(cors.app), cors.origin(cors.app), 'true')


# c: withCredentials where only * is configured: the server answers 200 with
# Allow-Origin *, which a browser must refuse for a credentialed request, so
# the page gets no event (the stream would replay one)
def test_credentials_need_a_listed_origin(cors, browser):
    srv, ch = cors.srv, uniq('c')
    srv.pub(ch, 'must not reach the page')
    with browser.open(cors.page(cors.app), cors.stream('/open/%s?lastEventId=0' % ch),
                      with_credentials=True,
                      cookies=['sess=ok@%s/' % cors.origin(srv.port)]) as run:
        console = refused(run)
    assert any('wildcard' in c and 'credentials' in c for c in console), console
    line = cors.wait_log('/open/%s' % ch)[0]
    assert (line['status'], line['acao'], line['acac']) == ('200', '*', '-'), line
    assert 'sess=ok' in line['cookie'], line


# d: an origin that is not listed gets no Access-Control-Allow-Origin and the
# page no event; the listed origin's page gets the same stream
def test_unlisted_origin_gets_nothing(cors, browser):
    srv, ch = cors.srv, uniq('d')
    i = srv.pub(ch, 'for APP only')['id']
    url = cors.stream('/app/%s?lastEventId=0' % ch)
    with browser.open(cors.page(cors.other), url) as run:
        console = refused(run)
    assert any("No 'Access-Control-Allow-Origin' header" in c for c in console), console
    line = cors.wait_log('/app/%s' % ch)[0]
    assert (line['status'], line['origin'], line['acao']) == ('200', cors.origin(cors.other), '-')
    with browser.open(cors.page(cors.app), url) as run:
        run.wait(lambda r: len(r.events()) >= 1, what='the replayed event')
    assert [(e['data'], e['lastEventId']) for e in run.result['sources'][0]['events']] == [
        ('for APP only', i)]


# the headers on the wire, origin by origin: listed origins are compared
# without case and default ports; an unlisted one gets no Access-Control-*
@pytest.mark.parametrize('path,origin,acao,acac', [
    ('/open', 'http://127.0.0.1:{app}', '*', None),
    ('/open', 'http://127.0.0.1:{other}', '*', None),
    ('/app', 'http://127.0.0.1:{app}', 'http://127.0.0.1:{app}', 'true'),
    ('/app', 'http://127.0.0.1:{other}', None, None),
    ('/app', 'HTTP://127.0.0.1:{app}', 'HTTP://127.0.0.1:{app}', 'true'),
    ('/app', 'http://127.0.0.1', None, None),
    ('/app', 'http://apps.example', 'http://apps.example', 'true'),
    ('/app', 'http://Apps.Example:80', 'http://Apps.Example:80', 'true'),
    ('/app', 'https://apps.example', None, None),
    ('/app', 'https://secure.example', 'https://secure.example', 'true'),
    ('/app', 'http://secure.example', None, None),
    ('/cookie', 'http://127.0.0.1:{app}', 'http://127.0.0.1:{app}', 'true'),
    ('/cookie', 'http://127.0.0.1:{other}', '*', None),
])
def test_cors_headers(cors, path, origin, acao, acac):
    origin = origin.format(app=cors.app, other=cors.other)
    acao = acao and acao.format(app=cors.app, other=cors.other)
    with SseStream(cors.srv.port, '%s/%s' % (path, uniq('h')),
                   headers={'Origin': origin, 'Cookie': 'sess=ok'}) as s:
        assert s.status == 200
        assert s.headers.get('Access-Control-Allow-Origin') == acao
        assert s.headers.get('Access-Control-Allow-Credentials') == acac
        if acao is None:
            assert not [k for k in s.headers if k.lower().startswith('access-control-')]
        else:
            assert 'Origin' in [v.strip() for v in s.headers.get('Vary', '').split(',')]


# e: a graceful restart ends the stream; the browser comes back by itself
# after SSERetry, sends Last-Event-ID, and gets what was published while it
# was away: every event once, ids increasing
def test_reconnect_after_graceful_restart(cors, browser):
    srv, ch = cors.srv, uniq('e')
    url = '/resume/%s' % ch
    sent = []            # (id, data) in publishing order

    def pub(data):
        sent.append((srv.pub(ch, data)['id'], data))

    with browser.open(cors.page(cors.app), cors.stream(url)) as run:
        opened(run)
        assert srv.wait_channel_subscribers(ch, 1)
        for k in range(3):
            pub('before %d' % k)
        run.wait(lambda r: len(r.events()) >= 3, what='the first 3 events')
        last = sent[-1][0]
        # the browser's next request for the stream is held in the browser
        # until release(): what is published meanwhile is published while it
        # is away, however fast it comes back
        run.hold(url)
        r = srv.apachectl('graceful')
        assert r.returncode == 0, (r.stdout, r.stderr)
        run.wait(lambda r: r.count('error') >= 1, what='the stream ending')
        assert run.kinds('error')[0]['readyState'] == 0, 'not retrying: %r' % run.kinds('error')
        run.wait(lambda r: r.count('held', None) >= 1, what='the reconnection')
        assert srv.wait_channel_subscribers(ch, 0)
        for k in range(3):
            pub('away %d' % k)
        assert len(run.kinds('held', None)) == 1, run.kinds('held', None)
        run.release()
        run.wait(lambda r: len(r.events()) >= len(sent), what='the missed events')
        assert srv.wait_channel_subscribers(ch, 1)
        pub('after')
        run.wait(lambda r: len(r.events()) >= len(sent), what='the last event')
        res = run.close()
    s = res['sources'][0]
    assert [(e['lastEventId'], e['data']) for e in s['events']] == sent
    ids = [int(i) for i, _ in sent]
    assert all(y > x for x, y in zip(ids, ids[1:])), ids
    assert (s['opens'], s['errors']) == (2, 1), s
    # the server's view: two requests; the second carried the last id in
    # Last-Event-ID (not in the URL) and was resumed exactly
    lines = cors.wait_log(url, 2)
    assert [(x['url'], x['status'], x['lei'], x['resume']) for x in lines] == [
        (url, '200', '-', '-'), (url, '200', last, 'exact')]
    assert all(x['origin'] == cors.origin(cors.app) and x['acao'] == '*' for x in lines), lines


# f: a preflight from a listed origin is answered 204 before access control
# (preflights carry no credentials) on a location that needs Basic auth,
# while a GET without credentials there is 401
def test_preflight_before_auth(cors):
    srv, ch = cors.srv, uniq('f')
    path = '/private/%s' % ch
    r = srv.request('OPTIONS', path, headers={
        'Origin': cors.origin(cors.app), 'Access-Control-Request-Method': 'GET',
        'Access-Control-Request-Headers': 'last-event-id'})
    assert r.status_code == 204, (r.status_code, r.text[:200])
    assert r.headers.get('Access-Control-Allow-Origin') == cors.origin(cors.app)
    assert r.headers.get('Access-Control-Allow-Credentials') == 'true'
    assert r.headers.get('Access-Control-Allow-Methods') == 'GET'
    allowed = [h.strip().lower() for h in r.headers.get('Access-Control-Allow-Headers', '').split(',')]
    assert 'last-event-id' in allowed and 'authorization' in allowed, r.headers
    assert r.headers.get('Access-Control-Max-Age') == '600'
    assert r.content == b''
    # the same location: GET without credentials, GET with them, and a
    # preflight from an origin not listed (not answered: it meets the rules)
    r = srv.get(path, headers={'Origin': cors.origin(cors.app)})
    assert r.status_code == 401 and r.headers['WWW-Authenticate'].startswith('Basic')
    with SseStream(srv.port, path, headers=dict(ALICE, Origin=cors.origin(cors.app))) as s:
        assert s.status == 200 and s.wait_open()
        assert s.headers.get('Access-Control-Allow-Origin') == cors.origin(cors.app)
    r = srv.request('OPTIONS', path, headers={
        'Origin': cors.origin(cors.other), 'Access-Control-Request-Method': 'GET'})
    assert r.status_code == 401
    assert 'Access-Control-Allow-Origin' not in r.headers
