"""Delivery across child processes of the main server (mpm_event, 2 children,
SO_REUSEPORT listener buckets)."""
from collections import Counter

from sse_env import uniq, wait_until


def per_pid(status):
    return {c['pid']: c['subscribers'] for c in status['children']}


def open_across_children(srv, ch, minimum=12, maximum=40):
    """Opens subscribers on ch until status shows new subscribers in two
    different child pids; returns (streams, per-pid deltas)."""
    # let streams of earlier tests drain so that deltas are attributable
    wait_until(lambda: srv.status()['subscribers'] == 0, 16, 0.2)
    base = per_pid(srv.status())
    streams = []
    deltas = {}
    while len(streams) < maximum:
        streams.append(srv.sub('/events/%s' % ch))
        if len(streams) < minimum:
            continue
        assert srv.wait_channel_subscribers(ch, len(streams))
        now = per_pid(srv.status())
        deltas = {pid: n - base.get(pid, 0) for pid, n in now.items()}
        if len([d for d in deltas.values() if d > 0]) >= 2:
            break
    return streams, deltas


# subscribers spread over two children all receive one publish; counts agree
def test_publish_reaches_all_children(sse):
    ch = uniq('xproc')
    streams, deltas = open_across_children(sse, ch)
    assert len([d for d in deltas.values() if d > 0]) >= 2, \
        'subscribers never spread over two children: %r' % sse.status()['children']
    n = len(streams)
    st = sse.status()
    info = sse.channel(ch)
    assert info['subscribers'] == n
    assert sum(c['subscribers'] for c in st['children']) == st['subscribers'] >= n
    r = sse.pub(ch, 'to every child')
    assert r['subscribers'] == n == info['subscribers']
    for s in streams:
        ev = s.wait_for(1)
        assert [(e.id, e.data) for e in ev] == [(r['id'], 'to every child')], s
    # a burst also arrives everywhere, in order
    ids = [sse.pub(ch, 'burst %d' % i)['id'] for i in range(20)]
    for s in streams:
        ev = s.wait_for(21)
        assert [e.id for e in ev[1:]] == ids
        assert [e.data for e in ev[1:]] == ['burst %d' % i for i in range(20)]


# per-child counts in status add up to the subscriber total while streams come and go
def test_children_counts_follow_streams(sse):
    ch = uniq('kids')
    streams, deltas = open_across_children(sse, ch, minimum=6)
    total = sse.channel(ch)['subscribers']
    assert total == len(streams)
    for s in streams[:3]:
        s.close()
    assert sse.wait_channel_subscribers(ch, total - 3, 10), sse.channel(ch)
    st = sse.status()
    assert sum(Counter(per_pid(st)).values()) == st['subscribers']
