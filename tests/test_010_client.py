"""Self-test of the suite's SSE client (no httpd): the parser follows the
WHATWG event-stream rules, whatever the read boundaries, and the HTTP reader
de-chunks exactly."""
import socket
import threading

import pytest

from sse_env import SseParser, SseStream

CASES = [
    # (bytes, [(type, data, last id)], comments)
    (b'data:a\r\ndata:b\rdata:c\n\n', [('message', 'a\nb\nc', '')], []),
    (b'\xef\xbb\xbfdata:1\n\n\xef\xbb\xbfdata:2\n\ndata:3\n\n', [('message', '1', ''), ('message', '3', '')], []),
    (b'id: 7\n\ndata: first\n\nid: a\x00b\ndata: x\n\n', [('message', 'first', '7'), ('message', 'x', '7')], []),
    (b'data\n\ndata\ndata\n\ndata:end\n\n', [('message', '', ''), ('message', '\n', ''), ('message', 'end', '')], []),
    (b'event:\ndata: e\n\n', [('message', 'e', '')], []),
    (b'data:  two spaces\ndata:\ttab\n\n', [('message', ' two spaces\n\ttab', '')], []),
    (b'data: complete\n\ndata: never dispatched', [('message', 'complete', '')], []),
    (b': ok\n\n:no space\n\nretry: 100\n\nretry: 10x\n\n', [], ['ok', 'no space']),
    (b'id: 5\nevent: price\ndata: 1\r\n\r\nid:\ndata: 2\r\r', [('price', '1', '5'), ('message', '2', '')], []),
    ('data: h\u00e9llo \u2713\n\n'.encode(), [('message', 'h\u00e9llo \u2713', '')], []),
]


# the parser gives the spec's result for each fixture, fed whole or one byte at a time
@pytest.mark.parametrize('step', [0, 1, 2, 3])
@pytest.mark.parametrize('raw,events,comments', CASES)
def test_parser_fixtures(raw, events, comments, step):
    p = SseParser()
    if step == 0:
        p.feed(raw)
    else:
        for i in range(0, len(raw), step):
            p.feed(raw[i:i + step])
    assert [(e.event, e.data, e.id) for e in p.events] == events
    assert p.comments == comments


# retry fields are recorded only when all digits
def test_parser_retry():
    p = SseParser()
    p.feed(b'retry: 03000\n\nretry: 1000x\n\nretry:\n\ndata: x\nretry: 5\n\n')
    assert p.retries == [3000, 5]
    assert p.events[0].retry == 5


def serve_once(payload):
    """A one-shot TCP server answering any request with payload; returns its port."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        buf = b''
        while b'\r\n\r\n' not in buf:
            buf += c.recv(4096)
        for i in range(0, len(payload), 7):
            c.sendall(payload[i:i + 7])
        c.close()
        srv.close()
    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


# the HTTP reader de-chunks and records chunk payloads exactly
def test_chunked_reader():
    body = b': ok\n\nid: 1\ndata: a\n\n'
    wire = (b'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n'
            b'6\r\n: ok\n\n\r\n' + b'%x\r\n' % (len(body) - 6) + body[6:] + b'\r\n0\r\n\r\n')
    s = SseStream(serve_once(wire), '/x')
    assert s.wait_ended(5) and s.clean_end
    assert s.status == 200 and s.body == body
    assert s.chunks == [b': ok\n\n', body[6:]]
    assert [(e.id, e.data) for e in s.events] == [('1', 'a')]
    s.close()


# a Content-Length body and an EOF-delimited body are read whole
@pytest.mark.parametrize('framing', ['length', 'eof'])
def test_plain_reader(framing):
    body = b'{"error":"x","status":400}'
    head = b'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n'
    if framing == 'length':
        head += b'Content-Length: %d\r\n' % len(body)
    s = SseStream(serve_once(head + b'\r\n' + body), '/x')
    assert s.read_all(5) == body and s.json()['status'] == 400
    s.close()
