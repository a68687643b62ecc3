"""Subscriber limits (SSEMaxSubscribers, SSEMaxSubscribersPerChannel), a full
store (507), a full channel table and recycling of empty channels."""
import pytest

from sse_env import SseStream, uniq, wait_until


@pytest.fixture(scope='module')
def limits(module_factory):
    return module_factory.start('limits', global_extra=['SSEMaxSubscribers 3',
                                                        'SSEMaxSubscribersPerChannel 2'])


def assert_busy_eventsource(s):
    """200 + retry: 5000-10000 + ': busy, retry later', then the stream ends."""
    assert s.status == 200, s.status
    assert s.headers['Content-Type'].startswith('text/event-stream')
    assert s.wait_ended(10), 'busy stream did not end: %r' % s.body
    assert 'busy, retry later' in s.comments, s.body
    assert s.retries and all(5000 <= r <= 10000 for r in s.retries), s.body
    assert s.events == []


def assert_busy_503(s):
    s.read_all()
    assert s.status == 503
    assert s.headers.get('Retry-After') == '5', s.headers


def admitted(srv, path, timeout=10):
    """Subscribes until admitted (not busy) within timeout; returns the stream."""
    def attempt():
        s = SseStream(srv.port, path)
        if s.status != 200:
            s.close()
            return None
        s.wait_until(lambda st: 'ok' in st.parser.comments or 'busy, retry later' in st.parser.comments, 5)
        if 'ok' in s.comments and 'busy, retry later' not in s.comments:
            return s
        s.close()
        return None
    return wait_until(attempt, timeout, 0.3)


def drain(srv):
    assert wait_until(lambda: srv.status()['subscribers'] == 0, 15), srv.status()


# status reports the configured maximum
def test_max_subscribers_in_status(limits):
    assert limits.status()['max_subscribers'] == 3


# a 3rd subscriber of one channel is told to come back later (EventSource) or gets 503 (others)
def test_per_channel_limit(limits):
    drain(limits)
    ch = uniq('pc')
    a1 = limits.sub('/events/%s' % ch)
    a2 = limits.sub('/events/%s' % ch)
    assert limits.wait_channel_subscribers(ch, 2)
    assert_busy_eventsource(limits.subscribe('/events/%s' % ch))
    assert_busy_503(limits.subscribe('/events/%s' % ch, accept=None))
    assert_busy_503(limits.subscribe('/events/%s' % ch, accept='*/*'))
    # the refused ones were never counted
    assert limits.channel(ch)['subscribers'] == 2
    assert limits.pub(ch, 'two only')['subscribers'] == 2
    # the admitted ones still work
    assert [e.data for e in a1.wait_for(1)] == ['two only']
    assert [e.data for e in a2.wait_for(1)] == ['two only']
    # after one leaves, a new one is admitted
    a1.close()
    a3 = admitted(limits, '/events/%s' % ch)
    assert a3, 'no subscriber admitted after one left: %r' % limits.channel(ch)
    r = limits.pub(ch, 'new one')
    assert [e.id for e in a3.wait_for(1)] == [r['id']]


# the per-channel limit counts each channel of a multi-channel stream
def test_per_channel_limit_multi_channel_stream(limits):
    drain(limits)
    ch, other = uniq('pcm'), uniq('pco')
    a1 = limits.sub('/events/%s' % ch)
    a2 = limits.sub('/events?channel=%s,%s' % (other, ch))
    assert_busy_eventsource(limits.subscribe('/events?channel=%s' % ch))


# over SSEMaxSubscribers for the whole server, a subscriber is told to come back later; admitted again after one leaves
def test_server_limit(limits):
    drain(limits)
    streams = [limits.sub('/events/%s' % uniq('sl')) for _ in range(3)]
    assert wait_until(lambda: limits.status()['subscribers'] == 3, 10)
    ch = uniq('fourth')
    assert_busy_eventsource(limits.subscribe('/events/%s' % ch))
    assert_busy_503(limits.subscribe('/events/%s' % ch, accept=None))
    assert limits.status()['subscribers'] == 3
    # the admin API is still served
    assert limits.pub(ch, 'x')['subscribers'] == 0
    streams[0].close()
    s = admitted(limits, '/events/%s' % ch)
    assert s, 'no subscriber admitted after one left: %r' % limits.status()
    r = limits.pub(ch, 'admitted')
    assert [e.id for e in s.wait_for(1)] == [r['id']]


# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small(module_factory):
    return module_factory.start('small', global_extra=['SSESharedMemorySize 256K', 'SSEMaxChannels 8',
                                                       'SSEHistorySize 10000'])


