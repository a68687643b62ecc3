"""Streams over HTTP/2 (h2c with prior knowledge, driven by curl)."""
import shutil

import pytest

from sse_env import uniq, wait_until
from tls_env import CurlStream

CURL = shutil.which('curl')
pytestmark = pytest.mark.skipif(CURL is None, reason='curl not installed')

H2_LOCATIONS_EXTRA = ['LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so',
                      'Protocols h2c http/1.1', 'H2Direct on']


@pytest.fixture
def h2(httpd_factory):
    return httpd_factory.start('h2', global_extra=H2_LOCATIONS_EXTRA)


# a stream over h2c receives events; disconnects are noticed through keepalive writes
def test_h2c_stream(h2):
    ch = uniq('h2')
    c = CurlStream([h2.url('/events/%s' % ch)], 'h2c')
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
    c = CurlStream([h2.url('/events/%s' % ch)], 'h2c')
    try:
        assert wait_until(lambda: 'ok' in c.comments(), 10)
        assert h2.stop(), 'server did not exit within 10 s with an h2 stream open'
        assert h2.crash_lines() == []
    finally:
        c.close()
