"""Resuming with Last-Event-ID (header and query forms), multi-channel replay,
replay racing live publishes, and unknown ids."""
import random
import threading
import time

import pytest

from sse_env import ResilientSubscriber, uniq, wait_until


def publish_n(sse, ch, n, prefix='m'):
    return [sse.pub(ch, '%s%d' % (prefix, i + 1))['id'] for i in range(n)]


# Last-Event-ID = id of the 2nd message replays exactly messages 3..5 with SSE-Resume: exact
def test_resume_header_exact(sse):
    ch = uniq('res')
    ids = publish_n(sse, ch, 5)
    s = sse.sub('/events/%s' % ch, last_event_id=ids[1])
    assert s.headers.get('SSE-Resume') == 'exact'
    ev = s.wait_for(3)
    assert [(e.id, e.data, e.event) for e in ev] == [(ids[i], 'm%d' % (i + 1), 'message') for i in (2, 3, 4)]
    # replay then live, with nothing in between
    r = sse.pub(ch, 'live')
    ev = s.wait_for(4)
    assert [e.id for e in ev] == ids[2:] + [r['id']]
    assert ev[3].data == 'live'
    assert not [e for e in ev if e.event == 'sse-reset']


# ?lastEventId= and ?last_event_id= work like the header
@pytest.mark.parametrize('param', ['lastEventId', 'last_event_id'])
def test_resume_query_parameter(sse, param):
    ch = uniq('resq')
    ids = publish_n(sse, ch, 5)
    s = sse.sub('/events/%s?%s=%s' % (ch, param, ids[1]))
    assert s.headers.get('SSE-Resume') == 'exact'
    assert [e.id for e in s.wait_for(3)] == ids[2:]


# the Last-Event-ID header wins over the query parameter
def test_resume_header_wins_over_query(sse):
    ch = uniq('win')
    ids = publish_n(sse, ch, 5)
    s = sse.sub('/events/%s?lastEventId=%s' % (ch, ids[0]), last_event_id=ids[3])
    ev = s.wait_for(1)
    s.wait_until(lambda st: 'keepalive' in st.parser.comments, 5)
    assert [e.id for e in s.events] == [ids[4]]


# resuming from the newest id replays nothing and is exact
def test_resume_from_newest_is_exact_and_empty(sse):
    ch = uniq('newest')
    ids = publish_n(sse, ch, 3)
    s = sse.sub('/events/%s' % ch, last_event_id=ids[-1])
    assert s.headers.get('SSE-Resume') == 'exact'
    s.wait_until(lambda st: 'keepalive' in st.parser.comments, 5)
    assert s.events == []


# without a last event id the stream is live only and has no SSE-Resume header
def test_no_last_event_id_is_live_only(sse):
    ch = uniq('live')
    publish_n(sse, ch, 3)
    s = sse.sub('/events/%s' % ch)
    assert 'SSE-Resume' not in s.headers
    r = sse.pub(ch, 'new')
    ev = s.wait_for(1)
    assert [(e.id, e.data) for e in ev] == [(r['id'], 'new')]


# lastEventId=0 replays everything retained
@pytest.mark.parametrize('how', ['query', 'header'])
def test_resume_from_zero_replays_all(sse, how):
    ch = uniq('zero')
    ids = publish_n(sse, ch, 5)
    if how == 'query':
        s = sse.sub('/events/%s?lastEventId=0' % ch)
    else:
        s = sse.sub('/events/%s' % ch, last_event_id='0')
    assert s.headers.get('SSE-Resume') == 'exact'
    ev = s.wait_for(5)
    assert [(e.id, e.data) for e in ev] == [(ids[i], 'm%d' % (i + 1)) for i in range(5)]


# replay of two channels is merged in id order
def test_multi_channel_replay_merges_in_id_order(sse):
    a, b = uniq('ma'), uniq('mb')
    seq = []
    for i in range(6):
        ch = (a, b)[i % 2 if i < 4 else 0]
        seq.append((sse.pub(ch, '%s-%d' % (ch, i))['id'], '%s-%d' % (ch, i)))
    s = sse.sub('/events?channel=%s,%s&lastEventId=0' % (a, b))
    ev = s.wait_for(6)
    assert [(e.id, e.data) for e in ev] == seq
    s = sse.sub('/events/%s?channel=%s' % (b, a), last_event_id=seq[0][0])
    assert s.headers.get('SSE-Resume') == 'exact'
    ev = s.wait_for(5)
    assert [(e.id, e.data) for e in ev] == seq[1:]


# event type and retry of replayed events are kept
def test_replay_keeps_fields(sse):
    ch = uniq('fields')
    r0 = sse.pub(ch, 'zero')
    r1 = sse.pub(ch, 'a\nb', event='kind', retry='3100')
    s = sse.sub('/events/%s' % ch, last_event_id=r0['id'])
    ev = s.wait_for(1)
    assert [(e.id, e.event, e.data, e.retry) for e in ev] == [(r1['id'], 'kind', 'a\nb', 3100)]


