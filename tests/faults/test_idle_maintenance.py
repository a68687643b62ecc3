"""Handed-off streams leave every worker thread idle, which is what the
MPM's idle maintenance looks at when it decides to stop a child. With the
shipped demo configuration, and with the sizing conf-examples/sse.conf
documents (listener buckets, StartServers = ServerLimit, MaxSpareThreads
as SSE00012 asks), no child is stopped in a minute and every stream stays
open and gets the event published at the end."""
import re
import time
from pathlib import Path

from sse_env import uniq, wait_until

STREAMS = 100
MINUTE = 60
DEMO_CONF = Path(__file__).resolve().parents[2] / 'conf-examples' / 'demo.conf'
MPM_DIRECTIVES = ('StartServers', 'ServerLimit', 'ThreadsPerChild', 'MaxRequestWorkers',
                  'MinSpareThreads', 'MaxSpareThreads', 'ThreadStackSize')
# conf-examples/sse.conf's advice, for a 2-core machine with 2 children
DOCUMENTED = ['StartServers 2', 'ServerLimit 2', 'ThreadsPerChild 64', 'MaxRequestWorkers 128',
              'MinSpareThreads 1', 'MaxSpareThreads 128', 'MaxConnectionsPerChild 0',
              'ListenCoresBucketsRatio 1']


def demo_mpm():
    lines = [l.strip() for l in DEMO_CONF.read_text().splitlines()]
    picked = [l for l in lines if l.split(' ', 1)[0] in MPM_DIRECTIVES]
    assert len(picked) == len(MPM_DIRECTIVES), picked
    return picked


def test_streams_outlive_idle_maintenance_for_a_minute(httpd_factory):
    servers = [httpd_factory.start('idle-demo', expect_children=2, mpm_conf=demo_mpm(),
                                   global_extra=['SSEMaxStreamsPerClient 1000']),
               httpd_factory.start('idle-documented', expect_children=2, mpm_conf=DOCUMENTED,
                                   global_extra=['SSEMaxStreamsPerClient 1000'])]
    runs = []
    for srv in servers:
        assert not re.search(r'SSE0001[234]', srv.read_log()), srv.read_log()
        ch = uniq('idle')
        streams = [srv.sub('/events/%s' % ch) for _ in range(STREAMS)]
        assert wait_until(lambda: srv.status()['writer_streams'] == STREAMS, 15), srv.status()
        runs.append((srv, ch, streams, set(srv.child_pids())))
    time.sleep(MINUTE)
    for srv, ch, streams, children in runs:
        assert set(srv.child_pids()) == children, srv.name
        assert [s for s in streams if s.ended] == [], srv.name
        r = srv.pub(ch, 'a minute later')
        assert r['subscribers'] == STREAMS
        for s in streams:
            assert [e.data for e in s.wait_for(1)] == ['a minute later']
            s.close()
        assert 'ends (child stopping)' not in srv.read_log(), srv.name
