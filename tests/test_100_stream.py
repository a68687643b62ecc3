"""Stream basics: response head, first bytes, keepalives, methods, channel
selection and validation, pinned/strict locations, compression kept out."""
import re
import socket
import time

import pytest

from sse_env import OPENING, SseStream, raw_request, uniq


def open_stream(sse, path, **kw):
    return SseStream(sse.port, path, **kw)


# a stream answers 200 with the documented headers, chunked, without Content-Length
def test_stream_response_headers(sse):
    ch = uniq('hdr')
    s = sse.sub('/events/%s' % ch)
    assert s.status == 200
    assert s.http_version == '1.1'
    assert s.headers['Content-Type'] == 'text/event-stream; charset=utf-8'
    cc = [t.strip() for t in s.headers.get('Cache-Control', '').split(',')]
    assert 'no-cache' in cc, s.headers
    assert 'no-store' in cc and 'no-transform' in cc, s.headers
    assert s.headers.get('X-Accel-Buffering') == 'no'
    assert 'Content-Length' not in s.headers
    assert s.headers.get('Transfer-Encoding', '').lower() == 'chunked'
    assert 'Content-Encoding' not in s.headers
    assert 'SSE-Resume' not in s.headers


# the first bytes of a stream are the ': ok' comment and the id the stream starts
# after (the newest id of the server): a data-less id sets EventSource's lastEventId
def test_stream_starts_with_ok_comment(sse):
    ch = uniq('first')
    st = sse.status()
    newest = int(st['last_id']) if st['last_id'] else int(st['first_id']) - 1
    s = sse.sub('/events/%s' % ch)
    m = OPENING.match(s.wait_bytes(10))
    assert m, s.body[:80]
    assert int(m.group(1)) >= newest
    assert s.parser.last_id == m.group(1).decode() and not s.events


# a client that loses its stream before its first event resumes from that id and
# misses nothing published while it was away
def test_resume_from_the_opening_id(sse):
    ch = uniq('early')
    s = sse.sub('/events/%s' % ch)
    opened_at = s.parser.last_id
    s.close()
    r = sse.pub(ch, 'while away')
    again = sse.sub('/events/%s' % ch, last_event_id=opened_at)
    assert again.headers['SSE-Resume'] == 'exact'
    assert [(e.id, e.data) for e in again.wait_for(1)] == [(r['id'], 'while away')]
    assert not [e for e in again.events if e.event == 'sse-reset']
    again.close()


# with SSERetry the stream starts with 'retry: 2500', then ': ok'
def test_stream_starts_with_retry_when_configured(sse):
    s = sse.sub('/events-retry/%s' % uniq('retry'))
    body = s.wait_bytes(len(b'retry: 2500\n\n: ok\nid: 1\n\n'))
    assert re.match(b'retry: 2500\n\n' + OPENING.pattern, body), body[:60]
    assert s.retries == [2500]


# an idle stream on /events (SSEKeepAlive 1) receives ': keepalive' comments
def test_idle_stream_gets_keepalive_comments(sse):
    s = sse.sub('/events/%s' % uniq('ka'))
    assert s.wait_until(lambda st: st.parser.comments.count('keepalive') >= 2, 10), s.body
    assert s.events == []
    assert b': keepalive\n\n' in s.body


# an HTTP/1.0 client gets a close-delimited stream (no chunking) that still works
def test_http10_stream_is_close_delimited(sse):
    ch = uniq('h10')
    s = sse.subscribe('/events/%s' % ch, http10=True)
    assert s.status == 200
    assert 'Transfer-Encoding' not in s.headers and 'Content-Length' not in s.headers
    assert s.wait_open()
    r = sse.pub(ch, 'over http/1.0')
    ev = s.wait_for(1)
    assert [(e.id, e.data) for e in ev] == [(r['id'], 'over http/1.0')]