# subscribers that keep disconnecting and resuming while 200 messages are published get each exactly once, in order
def test_replay_while_publishing(sse):
    ch = uniq('race')
    seed = sse.pub(ch, 'seed')['id']
    rng = random.Random(4242)
    subs = [ResilientSubscriber(sse, '/events/%s' % ch, last_event_id=seed, max_per_conn=25,
                                rng=random.Random(rng.random())) for _ in range(3)]
    # one more that never disconnects, as a reference
    subs.append(ResilientSubscriber(sse, '/events/%s' % ch, last_event_id=seed))
    for s in subs:
        s.start()
    assert wait_until(lambda: all(s.connections >= 1 for s in subs), 10)
    published = []
    for i in range(200):
        r = sse.pub(ch, 'n%03d' % i)
        published.append((r['id'], 'n%03d' % i))
        time.sleep(0.005)
    ok = wait_until(lambda: all(len(s.events) >= 200 for s in subs), 30, 0.1)
    for s in subs:
        s.stop()
    for k, s in enumerate(subs):
        got = [(e.id, e.data) for e in s.events]
        assert not s.resets, 'subscriber %d got sse-reset: %r' % (k, [e.data for e in s.resets])
        assert s.failures == [] and s.busy == 0, 'subscriber %d: reconnects refused %r, busy %d' % (
            k, s.failures, s.busy)
        assert got == published, 'subscriber %d: %d events, %d connections, first difference at %s' % (
            k, len(got), s.connections,
            next((i for i, (x, y) in enumerate(zip(got, published)) if x != y), min(len(got), 200)))
        assert all(h == 'exact' for h in s.resume_headers), s.resume_headers
    assert ok
    assert sum(s.voluntary for s in subs[:3]) >= 15, 'subscribers did not reconnect often enough'


UNKNOWN_IDS = ['abc', '99999999999999999999', '-5', '12x', ' 7']


# an unknown id gives SSE-Resume: reset and an sse-reset event (reason unknown), then live events
@pytest.mark.parametrize('bad', UNKNOWN_IDS, ids=['abc', 'huge', 'negative', 'trailing-junk', 'space'])
def test_unknown_last_event_id(sse, bad):
    ch = uniq('unk')
    s = sse.sub('/events/%s' % ch, last_event_id=bad)
    newest = sse.status()['last_id']
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(1)
    assert ev and ev[0].event == 'sse-reset', (ev, s.body[:300])
    j = ev[0].json()
    assert j['reason'] == 'unknown'
    assert j['last_event_id'] == bad.strip() or j['last_event_id'] == bad
    assert ev[0].id == newest
    r = sse.pub(ch, 'live after reset')
    ev = s.wait_for(2)
    assert [(e.id, e.data, e.event) for e in ev[1:]] == [(r['id'], 'live after reset', 'message')]


# an id issued before a channel existed replays the channel's whole history, exactly
def test_resume_from_before_channel_existed(sse):
    before = sse.pub(uniq('older'), 'x')['id']
    ch = uniq('younger')
    ids = [sse.pub(ch, 'y%d' % i)['id'] for i in range(3)]
    s = sse.sub('/events/%s' % ch, last_event_id=before)
    assert s.headers.get('SSE-Resume') == 'exact'
    assert [e.id for e in s.wait_for(3)] == ids


# an unknown id given as ?lastEventId= is reported the same way
def test_unknown_last_event_id_query(sse):
    ch = uniq('unkq')
    s = sse.sub('/events/%s?lastEventId=abc' % ch)
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(1)
    assert ev[0].event == 'sse-reset' and ev[0].json() == {'reason': 'unknown', 'last_event_id': 'abc'}


# an id from the future (above every issued id) is unknown; the retained messages follow the sse-reset
def test_future_last_event_id_is_unknown(sse):
    ch = uniq('future')
    last = sse.pub(ch, 'x')['id']
    future = str(int(last) + 10**9)
    s = sse.sub('/events/%s' % ch, last_event_id=future)
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(2)
    assert ev[0].event == 'sse-reset' and ev[0].json() == {'reason': 'unknown', 'last_event_id': future}
    assert [(e.id, e.data) for e in ev[1:]] == [(last, 'x')]
    assert int(ev[0].id) == int(last) - 1
    r = sse.pub(ch, 'y')
    assert [e.id for e in s.wait_for(3)[1:]] == [last, r['id']]


# a resume on a channel that never had messages misses nothing: exact, live only
def test_resume_on_new_channel_is_exact(sse):
    recent = sse.pub(uniq('elsewhere'), 'x')['id']
    ch = uniq('brandnew')
    s = sse.sub('/events/%s' % ch, last_event_id=recent)
    assert s.headers.get('SSE-Resume') == 'exact'
    r = sse.pub(ch, 'first ever')
    assert [(e.id, e.data) for e in s.wait_for(1)] == [(r['id'], 'first ever')]


# a 64-channel stream replays 64 x 50 retained messages merged in id order
def test_large_multi_channel_replay(sse):
    base = uniq('wide')
    chans = ['%s-%02d' % (base, i) for i in range(64)]
    expected = []
    for rnd in range(2):
        for c in chans:
            items = [{'data': '%s/%d/%d' % (c, rnd, j)} for j in range(25)]
            r = sse.pub(c, json_body=items)
            expected += list(zip(r['ids'], [it['data'] for it in items]))
    expected.sort(key=lambda t: int(t[0]))
    s = sse.sub('/events?channel=%s&lastEventId=0' % ','.join(chans))
    assert s.headers.get('SSE-Resume') == 'exact'
    ev = s.wait_for(len(expected), 30)
    assert [(e.id, e.data) for e in ev] == expected
    r = sse.pub(chans[17], 'live after replay')
    assert s.wait_for(len(expected) + 1)[-1].id == r['id']
