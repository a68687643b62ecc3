"""A child never gives its last worker threads to streams that keep their
thread (SSEHandOff Off, TLS, HTTP/2, filters): the keep-alive connections it
already owns (and new requests) must still be served. Handed-off streams
hold no thread and do not count."""
import requests

from sse_env import SseStream, uniq, wait_until

ONE_CHILD = ['StartServers 1', 'ServerLimit 1', 'ThreadsPerChild 20', 'MaxRequestWorkers 20',
             'MinSpareThreads 1', 'MaxSpareThreads 20']


# with ThreadsPerChild 20, the child takes 18 streams; the 19th is told to come
# back later, and a keep-alive connection opened before is still served
def test_child_keeps_a_thread_free(httpd_factory):
    srv = httpd_factory.start('reserve', mpm_conf=ONE_CHILD, global_extra=['SSEMaxSubscribers 50',
                              # every test client is 127.0.0.1
                              'SSEMaxStreamsPerClient 1000',
                              # the test holds a keep-alive connection across 5+ s
                              'KeepAliveTimeout 60'],
                              expect_children=1)
    keepalive = requests.Session()
    assert keepalive.get(srv.url('/sse-admin/status'), timeout=10).status_code == 200
    ch = uniq('reserve')
    streams = [srv.sub('/threaded/%s' % ch) for _ in range(18)]
    assert wait_until(lambda: srv.status()['subscribers'] == 18, 10)
    assert srv.status()['children'][0]['thread_streams'] == 18
    extra = SseStream(srv.port, '/threaded/%s' % ch)
    assert extra.status == 200
    assert extra.wait_comment('busy, retry later', 10)
    # close at once: mpm_event accepts only ThreadsPerChild + 2 x idle threads
    # connections per child, keep-alive ones included
    extra.close()
    plain = SseStream(srv.port, '/threaded/%s' % ch, accept=None)
    assert plain.status == 503
    plain.close()
    # the old keep-alive connection and a publish still get through
    assert keepalive.get(srv.url('/sse-admin/status'), timeout=10).json()['subscribers'] == 18
    r = keepalive.post(srv.url('/sse-admin/channels/%s' % ch), data='still here', timeout=10)
    assert r.status_code == 201 and r.json()['subscribers'] == 18
    for s in streams:
        assert [e.data for e in s.wait_for(1)] == ['still here']
        s.close()


# handed-off streams hold no thread: the same child takes 5 x ThreadsPerChild
# of them and still answers a page and a publish, and each stream gets it
def test_handed_off_streams_need_no_threads(httpd_factory):
    srv = httpd_factory.start('nothreads', mpm_conf=ONE_CHILD, global_extra=[
        'SSEMaxStreamsPerClient 1000'], expect_children=1)
    ch = uniq('nothread')
    streams = [srv.sub('/events/%s' % ch) for _ in range(100)]
    assert wait_until(lambda: srv.status()['writer_streams'] == 100, 10), srv.status()
    kid = srv.status()['children'][0]
    assert kid['thread_streams'] == 0 and kid['subscribers'] == 100
    assert requests.get(srv.url('/index.html'), timeout=10).text.startswith('<html>')
    r = srv.pub(ch, 'to a hundred')
    assert r['subscribers'] == 100
    for s in streams:
        assert [e.data for e in s.wait_for(1)] == ['to a hundred']
        s.close()