# HEAD gives the stream headers and no body
def test_head_gives_headers_only(sse):
    ch = uniq('head')
    out = raw_request(sse.port, ('HEAD /events/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                                 'Accept: text/event-stream\r\nConnection: close\r\n\r\n' % ch).encode())
    head, sep, body = out.partition(b'\r\n\r\n')
    assert sep, out
    assert head.startswith(b'HTTP/1.1 200'), head
    assert b'Content-Type: text/event-stream; charset=utf-8' in head
    assert body == b''
    # a HEAD does not leave a subscriber behind
    info = sse.channel(ch)
    assert info is None or info['subscribers'] == 0


# POST, PUT and DELETE on a stream location give 405 with Allow: GET, HEAD, TRACE
@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE'])
def test_other_methods_405(sse, method):
    s = open_stream(sse, '/events/%s' % uniq('m'), method=method, body=b'')
    s.read_all()
    assert s.status == 405
    allow = sorted(t.strip() for t in s.headers.get('Allow', '').split(','))
    # httpd itself answers TRACE (the test server leaves TraceEnable at its default, on)
    assert allow == ['GET', 'HEAD', 'TRACE'], s.headers


BAD_CHANNEL_PATHS = [
    ('/events/' + 'a' * 129, 'too long (129 bytes)'),
    ('/events?channel=' + 'b' * 129, 'too long via query'),
    ('/events/a%20b', 'space via path'),
    ('/events?channel=a%20b', 'space via query'),
    ('/events/a/b', 'slash via path'),
    ('/events/%C3%A9', 'non-ASCII via path'),
    ('/events?channel=%C3%A9', 'non-ASCII via query'),
    ('/events?channel=', 'empty channel='),
    ('/events?channel=a,,b', 'empty element in a list'),
    ('/events?channel=a%3Cb', 'angle bracket'),
    ('/events', 'no channel at all'),
    ('/events/', 'empty path remainder'),
    ('/events?other=1', 'no channel parameter'),
]


# bad channel names and missing channels give 400 with a short text
@pytest.mark.parametrize('path,why', BAD_CHANNEL_PATHS, ids=[w for _, w in BAD_CHANNEL_PATHS])
def test_bad_channel_400(sse, path, why):
    s = open_stream(sse, path)
    body = s.read_all()
    assert s.status == 400, (why, s.status, body[:200])
    assert body.strip(), 'a 400 should explain why'


# a 128-byte name of every allowed character class is accepted
def test_channel_name_limits_accepted(sse):
    name = ('Az09_-.:@~' * 13)[:128]
    assert len(name) == 128
    s = sse.sub('/events/' + name)
    r = sse.pub(name, 'long name')
    assert [(e.id, e.data) for e in s.wait_for(1)] == [(r['id'], 'long name')]


# more than 64 channels on one stream is 400; exactly 64 is fine
def test_channel_count_limit(sse):
    base = uniq('many')
    names = ['%s-%d' % (base, i) for i in range(65)]
    s = open_stream(sse, '/events?channel=' + ','.join(names))
    s.read_all()
    assert s.status == 400
    s = open_stream(sse, '/events?' + '&'.join('channel=' + n for n in names))
    s.read_all()
    assert s.status == 400
    s = sse.sub('/events?channel=' + ','.join(names[:64]))
    r = sse.pub(names[63], 'sixty-four')
    assert [e.data for e in s.wait_for(1)] == ['sixty-four']
    assert r['subscribers'] == 1


# several channels via repeated channel=, a comma list, and path + query
@pytest.mark.parametrize('form', ['repeat', 'comma', 'path+query'])
def test_multiple_channels(sse, form):
    a, b = uniq('mca'), uniq('mcb')
    path = {'repeat': '/events?channel=%s&channel=%s' % (a, b),
            'comma': '/events?channel=%s,%s' % (a, b),
            'path+query': '/events/%s?channel=%s' % (a, b)}[form]
    s = sse.sub(path)
    ra = sse.pub(a, 'to a')
    rb = sse.pub(b, 'to b')
    ev = s.wait_for(2)
    assert [(e.id, e.data) for e in ev] == [(ra['id'], 'to a'), (rb['id'], 'to b')]
    assert ra['subscribers'] == 1 and rb['subscribers'] == 1


# naming the same channel twice is accepted (sse_stream.c add_channel() drops repeats): one subscription, one delivery
@pytest.mark.parametrize('form', ['comma', 'path+query', 'repeat'])
def test_duplicate_channel_delivered_once(sse, form):
    ch = uniq('dup')
    path = {'comma': '/events?channel=%s,%s' % (ch, ch),
            'path+query': '/events/%s?channel=%s' % (ch, ch),
            'repeat': '/events?channel=%s&channel=%s' % (ch, ch)}[form]
    s = sse.sub(path)
    assert sse.wait_channel_subscribers(ch, 1), sse.channel(ch)
    r = sse.pub(ch, 'once')
    assert r['subscribers'] == 1
    assert len(s.wait_for(1)) == 1, s.body
    # a second copy would come right behind the first: wait for the next keepalive (SSEKeepAlive 1)
    seen = s.comments.count('keepalive')
    assert s.wait_until(lambda st: len(st.parser.events) >= 2 or st.parser.comments.count('keepalive') > seen, 5)
    assert [(e.id, e.data) for e in s.events] == [(r['id'], 'once')]
    assert s.body.count(b'data: once\n') == 1, s.body


# a channel that another stream does not subscribe to is not delivered to it
def test_channels_are_isolated(sse):
    a, b = uniq('isoa'), uniq('isob')
    sa = sse.sub('/events/%s' % a)
    sb = sse.sub('/events/%s' % b)
    sse.pub(a, 'only a')
    rb = sse.pub(b, 'only b')
    assert [e.data for e in sb.wait_for(1)] == ['only b']
    assert [e.data for e in sa.wait_for(1)] == ['only a']
    # nothing more arrives on either stream after b's event
    sa.wait_until(lambda st: 'keepalive' in st.parser.comments, 5)
    assert [e.data for e in sa.events] == ['only a']
    assert [e.id for e in sb.events] == [rb['id']]


# with SSEAutoCreate Off an unknown channel is 404, a published-to one works
def test_strict_location_unknown_channel_404(sse):
    s = open_stream(sse, '/strict/%s' % uniq('unknown'))
    s.read_all()
    assert s.status == 404
    known = uniq('known')
    first = sse.pub(known, 'created by publish')
    s = sse.sub('/strict/%s' % known)
    r = sse.pub(known, 'live on strict')
    ev = s.wait_for(1)
    assert [(e.id, e.data) for e in ev] == [(r['id'], 'live on strict')]
    assert int(r['id']) > int(first['id'])


# with SSEAutoCreate Off one unknown channel among several makes the subscribe 404
def test_strict_location_one_unknown_among_several(sse):
    known = uniq('known2')
    sse.pub(known, 'x')
    s = open_stream(sse, '/strict?channel=%s,%s' % (known, uniq('unknown2')))
    s.read_all()
    assert s.status == 404
    assert sse.channel(known)['subscribers'] == 0


# a location with SSEChannel subscribes to its pinned channels only
def test_pinned_location_subscribes_to_pinned_channels(sse):
    s = sse.sub('/pinned')
    tag = uniq('pin')
    ra = sse.pub('pinned-a', 'a ' + tag)
    rb = sse.pub('pinned-b', 'b ' + tag)
    ev = s.wait_for(2)
    assert [(e.id, e.data) for e in ev] == [(ra['id'], 'a ' + tag), (rb['id'], 'b ' + tag)]


# a path remainder or channel= on a pinned location is refused with 400
@pytest.mark.parametrize('path', ['/pinned/x', '/pinned?channel=x', '/pinned/pinned-a'])
def test_pinned_location_refuses_channel_selection(sse, path):
    s = open_stream(sse, path)
    s.read_all()
    assert s.status == 400


# SetOutputFilter DEFLATE does not compress the stream; events arrive one by one
def test_deflate_is_kept_out(sse):
    ch = uniq('gz')
    s = sse.sub('/gz/%s' % ch, headers={'Accept-Encoding': 'gzip, deflate'})
    assert 'Content-Encoding' not in s.headers, s.headers
    assert s.headers['Content-Type'] == 'text/event-stream; charset=utf-8'
    assert OPENING.match(s.body), s.body[:60]
    for i in range(3):
        r = sse.pub(ch, 'gz event %d' % i)
        ev = s.wait_for(i + 1)
        assert len(ev) == i + 1, 'event %d did not arrive on its own: %r' % (i, s.body)
        assert (ev[i].id, ev[i].data) == (r['id'], 'gz event %d' % i)
        assert ('id: %s\n' % r['id']).encode() in s.body


# each event is flushed as a whole in its own chunk(s), never split from its blank line
def test_events_are_flushed_whole(sse):
    ch = uniq('flush')
    s = sse.sub('/events/%s' % ch)
    for i in range(5):
        r = sse.pub(ch, 'flush %d' % i)
        assert len(s.wait_for(i + 1)) == i + 1
        assert s.body.endswith(b'data: flush %d\n\n' % i), s.body[-80:]
        assert ('id: %s\n' % r['id']).encode() in s.body


# one publish reaches eight streams of the same channel
def test_fanout_to_eight_streams(sse):
    ch = uniq('busyish')
    streams = [sse.sub('/events/%s' % ch) for _ in range(8)]
    r = sse.pub(ch, 'all eight')
    assert r['subscribers'] == 8
    for s in streams:
        assert [e.data for e in s.wait_for(1)] == ['all eight']


# SetOutputFilter BROTLI_COMPRESS does not compress the stream either
def test_brotli_is_kept_out(sse):
    ch = uniq('br')
    s = sse.sub('/br/%s' % ch, headers={'Accept-Encoding': 'br, gzip'})
    assert 'Content-Encoding' not in s.headers, s.headers
    r = sse.pub(ch, 'br event')
    assert [(e.id, e.data) for e in s.wait_for(1)] == [(r['id'], 'br event')]


# a request pipelined behind a stream is not mistaken for a disconnect
def test_pipelined_request_does_not_end_stream(sse):
    ch = uniq('pipe')
    sock = socket.create_connection(('127.0.0.1', sse.port), timeout=10)
    try:
        sock.sendall(('GET /events/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n'
                      'GET /sse-admin/status HTTP/1.1\r\nHost: x\r\n\r\n' % ch).encode())
        buf = b''
        deadline = time.monotonic() + 10
        while not OPENING.search(buf) and time.monotonic() < deadline:
            buf += sock.recv(65536)
        assert buf.startswith(b'HTTP/1.1 200'), buf[:100]
        assert sse.wait_channel_subscribers(ch, 1)
        time.sleep(2.5)     # a few keepalive intervals (SSEKeepAlive 1)
        r = sse.pub(ch, 'still streaming')
        assert r['subscribers'] == 1
        deadline = time.monotonic() + 10
        while b'still streaming' not in buf and time.monotonic() < deadline:
            d = sock.recv(65536)
            if not d:
                break
            buf += d
        assert b'data: still streaming\n\n' in buf and ('id: %s\n' % r['id']).encode() in buf, buf[-300:]
    finally:
        sock.close()


# SSEKeepAlive 0 must mean "none", not "unset": on this server the default is
# 1 s (server-level SSEKeepAlive 1), so a location whose 0 were taken as "not
# configured" (e.g. a merge using 0 as its unset value) would inherit 1 s and
# show keepalives in the same window in which the inheriting locations show
# two. Comparing a 0 location with the built-in default (15 s) could not tell
# the two apart in a few seconds. Not covered: code that turns an explicit 0
# into the built-in 15 s would need more than 15 s of watching. Both ways a
# keepalive is written are covered: the child's writer (plain stream) and the
# stream's own thread (DEFLATE forces it).
KEEPALIVE_LOCATIONS = """
<Location /inherits>
    SetHandler sse-stream
</Location>
<Location /off>
    SetHandler sse-stream
    SSEKeepAlive 0
</Location>
<Location /inherits-thread>
    SetHandler sse-stream
    SetOutputFilter DEFLATE
</Location>
<Location /off-thread>
    SetHandler sse-stream
    SetOutputFilter DEFLATE
    SSEKeepAlive 0
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1 ::1
</Location>
"""


# with SSEKeepAlive 0 an idle stream gets no keepalive comments, where the inherited 1 s gives two, and still gets events
def test_keepalive_zero_overrides_inherited_interval(httpd_factory):
    srv = httpd_factory.start('keepalive0', locations=KEEPALIVE_LOCATIONS,
                              global_extra=['SSEKeepAlive 1'])
    ch = uniq('quiet')
    # the silent streams open first: they are idle at least as long as the others
    off = [srv.sub('/off/%s' % ch), srv.sub('/off-thread/%s' % ch)]
    on = [srv.sub('/inherits/%s' % ch), srv.sub('/inherits-thread/%s' % ch)]
    for s in on:
        assert s.wait_until(lambda st: st.parser.comments.count('keepalive') >= 2, 10), (s.path, s.body)
        assert re.match(OPENING.pattern + b': keepalive\n\n: keepalive\n\n', s.body), \
            (s.path, s.body)
    for s in off:
        assert OPENING.fullmatch(s.body), (s.path, s.body)
    r = srv.pub(ch, 'quiet event')
    assert r['subscribers'] == 4
    for s in off:
        assert [(e.id, e.data) for e in s.wait_for(1)] == [(r['id'], 'quiet event')]
        assert re.fullmatch(OPENING.pattern + ('id: %s\ndata: quiet event\n\n' % r['id']).encode(),
                            s.body), (s.path, s.body)


# percent-encoded allowed characters in a stream path or admin path decode to the same channel
def test_percent_encoded_channel_names(sse):
    base = uniq('enc')
    s = sse.sub('/events/%s%%2Ex%%7E' % base)
    r = sse.publish(None, b'encoded', raw_path='/sse-admin/channels/%s.x%%7e' % base)
    assert r.status_code == 201, r.text
    assert r.json()['channel'] == base + '.x~'
    assert [e.data for e in s.wait_for(1)] == ['encoded']
