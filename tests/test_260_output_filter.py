"""The SSE output filter: a CGI script's or a proxied backend's output as an
event stream. The generators here wait for the test between their writes
(a flag file, a threading.Event), so "each event arrives on its own, before
the generator goes on" is proven without any timing."""
import gzip
import http.server
import os
import re
import socketserver
import threading

import pytest

from sse_env import DEFAULT_LOCATIONS, MODULES, SseStream, uniq, wait_until

SCRIPT_HEAD = '''#!/usr/bin/python3
import os, sys, time
FLAGS = %r
def out(text):
    sys.stdout.write(text)
    sys.stdout.flush()
def wait_flag(name):
    path = os.path.join(FLAGS, os.environ.get('QUERY_STRING', '') + '-' + name)
    for _ in range(3000):
        if os.path.exists(path):
            return
        time.sleep(0.01)
    sys.exit(3)
'''

SCRIPTS = {
    # lines, one of them empty, unicode, a last line without LF
    'tokens': '''
out('Content-Type: text/plain\\n\\n')
out('hello\\n')
wait_flag('1')
out('w\\u00f6rld \\U0001F30D\\r\\n\\n')
wait_flag('2')
out('last')
''',
    # one line, then silence until the test says so
    'silent': '''
out('Content-Type: text/plain\\n\\n')
out('first\\n')
wait_flag('go')
out('after\\n')
''',
    # what it writes before each pause is one event (Flush mode); the
    # newline that ends what it wrote is not part of the event
    'paused': '''
out('Content-Type: text/plain\\n\\n')
out('part one\\npart two\\n')
wait_flag('1')
out('three')
''',
    # 2,000 lines without a pause, then waits for the test
    'spew': '''
out('Content-Type: text/plain\\n\\n')
for i in range(2000):
    sys.stdout.write('line %d %s\\n' % (i, 'x' * 100))
sys.stdout.flush()
wait_flag('go')
out('end\\n')
''',
    # lines longer than SSEMaxMessageSize (1K here): cut there, never
    # inside a UTF-8 character or a CRLF
    'long': '''
out('Content-Type: text/plain\\n\\n')
out('a' * 1500 + '\\n')
out('b' * 1024 + '\\r\\n')
out('c' * 1023 + '\\u00e9' + '\\n')
out('done\\n')
''',
    # resumes where the client left off
    'resume': '''
out('Content-Type: text/plain\\n\\n')
out('resumed after %s\\n' % os.environ.get('HTTP_LAST_EVENT_ID', 'nothing'))
''',
    # exactly SSEMaxMessageSize bytes, then the line's end (Flush mode)
    'flushcut': '''
out('Content-Type: text/plain\\n\\n')
out('x' * 1024 + '\\n')
''',
    # exactly SSEMaxMessageSize bytes, then a lone CR at the end
    'linecr': '''
out('Content-Type: text/plain\\n\\n')
out('y' * 1024 + '\\r')
''',
    # compresses whatever the client asked for (a script's own header)
    'gz': '''
import gzip
sys.stdout.write('Content-Type: text/plain\\nContent-Encoding: gzip\\n\\n')
sys.stdout.flush()
sys.stdout.buffer.write(gzip.compress(b'alpha\\nbeta\\n'))
sys.stdout.buffer.flush()
''',
    'fails': '''
out('Status: 500 Internal Server Error\\nContent-Type: text/plain\\n\\n')
out('broken\\n')
''',
    # writes its pid, then stays silent for a minute
    'forever': '''
out('Content-Type: text/plain\\n\\n')
open(os.path.join(FLAGS, os.environ['QUERY_STRING'] + '-pid'), 'w').write(str(os.getpid()))
out('started\\n')
time.sleep(60)
out('never\\n')
''',
}


