"""Every limit answers clearly and lets go as soon as room is made: a full
store (507 naming SSESharedMemorySize), a full channel table (507 naming
SSEMaxChannels), SSEMaxSubscribers and SSEMaxSubscribersPerChannel (an
EventSource gets 200, retry: and ": busy, retry later"; other clients 503
with Retry-After: 5). After a DELETE, or once a stream has left the
counts, the very next request gets in: no retry loop."""
from sse_env import SseStream, uniq, wait_until

CHUNK = 8 * 1024


def assert_json_error(r, status, names):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers['Content-Type'].startswith('application/json'), r.headers
    j = r.json()
    assert j['status'] == status and names in j['error'], j
    return j


def assert_busy_eventsource(s):
    """200, retry: 5000-10000, ': busy, retry later', no event, the end."""
    assert s.status == 200 and s.headers['Content-Type'].startswith('text/event-stream')
    assert s.wait_ended(10), s.body
    assert s.comments == ['busy, retry later'] and s.events == [], s.body
    assert len(s.retries) == 1 and 5000 <= s.retries[0] <= 10000, s.body


def assert_busy_503(s):
    body = s.read_all()
    assert s.status == 503 and s.headers.get('Retry-After') == '5', (s.status, s.headers)
    assert s.headers['Content-Type'].startswith('text/plain') and body.strip(), body


def test_store_limits_recover(httpd_factory):
    srv = httpd_factory.start('limits-store', global_extra=[
        'SSESharedMemorySize 256K', 'SSEMaxChannels 8', 'SSEHistorySize 10000'])
    base_used = srv.status()['shm']['used']
    # --- shared memory full
    big = uniq('full')
    watcher = srv.sub('/quiet/%s' % big)
    accepted = []
    while True:
        r = srv.publish(big, ('%05d' % len(accepted)).encode() + b'x' * (CHUNK - 5))
        if r.status_code != 201:
            break
        accepted.append(r.json()['id'])
        assert len(accepted) < 100, 'a 256K store took 100 messages of 8K'
    rejected = srv.status()['rejected']
    assert_json_error(r, 507, 'SSESharedMemorySize')
    before = srv.channel(big)
    assert_json_error(srv.publish(big, b'y' * CHUNK), 507, 'SSESharedMemorySize')
    assert srv.channel(big) == before and before['messages'] == len(accepted)
    assert srv.status()['rejected'] == rejected + 1
    full_used = srv.status()['shm']['used']
    d = srv.delete(big)
    assert d.status_code == 200 and d.json()['messages'] == len(accepted), d.text
    assert srv.status()['shm']['used'] == base_used
    after_delete = srv.publish(big, b'z' * CHUNK)
    assert after_delete.status_code == 201, after_delete.text
    # the watcher saw exactly the accepted ones, then the end of its stream
    assert watcher.wait_ended(10)
    assert [e.id for e in watcher.events] == accepted
    assert watcher.comments[-1] == 'channel deleted', watcher.comments
    assert srv.delete(big).status_code == 200
    # --- channel table full
    names = [uniq('t%d' % i) for i in range(8)]
    for n in names:
        srv.pub(n, 'x')
    ninth = uniq('ninth')
    assert_json_error(srv.publish(ninth, b'refused'), 507, 'SSEMaxChannels')
    assert srv.channel(ninth) is None and srv.status()['channels'] == 8
    table_busy = srv.status()['busy']['table']
    assert_busy_eventsource(srv.subscribe('/quiet/%s' % uniq('tenth')))
    assert srv.status()['busy']['table'] == table_busy + 1
    assert srv.delete(names[0]).status_code == 200
    r = srv.publish(ninth, b'now there is room')
    assert r.status_code == 201, r.text
    assert srv.channel(ninth)['last_id'] == r.json()['id']
    print('limits (store): shared memory full after %d messages of 8 KB (%d of %d bytes used): '
          '507 naming SSESharedMemorySize; DELETE gave back %d bytes, next publish 201; '
          'table full at 8 channels: 507 naming SSEMaxChannels, subscriber told busy; '
          'DELETE, next publish 201' % (len(accepted), full_used, srv.status()['shm']['size'],
                                         full_used - base_used))


def test_subscriber_limits_recover(httpd_factory):
    srv = httpd_factory.start('limits-subs', global_extra=[
        'SSEMaxSubscribers 3', 'SSEMaxSubscribersPerChannel 2'])
    busy0 = srv.status()['busy']
    # --- SSEMaxSubscribersPerChannel
    ch = uniq('pc')
    a = [srv.sub('/quiet/%s' % ch) for _ in range(2)]
    assert srv.wait_channel_subscribers(ch, 2)
    assert_busy_eventsource(srv.subscribe('/quiet/%s' % ch))
    assert_busy_503(srv.subscribe('/quiet/%s' % ch, accept=None))
    assert srv.status()['busy']['channel'] == busy0['channel'] + 2
    assert srv.channel(ch)['subscribers'] == 2
    a[0].close()
    assert srv.wait_channel_subscribers(ch, 1)
    third = srv.sub('/quiet/%s' % ch)            # first try, no retry
    r = srv.pub(ch, 'for the two')
    assert r['subscribers'] == 2
    for s in (a[1], third):
        assert [e.id for e in s.wait_for(1)] == [r['id']]
    a[1].close()
    third.close()
    assert srv.wait_total_subscribers(0)
    # --- SSEMaxSubscribers
    chans = [uniq('sl%d' % i) for i in range(4)]
    held = [srv.sub('/quiet/%s' % c) for c in chans[:3]]
    assert srv.wait_total_subscribers(3)
    assert_busy_eventsource(srv.subscribe('/quiet/%s' % chans[3]))
    assert_busy_503(srv.subscribe('/quiet/%s' % chans[3], accept='*/*'))
    st = srv.status()
    assert st['busy']['server'] == busy0['server'] + 2 and st['subscribers'] == 3, st
    assert srv.pub(chans[3], 'the admin API still answers')['subscribers'] == 0
    held[0].close()
    assert srv.wait_total_subscribers(2)
    fourth = srv.sub('/quiet/%s' % chans[3])     # first try, no retry
    r = srv.pub(chans[3], 'admitted')
    assert [(e.id, e.data) for e in fourth.wait_for(1)] == [(r['id'], 'admitted')]
    st = srv.status()
    print('limits (subscribers): per channel 2: third told busy (EventSource 200 + retry) '
          'and 503 + Retry-After: 5 (other client), admitted at once after one left; '
          'server 3: fourth told busy and 503, admitted at once after one left; busy counts %s'
          % st['busy'])
    assert st['busy'] == dict(busy0, channel=busy0['channel'] + 2, server=busy0['server'] + 2)
