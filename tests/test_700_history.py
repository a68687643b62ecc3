"""History limits on a server with SSEHistorySize 10 and SSEHistoryMaxAge 2."""
import re
import time

import pytest

from sse_env import OPENING, SseStream, uniq, wait_until


@pytest.fixture(scope='module')
def hist(module_factory):
    return module_factory.start('history', global_extra=['SSEHistorySize 10', 'SSEHistoryMaxAge 2',
                                                         'SSERetry 1234'])


# SSERetry at server level starts every stream with retry:, a location's own value wins
def test_server_level_retry(hist):
    s = hist.sub('/events/%s' % uniq('r'))
    assert re.match(b'retry: 1234\n\n' + OPENING.pattern, s.wait_bytes(25)), s.body
    s = hist.sub('/events-retry/%s' % uniq('r'))
    assert re.match(b'retry: 2500\n\n' + OPENING.pattern, s.wait_bytes(25)), s.body


def publish_25(srv):
    """Publishes 25 messages and checks the size limit right away; retried on a
    new channel if the machine was so slow that the age limit (2 s) could have
    interfered. Returns (channel, ids, info)."""
    for attempt in range(3):
        ch = uniq('hist')
        t0 = time.monotonic()
        ids = [srv.pub(ch, 'h%02d' % (i + 1))['id'] for i in range(25)]
        info = srv.channel(ch)
        if time.monotonic() - t0 < 1.5:
            return ch, ids, info
    pytest.skip('machine too slow to publish 25 messages within the 2 s age limit')


# after 25 publishes only the newest 10 are retained; first_id is the 16th id
def test_history_size_limit(hist):
    ch, ids, info = publish_25(hist)
    assert info['messages'] == 10, info
    assert info['published'] == 25
    assert (info['first_id'], info['last_id']) == (ids[15], ids[24])


# resuming from the 2nd id gives sse-reset 'expired' (id one below the 16th), then exactly the 10 retained
def test_resume_past_history_is_expired(hist):
    for attempt in range(3):
        ch, ids, info = publish_25(hist)
        t0 = time.monotonic()
        s = hist.sub('/events/%s' % ch, last_event_id=ids[1])
        ev = s.wait_for(11)
        if time.monotonic() - t0 < 1.0:
            break
    assert s.headers.get('SSE-Resume') == 'reset'
    assert ev[0].event == 'sse-reset', ev[:2]
    assert ev[0].json() == {'reason': 'expired', 'last_event_id': ids[1]}
    assert int(ev[0].id) == int(ids[15]) - 1
    assert [(e.id, e.data) for e in ev[1:]] == [(ids[i], 'h%02d' % (i + 1)) for i in range(15, 25)]


# resuming just below the retained range misses nothing: exact, no sse-reset
def test_resume_at_history_edge_is_exact(hist):
    ch, ids, info = publish_25(hist)
    s = hist.sub('/events/%s' % ch, last_event_id=ids[14])
    s2 = hist.sub('/events/%s' % ch, last_event_id=ids[13])
    assert s.headers.get('SSE-Resume') == 'exact'
    ev = s.wait_for(10)
    assert [e.id for e in ev] == ids[15:]
    assert s2.headers.get('SSE-Resume') == 'reset'
    ev2 = s2.wait_for(11)
    assert ev2[0].event == 'sse-reset' and ev2[0].json()['reason'] == 'expired'
    assert [e.id for e in ev2[1:]] == ids[15:]


# after ~3 s without publishes the age limit empties the history; resuming gives sse-reset expired and nothing else
def test_history_max_age(hist):
    ch = uniq('age')
    ids = [hist.pub(ch, 'a%d' % i)['id'] for i in range(5)]
    time.sleep(3)
    assert wait_until(lambda: hist.channel(ch)['messages'] == 0, 10), hist.channel(ch)
    info = hist.channel(ch)
    assert (info['messages'], info['first_id'], info['last_id'], info['published']) == (0, None, None, 5)
    newest = hist.status()['last_id']
    s = hist.sub('/events/%s' % ch, last_event_id=ids[1])
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(1)
    assert ev[0].event == 'sse-reset'
    assert ev[0].json() == {'reason': 'expired', 'last_event_id': ids[1]}
    assert ev[0].id == newest
    # nothing else arrives until a new publish
    s.wait_until(lambda st: 'keepalive' in st.parser.comments, 5)
    assert len(s.events) == 1, s.events
    r = hist.pub(ch, 'fresh')
    ev = s.wait_for(2)
    assert [(e.id, e.data) for e in ev[1:]] == [(r['id'], 'fresh')]
    assert int(r['id']) > int(ids[-1])


# resuming from the last id of an aged-out channel missed nothing: exact
def test_resume_from_last_of_aged_channel_is_exact(hist):
    ch = uniq('age2')
    ids = [hist.pub(ch, 'b%d' % i)['id'] for i in range(3)]
    time.sleep(2.5)
    assert wait_until(lambda: hist.channel(ch)['messages'] == 0, 10)
    s = hist.sub('/events/%s' % ch, last_event_id=ids[-1])
    assert s.headers.get('SSE-Resume') == 'exact'
    r = hist.pub(ch, 'next')
    ev = s.wait_for(1)
    assert [(e.id, e.data, e.event) for e in ev] == [(r['id'], 'next', 'message')]


