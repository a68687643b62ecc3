"""Streams over HTTP/2 (h2c with prior knowledge, driven by curl)."""
import shutil
import subprocess
import threading

import pytest

from sse_env import SseParser, uniq, wait_until

CURL = shutil.which('curl')
pytestmark = pytest.mark.skipif(CURL is None, reason='curl not installed')

H2_LOCATIONS_EXTRA = ['LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so',
                      'Protocols h2c http/1.1', 'H2Direct on']


class CurlStream:
    """curl -N --http2-prior-knowledge, parsed as it arrives."""

    def __init__(self, srv, path):
        self.parser = SseParser()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([CURL, '-sS', '-N', '--http2-prior-knowledge', '-D', '/dev/stderr',
                                      '-H', 'Accept: text/event-stream', srv.url(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            d = self.proc.stdout.read1(65536)
            if not d:
                break
            with self.lock:
                self.parser.feed(d)

    def events(self):
        with self.lock:
            return list(self.parser.events)

    def comments(self):
        with self.lock:
            return list(self.parser.comments)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(5)
        self.thread.join(5)
        return self.proc.stderr.read().decode('latin-1', 'replace')


@pytest.fixture
def h2(httpd_factory):
    return httpd_factory.start('h2', global_extra=H2_LOCATIONS_EXTRA)


# a stream over h2c receives events; disconnects are noticed through keepalive writes
def test_h2c_stream(h2):
    ch = uniq('h2')
    c = CurlStream(h2, '/events/%s' % ch)
    try:
        assert wait_until(lambda: 'ok' in c.comments(), 10), c.comments()
        assert h2.wait_channel_subscribers(ch, 1)
        r = h2.pub(ch, 'over h2')
        assert wait_until(lambda: len(c.events()) >= 1, 10)
        assert [(e.id, e.data) for e in c.events()] == [(r['id'], 'over h2')]
        assert wait_until(lambda: 'keepalive' in c.comments(), 10)
    finally:
        headers = c.close()
    assert 'HTTP/2 200' in headers, headers
    assert 'content-type: text/event-stream; charset=utf-8' in headers.lower()
    assert h2.wait_channel_subscribers(ch, 0, 10), h2.channel(ch)


# the server stops cleanly with an h2 stream open
def test_h2c_stop_with_open_stream(h2):
    ch = uniq('h2stop')
    c = CurlStream(h2, '/events/%s' % ch)
    try:
        assert wait_until(lambda: 'ok' in c.comments(), 10)
        assert h2.stop(), 'server did not exit within 10 s with an h2 stream open'
        assert h2.crash_lines() == []
    finally:
        c.close()