class SlowBackend(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A backend for mod_proxy that writes one line, then waits for the
    test before each next one."""
    daemon_threads = True

    def __init__(self):
        self.steps = {}
        super().__init__(('127.0.0.1', 0), SlowHandler)

    def step(self, key, n):
        return self.steps.setdefault((key, n), threading.Event())


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        key = self.path.rsplit('/', 1)[-1]
        lines = ['token one\n', 'token two, with \u00e9\n', 'end\n']
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Connection', 'close')
        if 'gzip' in self.headers.get('Accept-Encoding', ''):
            # as a backend does when it may
            body = gzip.compress(''.join(lines).encode('utf-8'))
            self.send_header('Content-Encoding', 'gzip')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()
        for i, line in enumerate(lines):
            if i:
                self.server.step(key, i).wait(20)
            self.wfile.write(line.encode('utf-8'))
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def backend():
    srv = SlowBackend()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope='module')
def filt(module_factory, backend):
    srv = module_factory.create('filter', global_extra=[
        'LoadModule cgid_module %s/mod_cgid.so' % MODULES,
        'LoadModule alias_module %s/mod_alias.so' % MODULES,
        'LoadModule proxy_module %s/mod_proxy.so' % MODULES,
        'LoadModule proxy_http_module %s/mod_proxy_http.so' % MODULES,
        'SSEMaxMessageSize 1K',
        'LogFormat "%r %>s events=%{sse-events}n bytes=%{sse-bytes}n end=%{sse-end}n" filternotes',
        'CustomLog logs/filter_log filternotes'])
    cgi, flags = srv.dir / 'cgi', srv.dir / 'flags'
    cgi.mkdir()
    flags.mkdir()
    os.chmod(flags, 0o1777)
    for name, body in SCRIPTS.items():
        path = cgi / name
        path.write_text(SCRIPT_HEAD % str(flags) + body)
        os.chmod(path, 0o755)
    srv.flags = flags
    srv.locations = DEFAULT_LOCATIONS + '''
ScriptAlias /cgi/ "%(cgi)s/"
<Directory "%(cgi)s">
    Require all granted
</Directory>
<Location /cgi/>
    SetOutputFilter SSE
    SSEKeepAlive 1
</Location>
<Location /cgi/flushcut>
    SSEFilterMode Flush
</Location>
<Location /cgi/paused>
    SSEFilterMode Flush
    SSEFilterEvent chunk
</Location>
<Location /proxied/>
    ProxyPass http://127.0.0.1:%(port)d/
    SetOutputFilter SSE
    SSEKeepAlive 1
</Location>
''' % {'cgi': cgi, 'port': backend.server_address[1]}
    srv.write_config()
    return srv.start()


def flag(srv, key, name):
    (srv.flags / ('%s-%s' % (key, name))).write_text('')


def frames(s):
    return [(e.id, e.event, e.data) for e in s.events]


# every line is an event with its own id, sent as soon as the line is whole;
# CRLF, an empty line and a last line without LF; the body ends cleanly
def test_cgi_lines_become_events_one_by_one(filt):
    key = uniq('tok')
    s = SseStream(filt.port, '/cgi/tokens?' + key)
    assert s.status == 200
    assert s.headers['content-type'] == 'text/event-stream; charset=utf-8'
    assert 'content-length' not in s.headers
    assert s.wait_open()
    # the script is waiting for flag 1: its first line is already an event
    assert frames_after(s, 1) == [('1', 'message', 'hello')]
    flag(filt, key, '1')
    assert frames_after(s, 3)[1:] == [('2', 'message', 'w\u00f6rld \U0001F30D'),
                                      ('3', 'message', '')]
    flag(filt, key, '2')
    assert s.wait_ended() and s.clean_end
    assert frames(s) == [('1', 'message', 'hello'), ('2', 'message', 'w\u00f6rld \U0001F30D'),
                         ('3', 'message', ''), ('4', 'message', 'last')]
    assert bytes(s.raw) == (': ok\n\nid: 1\ndata: hello\n\nid: 2\ndata: w\u00f6rld \U0001F30D\n\n'
                            'id: 3\ndata: \n\nid: 4\ndata: last\n\n').encode('utf-8')
    assert wait_until(lambda: '/cgi/tokens?%s HTTP/1.1 200 events=4 bytes=%d end=done'
                      % (key, len(s.raw)) in (filt.dir / 'logs' / 'filter_log').read_text())


def frames_after(s, n):
    s.wait_for(n)
    return frames(s)


# a silent generator gets keepalive comments (SSEKeepAlive 1) and its next
# line still arrives after them
def test_cgi_keepalive_while_silent(filt):
    key = uniq('ka')
    s = SseStream(filt.port, '/cgi/silent?' + key)
    assert frames_after(s, 1) == [('1', 'message', 'first')]
    assert s.wait_comment('keepalive')
    flag(filt, key, 'go')
    assert s.wait_ended() and s.clean_end
    assert frames(s) == [('1', 'message', 'first'), ('2', 'message', 'after')]


# Flush mode: what comes before each pause is one event, lines joined by LF,
# with the configured event type
def test_cgi_flush_mode_one_event_per_pause(filt):
    key = uniq('fl')
    s = SseStream(filt.port, '/cgi/paused?' + key)
    assert frames_after(s, 1) == [('1', 'chunk', 'part one\npart two')]
    flag(filt, key, '1')
    assert s.wait_ended() and s.clean_end
    assert frames(s) == [('1', 'chunk', 'part one\npart two'), ('2', 'chunk', 'three')]


# ids go on from the client's Last-Event-ID, which the script sees too
def test_ids_continue_from_last_event_id(filt):
    s = SseStream(filt.port, '/cgi/resume', last_event_id='41')
    assert s.wait_ended() and s.clean_end
    assert frames(s) == [('42', 'message', 'resumed after 41')]


# an error answer of the generator is passed on as it is
def test_generator_error_passes_through(filt):
    r = filt.get('/cgi/fails')
    assert r.status_code == 500
    assert not r.headers['Content-Type'].startswith('text/event-stream')
    assert r.text == 'broken\n'


# a client that leaves while the script is silent is noticed, and the
# script is stopped (no waiting for its next write)
def test_client_gone_during_silence_stops_the_script(filt):
    key = uniq('gone')
    s = SseStream(filt.port, '/cgi/forever?' + key)
    assert frames_after(s, 1) == [('1', 'message', 'started')]
    pid_file = filt.flags / (key + '-pid')
    assert wait_until(pid_file.exists)
    pid = int(pid_file.read_text())
    s.close()

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split()[2] == 'Z'
    assert wait_until(gone, 20), 'CGI script %d still running after its client left' % pid
    # the opening and one event (27 bytes), then a keepalive comment (13)
    # for every second the script was silent before the client left
    line_re = re.compile(r'/cgi/forever\?%s HTTP/1.1 200 events=1 bytes=([0-9]+) end=client-gone$'
                         % key, re.M)
    assert wait_until(lambda: line_re.search((filt.dir / 'logs' / 'filter_log').read_text()))
    sent = int(line_re.search((filt.dir / 'logs' / 'filter_log').read_text()).group(1))
    assert sent >= 27 and (sent - 27) % 13 == 0, sent


# a proxied backend that writes slowly: each of its lines is an event as
# soon as it is written
def test_proxied_slow_backend(filt, backend):
    key = uniq('px')
    s = SseStream(filt.port, '/proxied/' + key)
    assert s.status == 200
    assert s.headers['content-type'] == 'text/event-stream; charset=utf-8'
    assert frames_after(s, 1) == [('1', 'message', 'token one')]
    backend.step(key, 1).set()
    assert frames_after(s, 2)[1:] == [('2', 'message', 'token two, with \u00e9')]
    backend.step(key, 2).set()
    assert s.wait_ended() and s.clean_end
    assert frames(s)[2:] == [('3', 'message', 'end')]
    assert len(frames(s)) == 3


# while a proxied backend is silent (mod_proxy holds the thread, waiting
# for it), keepalive comments still go out, and the events after them are
# intact: the ticker and the filter take turns
def test_proxied_backend_silent_gets_keepalives(filt, backend):
    key = uniq('pxka')
    s = SseStream(filt.port, '/proxied/' + key)
    assert frames_after(s, 1) == [('1', 'message', 'token one')]
    assert s.wait_comment('keepalive')
    kept = s.comments.count('keepalive')
    assert s.wait_until(lambda st: st.parser.comments.count('keepalive') > kept)
    backend.step(key, 1).set()
    backend.step(key, 2).set()
    assert s.wait_ended() and s.clean_end
    assert frames(s) == [('1', 'message', 'token one'), ('2', 'message', 'token two, with \u00e9'),
                         ('3', 'message', 'end')]
    body = bytes(s.raw)
    assert body.startswith(b': ok\n\nid: 1\ndata: token one\n\n: keepalive\n\n'), body


# a generator that writes a lot without pausing is written as it goes,
# not gathered whole: most of it arrives while the script still waits
def test_output_without_pause_is_written_as_it_goes(filt):
    key = uniq('spew')
    s = SseStream(filt.port, '/cgi/spew?' + key)
    s.wait_for(1500)
    assert len(s.events) >= 1500 and not s.ended
    flag(filt, key, 'go')
    assert s.wait_ended() and s.clean_end
    assert [e.data for e in s.events] == ['line %d %s' % (i, 'x' * 100) for i in range(2000)] + ['end']
    assert [e.id for e in s.events] == [str(i) for i in range(1, 2002)]


# lines over SSEMaxMessageSize (1K) are cut there; a CRLF or a UTF-8
# character is never cut in two, and a line's end alone makes no event
def test_long_lines_cut_at_the_size_limit(filt):
    s = SseStream(filt.port, '/cgi/long')
    assert s.wait_ended() and s.clean_end
    assert [e.data for e in s.events] == ['a' * 1024, 'a' * 476, 'b' * 1024,
                                          'c' * 1023, '\u00e9', 'done']


# a line of exactly the size limit: its end alone is no event, in Flush
# mode (a trailing LF at the pause) and in Lines mode (a lone CR at the end)
@pytest.mark.parametrize('script,data', [('flushcut', 'x' * 1024), ('linecr', 'y' * 1024)])
def test_exact_size_line_makes_one_event(filt, script, data):
    s = SseStream(filt.port, '/cgi/' + script)
    assert s.wait_ended() and s.clean_end
    assert [e.data for e in s.events] == [data]


# a script's own Content-Encoding (CGI puts it in err_headers_out) passes the
# body through unchanged: gzip bytes are no lines
def test_script_encoded_output_passed_through(filt):
    r = filt.get('/cgi/gz', headers={'Accept-Encoding': 'identity'})
    assert r.status_code == 200
    assert r.headers['Content-Encoding'] == 'gzip'
    assert not r.headers['Content-Type'].startswith('text/event-stream')
    assert r.content == b'alpha\nbeta\n'     # requests decodes the gzip body


# a Range header does not cut the stream (the byterange filter would apply
# it to the last write)
def test_range_is_ignored(filt):
    key = uniq('rng')
    s = SseStream(filt.port, '/cgi/tokens?' + key, headers={'Range': 'bytes=0-3'})
    assert s.status == 200
    assert frames_after(s, 1) == [('1', 'message', 'hello')]
    flag(filt, key, '1')
    flag(filt, key, '2')
    assert s.wait_ended() and s.clean_end
    assert [e.data for e in s.events] == ['hello', 'w\u00f6rld \U0001F30D', '', 'last']


# the backend is asked for plain output (a browser's Accept-Encoding would
# make it compress, and compressed bytes are no lines)
def test_backend_asked_for_plain_output(filt, backend):
    key = uniq('gz')
    s = SseStream(filt.port, '/proxied/' + key, headers={'Accept-Encoding': 'gzip, br'})
    assert s.status == 200 and 'content-encoding' not in s.headers
    assert frames_after(s, 1) == [('1', 'message', 'token one')]
    backend.step(key, 1).set()
    backend.step(key, 2).set()
    assert s.wait_ended() and s.clean_end
    assert [e.data for e in s.events] == ['token one', 'token two, with \u00e9', 'end']


# HEAD answers the stream headers and no body
def test_head(filt):
    r = filt.request('HEAD', '/cgi/resume')
    assert r.status_code == 200
    assert r.headers['Content-Type'] == 'text/event-stream; charset=utf-8'
    assert r.content == b''


# a graceful restart ends a proxied stream whose backend is silent (mod_proxy
# holds the thread): the ticker ends it cleanly (restarts the server)
def test_graceful_restart_ends_silent_proxied_stream(filt, backend):
    key = uniq('pxgr')
    s = SseStream(filt.port, '/proxied/' + key)
    assert frames_after(s, 1) == [('1', 'message', 'token one')]
    r = filt.apachectl('graceful')
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert s.wait_ended(15) and s.clean_end
    assert s.comments[-1] == 'server restarting'
    backend.step(key, 1).set()
    backend.step(key, 2).set()
    assert frames(s) == [('1', 'message', 'token one')]
    log = filt.dir / 'logs' / 'filter_log'
    assert wait_until(lambda: re.search(r'/proxied/%s HTTP/1.1 200 events=1 bytes=[0-9]+ end=stopping$'
                                        % key, log.read_text(), re.M))


# a graceful restart ends a silent filtered stream at once with
# ": server restarting" and a clean end, so the client reconnects and the
# generator is run again with Last-Event-ID (runs last: restarts the server)
def test_graceful_restart_ends_silent_stream(filt):
    key = uniq('gr')
    s = SseStream(filt.port, '/cgi/forever?' + key)
    assert frames_after(s, 1) == [('1', 'message', 'started')]
    r = filt.apachectl('graceful')
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert s.wait_ended(15) and s.clean_end
    assert s.comments[-1] == 'server restarting'
    assert frames(s) == [('1', 'message', 'started')]
    again = SseStream(filt.port, '/cgi/resume', last_event_id=s.events[-1].id)
    assert again.wait_ended() and again.clean_end
    assert frames(again) == [('2', 'message', 'resumed after 1')]
