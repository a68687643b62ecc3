"""The demo page in a real browser: headless Chromium opens conf-examples/demo.html
from an httpd running conf-examples/demo.conf, filled in as scripts/demo.sh
does, and the tests read what the page shows its user: named events,
multi-line data and unicode exactly as published, and every event once
across a graceful restart that the page's EventSource resumes from with
Last-Event-ID. The first test saves a screenshot of the page in its tmp dir;
with SSE_SCREENSHOT=FILE (make demo-screenshot: docs/demo.png) there too."""
import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

from sse_env import IS_ROOT, REPO, SANITIZE, HttpdServer, uniq, wait_until

DEMO_CONF = REPO / 'conf-examples' / 'demo.conf'
DEMO_HTML = REPO / 'conf-examples' / 'demo.html'
VIEWPORT = (1000, 700)

# one line per request, written when it ends (a stream: when it ends)
ACCESS_LOG = [
    'LogFormat "%m %U%q %>s lei=\\"%{Last-Event-ID}i\\" resume=\\"%{SSE-Resume}o\\"" demo',
    'CustomLog logs/demo_log demo',
]
LOG_LINE = re.compile(r'(?P<method>\S+) (?P<url>\S+) (?P<status>\d+) lei="(?P<lei>[^"]*)" '
                      r'resume="(?P<resume>[^"]*)"$')

# what the page shows, as the user sees it (innerText: line breaks and
# spaces as rendered): the connection state, every event row as
# [id, type, data], every note
READ_PAGE = """(() => ({
  state: document.getElementById('state').textContent,
  events: [...document.querySelectorAll('#log .entry.event')].map(
      (row) => [...row.children].map((cell) => cell.innerText)),
  notes: [...document.querySelectorAll('#log .entry.note')].map((row) => row.innerText),
}))()"""


class DemoServer(HttpdServer):
    """An httpd whose config is conf-examples/demo.conf with scripts/demo.sh's
    substitutions, plus an access log for the tests. The harness's own
    config is not used, so a change to demo.conf is tested here."""

    def __init__(self, name, base_dir, port=None):
        super().__init__(name, base_dir)
        if port:
            self.port = port
            self.write_config()

    def write_config(self):
        text = DEMO_CONF.read_text()
        text = text.replace('@SERVER_DIR@', str(self.dir)).replace('@PORT@', str(self.port))
        left = re.findall(r'@[A-Z_]+@', text)
        assert not left, 'demo.conf has placeholders scripts/demo.sh does not fill: %s' % left
        extra = list(ACCESS_LOG)
        if IS_ROOT:
            extra += ['User nobody', 'Group nogroup']     # as scripts/demo.sh adds as root
        if SANITIZE:
            extra += ['CoreDumpDirectory "%s"' % self.san_dir]  # see HttpdServer.write_config
        self.conf_path.write_text('%s\n# added by %s\n%s\n' % (
            text, Path(__file__).name, '\n'.join(extra)))

    def log_lines(self, path):
        out = []
        for line in self.read_file('logs/demo_log').splitlines():
            m = LOG_LINE.match(line)
            assert m, 'unexpected demo_log line %r' % line
            if m['url'] == path:
                out.append(m.groupdict())
        return out


@pytest.fixture(scope='module')
def demo(module_factory):
    # the screenshot for the README shows the port `make demo` uses
    port = int(os.environ.get('SSE_DEMO_PORT', '8788')) if os.environ.get('SSE_SCREENSHOT') else None
    srv = DemoServer('demo', module_factory.base_dir, port)
    module_factory.servers.append(srv)      # stopped and checked with the module
    # the server directory as scripts/demo.sh lays it out
    shutil.copyfile(srv.module_so, srv.dir / 'mod_sse.so')
    shutil.copyfile(DEMO_HTML, srv.dir / 'htdocs' / 'index.html')
    os.chmod(srv.dir / 'htdocs' / 'index.html', 0o644)
    r = srv.configtest()
    assert r.returncode == 0, (r.stdout, r.stderr)
    srv.start(expect_children=2)
    return srv


def read_page(run):
    return run.evaluate(READ_PAGE)


def wait_page(run, pred, what):
    """What the page shows once pred(it) holds."""
    return run.wait_js(READ_PAGE, pred, what=what)


def png_size(path):
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR', head
    return struct.unpack('>II', head[16:24])


# what a browser shows of data: the EventSource turns CRLF and CR into LF
def shown(data):
    return data.replace('\r\n', '\n').replace('\r', '\n')


# the page as a user opens it (channel news; types message and price) shows
# named events, multi-line data (indented, with a blank line) and unicode
# (non-BMP emoji, a ZWJ sequence, CJK, combining marks) exactly as the admin
# API got them, and what its own Publish form sends; then the screenshot
@pytest.mark.skipif(SANITIZE, reason='SSE_SANITIZE: tests the page and takes its screenshot; '
                    'what it sends through mod_sse runs under the sanitizers in test_180 and '
                    'test_200, and the demo server in the restart test')
