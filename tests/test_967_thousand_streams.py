"""Streams hold no worker thread: a server with 2 children of 10 threads
each (20 threads in all) holds 1,000 streams, still answers a page and the
admin API meanwhile, and every stream gets every event once, in order;
the status shows them handed to the writers."""
import requests

from sse_env import uniq
from sse_mass import Crowd, MassSubscriber

STREAMS = 1000
EVENTS = 20
SMALL_MPM = ['StartServers 2', 'ServerLimit 2', 'ThreadsPerChild 10', 'MaxRequestWorkers 20',
             'MinSpareThreads 1', 'MaxSpareThreads 20', 'ListenCoresBucketsRatio 1']


def test_twenty_threads_hold_a_thousand_streams(httpd_factory):
    srv = httpd_factory.start('thousand', mpm_conf=SMALL_MPM, expect_children=2,
                              global_extra=['SSEMaxStreamsPerClient 2000'])
    ch = uniq('many')
    crowd = Crowd()
    try:
        subs = [crowd.add(MassSubscriber(srv.port, '/events/%s' % ch)) for _ in range(STREAMS)]

        def all_open():
            # every client has its answer, and the server handed all of them
            # to the writers; while the 1,000 are being set up, a status
            # request waits behind them for a thread (seconds under ASan):
            # that is "not yet", the overall deadline still holds
            if not all(s.connections or s.failures or s.busy for s in subs):
                return False
            try:
                r = requests.get(srv.url('/sse-admin/status'), timeout=2)
            except requests.Timeout:
                return False
            return r.json()['writer_streams'] == STREAMS
        assert crowd.pump_until(all_open, 60), srv.status()
        st = srv.status()
        assert st['subscribers'] == STREAMS
        assert sum(c['writer_streams'] for c in st['children']) == STREAMS
        assert all(c['writer_streams'] > 0 for c in st['children']), st['children']
        assert [s for s in subs if s.connections != 1 or s.failures or s.busy] == []
        # the 20 threads are free for everything else
        page = requests.get(srv.url('/index.html'), timeout=10)
        assert page.status_code == 200
        published = []
        for n in range(EVENTS):
            r = srv.pub(ch, 'event %02d' % n)
            assert r['subscribers'] == STREAMS
            published.append((int(r['id']), 'event %02d' % n))
            crowd.pump(0.01)
        assert crowd.pump_until(lambda: all(len(s.events) >= EVENTS for s in subs), 60)
        wrong = [k for k, s in enumerate(subs) if list(zip(s.ids, s.datas)) != published]
        assert wrong == [], 'streams %s got %r' % (wrong[:5], list(zip(subs[wrong[0]].ids,
                                                                     subs[wrong[0]].datas)))
        assert [s for s in subs if s.server_ends or s.resets] == []
    finally:
        crowd.close()