def assert_507(r):
    assert r.status_code == 507, (r.status_code, r.text[:300])
    assert r.headers['Content-Type'].startswith('application/json')
    j = r.json()
    assert j.get('status') == 507 and j.get('error'), j


def delete_all(srv):
    for c in srv.get('/sse-admin/channels').json()['channels']:
        assert srv.delete(c['channel']).status_code == 200
    assert srv.status()['channels'] == 0


# the store reports its configured geometry
def test_small_store_geometry(small):
    st = small.status()
    assert st['shm']['size'] == 256 * 1024
    assert st['max_channels'] == 8


# a full store refuses publishes with 507 JSON, keeps what it has and keeps serving
def test_shared_memory_full(small):
    delete_all(small)
    big = uniq('big')
    chunk = 8 * 1024
    ok_ids = []
    first_507 = None
    for i in range(100):
        r = small.publish(big, ('%05d' % i).encode() + b'x' * (chunk - 5))
        if r.status_code == 201:
            ok_ids.append(r.json()['id'])
            continue
        first_507 = r
        break
    assert first_507 is not None, 'store of 256K accepted 100 messages of 8K'
    assert_507(first_507)
    assert len(ok_ids) >= 5, 'only %d messages of 8K fitted in 256K' % len(ok_ids)
    rejected = small.status()['rejected']
    for _ in range(3):
        assert_507(small.publish(big, b'y' * chunk))
    assert small.status()['rejected'] == rejected + 3
    info = small.channel(big)
    assert info['messages'] == len(ok_ids) and info['published'] == len(ok_ids)
    assert info['last_id'] == ok_ids[-1]
    # earlier messages are still replayable
    s = small.sub('/events/%s?lastEventId=0' % big)
    ev = s.wait_for(len(ok_ids), 15)
    assert [e.id for e in ev] == ok_ids
    assert all(e.data.startswith('%05d' % i) and len(e.data) == chunk for i, e in enumerate(ev))
    # status and other channels are still served
    st = small.status()
    assert st['shm']['used'] > 0
    other = uniq('other')
    o = small.sub('/events/%s' % other)
    r = small.publish(other, b'small')
    assert r.status_code in (201, 507), r.text
    # dropping the big channel frees the memory: 8K messages fit again
    d = small.delete(big)
    assert d.status_code == 200 and d.json()['messages'] == len(ok_ids)
    assert s.wait_ended(10)
    assert small.status()['shm']['used'] < st['shm']['used']
    r = small.pub(other, b'z' * chunk)
    assert o.wait_until(lambda st_: any(e.id == r['id'] for e in st_.parser.events), 10)


# a 9th channel is refused with 507 while 8 channels hold messages; after a DELETE it works
def test_channel_table_full(small):
    delete_all(small)
    names = [uniq('t%d' % i) for i in range(8)]
    for n in names:
        small.pub(n, 'x')
    assert small.status()['channels'] == 8
    ninth = uniq('ninth')
    rejected = small.status()['rejected']
    assert_507(small.publish(ninth, b'refused'))
    assert small.status()['rejected'] == rejected + 1
    assert small.channel(ninth) is None
    # a subscriber of a new channel is told to come back later
    assert_busy_eventsource(small.subscribe('/events/%s' % uniq('tenth')))
    # existing channels still work
    s = small.sub('/events/%s' % names[0])
    r = small.pub(names[0], 'still fine')
    assert [e.id for e in s.wait_for(1)] == [r['id']]
    # the C API reports APR_ENOSPC (28) for the full table
    j = small.get('/test-publish', params={'channel': ninth, 'data': 'c api'}).json()
    assert j['rv'] == 28, j
    assert small.delete(names[7]).status_code == 200
    r = small.pub(ninth, 'now accepted')
    assert small.channel(ninth)['last_id'] == r['id']


# an empty channel without subscribers is recycled when the table is full
def test_empty_channel_recycled(small):
    delete_all(small)
    names = [uniq('r%d' % i) for i in range(7)]
    for n in names[:5]:
        small.pub(n, 'x')
    # a subscriber may create a channel while a quarter of the table is free
    empty = uniq('empty')
    s = small.sub('/events/%s' % empty)
    for n in names[5:]:
        small.pub(n, 'x')
    assert small.status()['channels'] == 8
    s.close()
    assert small.wait_channel_subscribers(empty, 0, 10)
    r = small.publish(uniq('new'), b'recycles the empty one')
    assert r.status_code == 201, r.text
    assert small.channel(empty) is None
    for n in names:
        assert small.channel(n)['messages'] == 1