def test_demo_page_shows_events_exactly(demo, browser, tmp_path):
    srv = demo
    assert srv.get('/').text == DEMO_HTML.read_text()
    sent = [
        ('price', '{\n  "eur": 1.08,\n  "usd": 1.17\n}'),
        (None, 'h\u00e9llo w\u00f6rld \u2014 \u65e5\u672c\u8a9e \u4e2d\u6587 \ud55c\uad6d\uc5b4 '
               '\U0001f680\U0001f389 \U0001f469\u200d\U0001f4bb'),
        (None, 'combining: e\u0301 n\u0303 a\u0308\u0304 Tie\u0302\u0301ng Vie\u0323\u0302t'),
        ('price', 'line one\r\nline two\rline three\n\n  indented after a blank line'),
    ]
    with browser.open(srv.url('/'), viewport=VIEWPORT) as run:
        wait_page(run, lambda p: p['state'] == 'open', 'the page connected')
        assert srv.wait_channel_subscribers('news', 1)
        want = []
        for ev, data in sent:
            want.append([srv.pub('news', data, event=ev)['id'], ev or 'message', shown(data)])
        # an envelope like the one demo.sh prints: its data is the JSON text
        # of the object (here in UTF-8, not \u escapes)
        envelope = {'eur': 1.09, 'note': '\u00fcber 10 \u20ac'}
        body = json.dumps({'event': 'price', 'data': envelope}, ensure_ascii=False)
        i = srv.pub('news', body, headers={'Content-Type': 'application/json'})['id']
        # the page's own form: a named event, two lines
        typed = 'typed in the page\nsecond line \u2713'
        run.evaluate("""(() => {
            document.getElementById('event').value = 'price';
            document.getElementById('data').value = %s;
            document.querySelector('#publish button').click();
        })()""" % json.dumps(typed))
        page = wait_page(run, lambda p: len(p['events']) >= len(sent) + 2
                         and any(n.startswith('published ') for n in p['notes']),
                         'all events and the publish note')
        run.screenshot(tmp_path / 'demo.png')
        res = run.close()
    note = [n for n in page['notes'] if n.startswith('published ')]
    assert len(note) == 1, page['notes']
    m = re.fullmatch(r'published (\d+) to news \(1 subscriber\)', note[0])
    assert m, note
    got = page['events']
    assert got[:len(sent)] == want
    assert got[len(sent)][:2] == [i, 'price'] and json.loads(got[len(sent)][2]) == envelope
    assert got[len(sent) + 1:] == [[m[1], 'price', typed]]
    assert page['state'] == 'open'
    assert page['notes'][:2] == [
        'subscribing to /events/news for events of type message, price (and sse-reset)',
        'connected to /events/news']
    # the page shows what its EventSource delivered, unchanged
    s, = res['sources']
    assert [[e['lastEventId'], e['type'], e['data']] for e in s['events']] == got
    assert (s['opens'], s['errors']) == (1, 0), s
    assert png_size(tmp_path / 'demo.png') == VIEWPORT
    if os.environ.get('SSE_SCREENSHOT'):
        shutil.copyfile(tmp_path / 'demo.png', os.environ['SSE_SCREENSHOT'])


# a graceful restart with the page open: its stream ends, the page says so,
# its EventSource comes back by itself after demo.conf's SSERetry and sends
# Last-Event-ID; the page shows every event once, in order: those from
# before, one published as the restart began, those published while the
# browser was away (its reconnection is held in the browser meanwhile) and
# one after
def test_demo_page_resumes_after_graceful_restart(demo, browser):
    srv, ch = demo, uniq('restart')
    url = '/events/%s' % ch
    sent = []                       # [id, type, data] in publishing order

    def pub(data, event=None):
        # a new connection each time: a graceful restart closes idle ones
        r = srv.publish(ch, data, event=event, fresh=True)
        assert r.status_code == 201, (r.status_code, r.text)
        sent.append([r.json()['id'], event or 'message', data])

    with browser.open(srv.url('/?channel=%s' % ch)) as run:
        wait_page(run, lambda p: p['state'] == 'open', 'the page connected')
        assert srv.wait_channel_subscribers(ch, 1)
        pub('before the restart')
        pub('up 2%\nfrom 1.06 \U0001f4c8', event='price')
        wait_page(run, lambda p: len(p['events']) >= 2, 'the first two events')
        run.hold(url)
        r = srv.apachectl('graceful')
        assert r.returncode == 0, (r.stdout, r.stderr)
        pub('as the restart began')
        wait_page(run, lambda p: p['state'] == 'reconnecting', 'the page losing the stream')
        run.wait(lambda r: r.count('held', None) >= 1, what='the reconnection')
        # nothing reaches the page while its reconnection is held: what it
        # shows now is all its EventSource got before the stream ended
        away = read_page(run)
        lei = away['events'][-1][0]
        assert srv.wait_channel_subscribers(ch, 0)
        pub('while away \u2014 \u7559\u5b88\u4e2d')
        pub('line 1\nline 2 \u00e7a\u0300 \U0001f501', event='price')
        pub('while away, last')
        assert len(run.kinds('held', None)) == 1, run.kinds('held', None)
        run.release()
        wait_page(run, lambda p: p['state'] == 'open' and len(p['events']) >= len(sent),
                  'the missed events')
        assert srv.wait_channel_subscribers(ch, 1)
        pub('after the restart')
        page = wait_page(run, lambda p: len(p['events']) >= len(sent), 'the last event')
        res = run.close()
    assert page['events'] == sent
    ids = [int(i) for i, _, _ in sent]
    assert all(y > x for x, y in zip(ids, ids[1:])), ids
    assert page['state'] == 'open'
    assert page['notes'] == [
        'subscribing to %s for events of type message, price (and sse-reset)' % url,
        'connected to %s' % url,
        'connection lost; EventSource reconnects by itself with Last-Event-ID: %s' % lei,
        'reconnected to %s' % url]
    # one EventSource, which the page never replaced: it reconnected itself
    s, = res['sources']
    assert (s['opens'], s['errors']) == (2, 1), s
    # the server's view: the second request carried the last id the page had
    # shown in Last-Event-ID and was resumed exactly
    assert wait_until(lambda: len(srv.log_lines(url)) >= 2, 10), srv.read_file('logs/demo_log')
    assert [(x['method'], x['status'], x['lei'], x['resume']) for x in srv.log_lines(url)] == [
        ('GET', '200', '-', '-'), ('GET', '200', lei, 'exact')]