# resuming two channels, one of which lost history, gives one sse-reset and then both channels' retained messages merged
def test_multi_channel_partial_expiry(hist):
    for attempt in range(3):
        a, b = uniq('pa'), uniq('pb')
        t0 = time.monotonic()
        first_b = hist.pub(b, 'b-first')['id']
        seq = []
        for i in range(15):
            seq.append((a, hist.pub(a, 'a%02d' % i)['id'], 'a%02d' % i))
            if i % 5 == 0:
                seq.append((b, hist.pub(b, 'b%02d' % i)['id'], 'b%02d' % i))
        s = hist.sub('/events?channel=%s,%s' % (a, b), last_event_id=first_b)
        ev = s.wait_for(14)
        if time.monotonic() - t0 < 1.5:
            break
    # a kept its last 10 (a05..a14); b kept everything
    retained = [(i, d) for c, i, d in seq if c == b or d >= 'a05']
    assert s.headers.get('SSE-Resume') == 'reset'
    assert ev[0].event == 'sse-reset' and ev[0].json() == {'reason': 'expired', 'last_event_id': first_b}
    assert [(e.id, e.data) for e in ev[1:]] == retained
    assert int(ev[0].id) == int(retained[0][0]) - 1


def check_overflow_events(evs, published):
    """Resets say 'overflow' and carry the id before the next message;
    between them the messages are contiguous, once each, in order."""
    resets = [k for k, e in enumerate(evs) if e.event == 'sse-reset']
    assert resets, 'no sse-reset for a subscriber that fell 100+ messages behind'
    data_ids = [e.id for e in evs if e.event != 'sse-reset']
    assert data_ids == sorted(set(data_ids), key=int), 'duplicates or disorder'
    assert set(data_ids) <= set(published) and data_ids[-1] == published[-1]
    assert len(data_ids) < len(published)
    for k in resets:
        assert evs[k].json()['reason'] == 'overflow', evs[k].data
        if k + 1 < len(evs):
            assert int(evs[k].id) == int(evs[k + 1].id) - 1
    runs, cur = [], []
    for e in evs:
        if e.event == 'sse-reset':
            runs.append(cur)
            cur = []
        else:
            cur.append(published.index(e.id))
    runs.append(cur)
    for run in runs:
        assert run == list(range(run[0], run[0] + len(run))) if run else True, run


def fill_behind(srv, ch, slow_path):
    fast = srv.sub('/events/%s' % ch)
    # a subscriber with a tiny receive window that does not read for a while
    slow = SseStream(srv.port, slow_path, rcvbuf=4096, reading=False)
    assert slow.status == 200
    assert srv.wait_channel_subscribers(ch, 2)
    payload = 'p' * 60000
    published = [srv.pub(ch, '%03d %s' % (i, payload))['id'] for i in range(120)]
    # the fast subscriber got everything
    assert [e.id for e in fast.wait_for(120, 30)] == published
    return slow, published


# a stream on its own thread that falls so far behind that history rolls over
# gets sse-reset 'overflow' in the stream instead of a gap
def test_slow_thread_subscriber_gets_overflow(httpd_factory):
    srv = httpd_factory.start('overflow', global_extra=['SSEHistorySize 10'])
    ch = uniq('slow')
    slow, published = fill_behind(srv, ch, '/threaded/%s' % ch)
    slow.start_reading()
    assert slow.wait_until(lambda st: any(e.id == published[-1] for e in st.parser.events), 30), \
        'the slow subscriber never got the last message'
    check_overflow_events(slow.events, published)


# a handed-off stream that owes more than SSEMaxPendingBytes is ended; it resumes
# with its Last-Event-ID and, history having rolled over, gets sse-reset 'overflow'
def test_slow_handed_off_subscriber_ends_and_resumes(httpd_factory):
    srv = httpd_factory.start('overflow2', global_extra=['SSEHistorySize 10'])
    ch = uniq('slow')
    pos = srv.log_size()
    slow, published = fill_behind(srv, ch, '/events/%s' % ch)
    assert wait_until(lambda: 'more than SSEMaxPendingBytes owed' in srv.read_log(pos), 10)
    slow.start_reading()
    assert slow.wait_ended(30)
    got = slow.events
    assert [e.id for e in got] == published[:len(got)], 'a prefix of the messages, in order'
    last = slow.parser.last_id
    again = srv.sub('/events/%s' % ch, last_event_id=last)
    assert again.headers['SSE-Resume'] == 'reset'
    evs = again.wait_for(11)
    assert evs[0].event == 'sse-reset' and evs[0].json()['reason'] == 'expired'
    assert [e.id for e in evs[1:]] == published[-10:]
