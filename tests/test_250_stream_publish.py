"""The streaming publish: POST with Content-Type: application/x-ndjson, one
envelope per line, each published as soon as its line arrives, answered with
a summary. Bad lines get their own errors; only whole lines are published."""
import json
import socket
import time

import pytest

from sse_env import raw_request, uniq, wait_until


@pytest.fixture(scope='module')
def pub(module_factory):
    # a short Timeout, so that the stalled body test is quick
    return module_factory.start('ndjson', global_extra=['Timeout 3', 'SSEMaxMessageSize 1K',
                                                         'SSEHistorySize 1000'])


def post_ndjson(srv, ch, body):
    r = srv.request('POST', '/sse-admin/channels/%s' % ch, data=body,
                    headers={'Content-Type': 'application/x-ndjson'})
    return r


class ChunkedPost:
    """A POST whose body is sent piece by piece (chunked) on a raw socket."""

    def __init__(self, srv, ch):
        self.sock = socket.create_connection(('127.0.0.1', srv.port), timeout=15)
        self.sock.sendall(('POST /sse-admin/channels/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                           'Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n'
                           'Connection: close\r\n\r\n' % ch).encode())

    def send(self, text):
        data = text.encode()
        self.sock.sendall(b'%x\r\n%s\r\n' % (len(data), data))

    def finish(self):
        self.sock.sendall(b'0\r\n\r\n')
        return self.reply()

    def reply(self):
        out = b''
        while True:
            d = self.sock.recv(65536)
            if not d:
                break
            out += d
        self.sock.close()
        head, body = out.split(b'\r\n\r\n', 1)
        if b'chunked' in head.lower():
            plain, rest = b'', body
            while rest:
                size, rest = rest.split(b'\r\n', 1)
                n = int(size, 16)
                if n == 0:
                    break
                plain, rest = plain + rest[:n], rest[n + 2:]
            body = plain
        return int(head.split()[1]), json.loads(body)


# each line is published as it arrives: a subscriber sees the first event while
# the body is still open, and the summary lists the ids in line order
def test_lines_published_as_they_arrive(pub):
    ch = uniq('live')
    s = pub.sub('/events/%s' % ch)
    post = ChunkedPost(pub, ch)
    post.send('{"data":"first","event":"tick"}\n')
    evs = s.wait_for(1)
    assert [(e.event, e.data) for e in evs] == [('tick', 'first')]
    post.send('{"data":{"n":2}}\n{"data":"third"}\n')
    assert [e.data for e in s.wait_for(3)] == ['first', '{"n":2}', 'third']
    status, summary = post.finish()
    assert status == 200
    assert summary['lines'] == 3 and summary['published'] == 3 and summary['failed'] == 0
    assert summary['ids'] == [e.id for e in s.events]
    assert summary['first_id'] == s.events[0].id and summary['last_id'] == s.events[-1].id
    assert summary['errors'] == [] and 'body_error' not in summary


# a bad line gets an error with its line number; the lines after it still go out
def test_bad_lines_do_not_stop_the_rest(pub):
    ch = uniq('bad')
    s = pub.sub('/events/%s' % ch)
    body = '\n'.join([
        '{"data":"one"}',
        'not json',
        '',
        '{"data":"two","event":"sse-reset"}',
        '[{"data":"array"}]',
        '{"data":"%s"}' % ('x' * 2000),
        '{"data":"three","id":"5"}',
        '{"data":"four"}',
    ]) + '\n'
    r = post_ndjson(pub, ch, body)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary['published'] == 2 and summary['failed'] == 5 and summary['lines'] == 8
    assert [(e['line'], e['status']) for e in summary['errors']] == [
        (2, 400), (4, 400), (5, 400), (6, 413), (7, 400)]
    assert 'reserved' in summary['errors'][1]['error']
    assert 'one envelope per line' in summary['errors'][2]['error']
    assert [e.data for e in s.wait_for(2)] == ['one', 'four']
    assert [e.id for e in s.events] == summary['ids']


# a line longer than 8 x SSEMaxMessageSize is refused on its own (413), the rest go on
def test_overlong_line(pub):
    ch = uniq('long')
    body = '{"data":"a"}\n' + '{"data":"' + 'y' * 9000 + '"}\n{"data":"b"}\n'
    r = post_ndjson(pub, ch, body)
    assert r.status_code == 200
    summary = r.json()
    assert summary['published'] == 2
    assert [(e['line'], e['status']) for e in summary['errors']] == [(2, 413)]
    assert 'longer than 8192 bytes' in summary['errors'][0]['error']
    assert pub.channel(ch)['messages'] == 2


# the last line needs no newline when the body ends properly
def test_last_line_without_newline(pub):
    ch = uniq('nonl')
    r = post_ndjson(pub, ch, '{"data":"a"}\n{"data":"b"}')
    assert r.status_code == 200 and r.json()['published'] == 2


# a body that ends early (Content-Length larger than what came) publishes its whole
# lines, never the cut one
def test_truncated_body(pub):
    ch = uniq('cut')
    body = b'{"data":"whole"}\n{"data":"cut sh'
    req = (b'POST /sse-admin/channels/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
           b'Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n'
           % (ch.encode(), len(body) + 100)) + body
    with socket.create_connection(('127.0.0.1', pub.port), timeout=10) as sock:
        sock.sendall(req)
        sock.shutdown(socket.SHUT_WR)
        out = b''
        while True:
            d = sock.recv(65536)
            if not d:
                break
            out += d
    assert out.startswith(b'HTTP/1.1 400'), out[:200]
    summary = json.loads(out.split(b'\r\n\r\n', 1)[1])
    assert summary['published'] == 1 and summary['body_error'] == 'the body ended before it was complete'
    assert wait_until(lambda: pub.channel(ch) and pub.channel(ch)['messages'] == 1)


# a publisher that stalls longer than Timeout gets 408; what it sent before stays published
def test_stalled_body(pub):
    ch = uniq('stall')
    s = pub.sub('/events/%s' % ch)
    post = ChunkedPost(pub, ch)
    post.send('{"data":"before"}\n{"data":"half')
    assert [e.data for e in s.wait_for(1)] == ['before']
    status, summary = post.reply()
    assert status == 408
    assert summary['published'] == 1 and 'stalled' in summary['body_error']
    time.sleep(0.2)
    assert pub.channel(ch)['messages'] == 1


# many lines sent at once are published in one go, ids consecutive and in order
def test_burst_of_lines(pub):
    ch = uniq('burst')
    s = pub.sub('/events/%s' % ch)
    body = ''.join('{"data":"m%d"}\n' % i for i in range(300))
    r = post_ndjson(pub, ch, body)
    summary = r.json()
    assert summary['published'] == 300
    ids = [int(i) for i in summary['ids']]
    assert ids == sorted(ids) and len(set(ids)) == 300
    evs = s.wait_for(300)
    assert [e.data for e in evs] == ['m%d' % i for i in range(300)]
