"""A child never gives its last worker threads to streams: the keep-alive
connections it already owns (and new requests) must still be served."""
import requests

from sse_env import SseStream, uniq, wait_until

ONE_CHILD = ['StartServers 1', 'ServerLimit 1', 'ThreadsPerChild 10', 'MaxRequestWorkers 10',
             'MinSpareThreads 1', 'MaxSpareThreads 10']


# with ThreadsPerChild 10, the child takes 9 streams; the 10th is told to come
# back later, and a keep-alive connection opened before is still served
def test_child_keeps_a_thread_free(httpd_factory):
    srv = httpd_factory.start('reserve', mpm_conf=ONE_CHILD, global_extra=['SSEMaxSubscribers 50',
                              # the test holds a keep-alive connection across 5+ s
                              'KeepAliveTimeout 60'],
                              expect_children=1)
    keepalive = requests.Session()
    assert keepalive.get(srv.url('/sse-admin/status'), timeout=10).status_code == 200
    ch = uniq('reserve')
    streams = [srv.sub('/events/%s' % ch) for _ in range(9)]
    assert wait_until(lambda: srv.status()['subscribers'] == 9, 10)
    extra = SseStream(srv.port, '/events/%s' % ch)
    assert extra.status == 200
    assert b'busy, retry later' in extra.read_all(10)
    plain = SseStream(srv.port, '/events/%s' % ch, accept=None)
    assert plain.status == 503
    plain.read_all(10)
    # the old keep-alive connection and a publish still get through
    assert keepalive.get(srv.url('/sse-admin/status'), timeout=10).json()['subscribers'] == 9
    r = keepalive.post(srv.url('/sse-admin/channels/%s' % ch), data='still here', timeout=10)
    assert r.status_code == 201 and r.json()['subscribers'] == 9
    for s in streams:
        assert [e.data for e in s.wait_for(1)] == ['still here']
        s.close()
