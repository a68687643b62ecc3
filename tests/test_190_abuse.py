"""Abuse bounds: anonymous subscribers naming made-up channels cannot lock
publishers out of the channel table, and one client address cannot take
every stream slot. Refusals use the EventSource-friendly answer and are
counted in the status."""
import pytest

from sse_env import SseStream, uniq, wait_until

LIMITS = ['SSEMaxChannels 16', 'SSEMaxStreamsPerClient 3', 'SSEMaxSubscribers 40']


@pytest.fixture
def bounded(httpd_factory):
    return httpd_factory.start('abuse', global_extra=LIMITS, expect_children=2)


def busy(s):
    return s.status == 200 and s.wait_comment('busy, retry later', 5)


# subscribers may create channels in three quarters of the table; the rest stays for publishers
def test_subscribers_cannot_fill_the_table(bounded):
    names = [uniq('anon%d' % i) for i in range(13)]
    first = bounded.sub('/events?channel=%s' % ','.join(names[:12]))
    assert bounded.status()['channels'] == 12
    # a 13th made-up channel: come back later (EventSource) or 503 (others)
    s = SseStream(bounded.port, '/events/%s' % names[12])
    assert busy(s)
    s.close()
    plain = SseStream(bounded.port, '/events/%s' % names[12], accept=None)
    assert plain.status == 503 and plain.headers['Retry-After'] == '5'
    plain.read_all()
    st = bounded.status()
    assert st['busy']['table'] == 2 and st['channels'] == 12
    # publishers still create channels, up to the whole table
    for i in range(4):
        r = bounded.publish(uniq('pub%d' % i), 'news')
        assert r.status_code == 201, r.text
    r = bounded.publish(uniq('pub-full'), 'news')
    assert r.status_code == 507
    # existing channels can still be subscribed to
    again = bounded.sub('/events/%s' % names[0])
    bounded.pub(names[0], 'still works')
    assert [e.data for e in again.wait_for(1)] == ['still works']
    again.close()
    first.close()
    assert bounded.wait_total_subscribers(0)
    # once the subscriber left, its never-published channels are recycled first
    r = bounded.publish(uniq('pub-after'), 'news')
    assert r.status_code == 201, r.text
    assert bounded.status()['channels'] == 16


# one address may hold SSEMaxStreamsPerClient streams; others are not affected
def test_per_client_stream_limit(bounded):
    ch = uniq('client')
    mine = [bounded.sub('/events/%s' % ch) for _ in range(3)]
    s = SseStream(bounded.port, '/events/%s' % ch)
    assert busy(s)
    s.close()
    plain = SseStream(bounded.port, '/events/%s' % ch, accept=None)
    assert plain.status == 503
    plain.read_all()
    other = SseStream(bounded.port, '/events/%s' % ch, source='127.0.0.2')
    assert other.status == 200 and other.wait_open()
    st = bounded.status()
    assert st['busy']['client'] == 2 and st['max_streams_per_client'] == 3
    assert st['subscribers'] == 4
    bounded.pub(ch, 'all four')
    for s in mine + [other]:
        assert [e.data for e in s.wait_for(1)] == ['all four']
    # a stream that ends gives its slot back
    mine.pop().close()
    assert bounded.wait_total_subscribers(3)
    mine.append(bounded.sub('/events/%s' % ch))
    for s in mine + [other]:
        s.close()


# a second stream that cannot get all its channels takes none of them (no double counts)
def test_refused_stream_leaves_no_counts(bounded):
    names = [uniq('full%d' % i) for i in range(11)]
    holder = bounded.sub('/events?channel=%s' % ','.join(names))
    p, q = uniq('p'), uniq('q')
    s = SseStream(bounded.port, '/events?channel=%s,%s' % (p, q))
    assert busy(s)
    s.close()
    info = bounded.channel(p)
    assert info is not None and info['subscribers'] == 0
    assert bounded.channel(q) is None
    bounded.pub(names[0], 'once')
    assert [e.data for e in holder.wait_for(1)] == ['once']
    assert bounded.channel(names[0])['subscribers'] == 1
    holder.close()
