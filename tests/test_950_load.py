"""Regression/load guard (not a timing test): 200 subscribers over several
channels, every one gets every message of its channels, in order, once."""
import time

from sse_env import SseStream, uniq, wait_until

# room to spare: a child keeps 10% of its threads free of streams, and
# connections do not spread evenly over children
LOAD_MPM = ['StartServers 4', 'ServerLimit 4', 'ThreadsPerChild 100', 'MaxRequestWorkers 400',
            'MinSpareThreads 1', 'MaxSpareThreads 400', 'ThreadStackSize 262144',
            'ListenCoresBucketsRatio 1']


def subscribe(srv, path):
    """Subscribes as EventSource does: a "busy, retry later" answer (a child
    keeps some threads free of streams) is followed by a new connection,
    which may land on another child."""
    for _ in range(50):
        s = SseStream(srv.port, path, timeout=20)
        if s.status == 200 and s.wait_open():
            return s
        body = s.read_all(10)
        assert s.status == 200 and b'busy, retry later' in body, (s.status, body)
        time.sleep(0.05)
    raise AssertionError('%s: still busy after 50 tries' % path)


# 200 subscribers (some on two channels), 50 messages per channel: everybody gets everything exactly once, in order
def test_200_subscribers_50_messages(httpd_factory):
    # every test client is 127.0.0.1
    srv = httpd_factory.start('load', mpm_conf=LOAD_MPM, expect_children=4,
                              global_extra=['SSEMaxStreamsPerClient 1000'])
    assert srv.status()['max_subscribers'] >= 200
    chans = [uniq('load%d' % i) for i in range(4)]
    subs = []      # (stream, set of channels)
    for i in range(200):
        if i % 5 == 4:
            pair = (chans[i % 4], chans[(i + 1) % 4])
            subs.append((subscribe(srv, '/events?channel=%s,%s' % pair), set(pair)))
        else:
            subs.append((subscribe(srv, '/events/%s' % chans[i % 4]), {chans[i % 4]}))
    assert wait_until(lambda: srv.status()['subscribers'] == 200, 20), srv.status()
    expected_count = {c: sum(1 for _, cs in subs if c in cs) for c in chans}
    published = []   # (channel, id, data) in publish order
    for m in range(50):
        for c in chans:
            data = '%s #%02d' % (c, m)
            r = srv.pub(c, data)
            assert r['subscribers'] == expected_count[c], (c, r)
            published.append((c, r['id'], data))
    ids = [int(i) for _, i, _ in published]
    assert all(b > a for a, b in zip(ids, ids[1:]))
    deadline = time.monotonic() + 60
    for k, (s, cs) in enumerate(subs):
        want = [(i, d) for c, i, d in published if c in cs]
        s.wait_for(len(want), max(1, deadline - time.monotonic()))
        got = [(e.id, e.data) for e in s.events]
        assert got == want, 'subscriber %d on %s: %d of %d events, first difference at %s' % (
            k, sorted(cs), len(got), len(want),
            next((j for j, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want))))
    st = srv.status()
    assert st['delivered'] >= sum(len([1 for c, _, _ in published if c in cs]) for _, cs in subs)
    for s, _ in subs:
        s.close()
    assert wait_until(lambda: srv.status()['subscribers'] == 0, 20), srv.status()
