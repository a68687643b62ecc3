"""Admin reads (channel info, channel list, server status), DELETE, and
subscriber counts following client disconnects."""
import resource
import re

import pytest

from sse_env import uniq, wait_until

DIGITS = re.compile(r'[0-9]+')


def check_channel_shape(info):
    assert set(info) == {'channel', 'subscribers', 'messages', 'first_id', 'last_id',
                         'published', 'bytes'}, info
    for k in ('subscribers', 'messages', 'published', 'bytes'):
        assert isinstance(info[k], int) and not isinstance(info[k], bool) and info[k] >= 0, (k, info)
    for k in ('first_id', 'last_id'):
        assert info[k] is None or (isinstance(info[k], str) and DIGITS.fullmatch(info[k])), (k, info)


# channel GET shows subscribers, messages, first_id, last_id, published and bytes
def test_channel_info(sse):
    ch = uniq('info')
    s1 = sse.sub('/events/%s' % ch)
    s2 = sse.sub('/events?channel=%s,%s' % (ch, uniq('other')))
    ids = [sse.pub(ch, 'message %d' % i)['id'] for i in range(3)]
    r = sse.get(sse.channel_path(ch))
    assert r.status_code == 200
    assert r.headers['Content-Type'].startswith('application/json')
    info = r.json()
    check_channel_shape(info)
    assert info['channel'] == ch
    assert info['subscribers'] == 2
    assert info['messages'] == 3 and info['published'] == 3
    assert (info['first_id'], info['last_id']) == (ids[0], ids[2])
    assert info['bytes'] > 0
    assert len(s1.wait_for(3)) == 3 and len(s2.wait_for(3)) == 3


# a channel created by a subscribe has no messages and null ids
def test_channel_info_empty_channel(sse):
    ch = uniq('emptyinfo')
    sse.sub('/events/%s' % ch)
    info = sse.channel(ch)
    check_channel_shape(info)
    assert (info['messages'], info['published'], info['first_id'], info['last_id']) == (0, 0, None, None)
    assert info['subscribers'] == 1


# the bytes of a channel grow with its history
def test_channel_bytes_grow(sse):
    ch = uniq('bytes')
    sse.pub(ch, 'x' * 100)
    b1 = sse.channel(ch)['bytes']
    for _ in range(5):
        sse.pub(ch, 'x' * 1000)
    assert sse.channel(ch)['bytes'] > b1


# /sse-admin/channels lists every channel with the same fields
def test_channels_list(sse):
    names = [uniq('list') for _ in range(3)]
    for n in names:
        sse.pub(n, 'x')
    r = sse.get('/sse-admin/channels')
    assert r.status_code == 200 and r.headers['Content-Type'].startswith('application/json')
    j = r.json()
    assert set(j) == {'channels'}
    by_name = {c['channel']: c for c in j['channels']}
    for c in j['channels']:
        check_channel_shape(c)
    for n in names:
        assert n in by_name, n
        assert by_name[n] == sse.channel(n)
    assert sse.status()['channels'] == len(j['channels'])


# /sse-admin/status has the documented fields and consistent numbers
def test_status_shape(sse):
    st = sse.status()
    for k in ('channels', 'max_channels', 'subscribers', 'max_subscribers', 'children', 'shm',
              'messages', 'published', 'delivered', 'rejected', 'last_id'):
        assert k in st, (k, st)
    for k in ('channels', 'max_channels', 'subscribers', 'writer_streams', 'max_subscribers', 'messages',
              'published', 'delivered', 'rejected'):
        assert isinstance(st[k], int) and st[k] >= 0, (k, st)
    assert st['max_channels'] == 1024
    # 2 children, each owning at most its open-files limit less a tenth
    # (at least 64) of handed-off streams
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert st['max_subscribers'] == 2 * (files - max(64, files // 10))
    assert set(st['shm']) >= {'size', 'used', 'free'}
    assert st['shm']['size'] == 32 * 1024 * 1024
    assert 0 < st['shm']['used'] and st['shm']['used'] + st['shm']['free'] <= st['shm']['size']
    assert isinstance(st['children'], list) and st['children']
    for c in st['children']:
        assert set(c) == {'pid', 'subscribers', 'writer_streams', 'thread_streams',
                          'thread_wakeups'}, c
        assert 0 <= c['writer_streams'] <= c['subscribers'], c
    assert sum(c['subscribers'] for c in st['children']) == st['subscribers']
    assert {c['pid'] for c in st['children']} == set(sse.child_pids())
    assert st['last_id'] is None or DIGITS.fullmatch(st['last_id'])


# status counters follow publishes and deliveries
def test_status_counters(sse):
    ch = uniq('counters')
    s1 = sse.sub('/events/%s' % ch)
    s2 = sse.sub('/events/%s' % ch)
    before = sse.status()
    r = sse.pub(ch, 'counted')
    assert len(s1.wait_for(1)) == 1 and len(s2.wait_for(1)) == 1
    after = sse.status()
    assert after['published'] == before['published'] + 1
    assert after['messages'] == before['messages'] + 1
    assert after['last_id'] == r['id']
    assert after['delivered'] == before['delivered'] + 2
    assert after['rejected'] == before['rejected']
    assert after['shm']['used'] >= before['shm']['used']


# DELETE drops the history, answers 200 JSON and the channel is gone
def test_delete_channel(sse):
    ch = uniq('del')
    for i in range(4):
        sse.pub(ch, str(i))
    r = sse.delete(ch)
    assert r.status_code == 200 and r.headers['Content-Type'].startswith('application/json')
    assert r.json() == {'channel': ch, 'deleted': True, 'messages': 4, 'subscribers': 0}
    assert sse.channel(ch) is None
    assert sse.delete(ch).status_code == 404
    assert ch not in {c['channel'] for c in sse.get('/sse-admin/channels').json()['channels']}


# DELETE ends connected subscribers' streams with ': channel deleted'
def test_delete_ends_subscriber_streams(sse):
    ch = uniq('delsub')
    other = uniq('keep')
    streams = [sse.sub('/events/%s' % ch) for _ in range(3)]
    multi = sse.sub('/events?channel=%s,%s' % (ch, other))
    sse.pub(ch, 'before delete')
    for s in streams + [multi]:
        assert len(s.wait_for(1)) == 1
    r = sse.delete(ch)
    assert r.status_code == 200
    j = r.json()
    assert j['deleted'] is True and j['messages'] == 1 and j['subscribers'] == 4
    for s in streams + [multi]:
        assert s.wait_ended(10), 'stream not ended after DELETE: %r' % s
        assert 'channel deleted' in s.comments, s.body[-200:]
        assert s.clean_end
    assert sse.channel(ch) is None or sse.channel(ch)['subscribers'] == 0


# after a DELETE, resubscribing recreates the channel and resuming reports the dropped history
def test_resume_after_delete_reports_expired(sse):
    ch = uniq('delres')
    ids = [sse.pub(ch, str(i))['id'] for i in range(3)]
    assert sse.delete(ch).status_code == 200
    s = sse.sub('/events/%s' % ch, last_event_id=ids[0])
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(1)
    assert ev and ev[0].event == 'sse-reset', ev
    assert ev[0].json()['reason'] == 'expired'
    r = sse.pub(ch, 'after recreate')
    ev = s.wait_for(2)
    assert [(e.id, e.data) for e in ev[1:]] == [(r['id'], 'after recreate')]


# a later DELETE of the same channel counts, not only the first: resuming from an id
# before the second DELETE reports what it dropped. A server of its own, so that its
# ring of deleted channels (sse_store.c, 256 entries) starts empty and cannot wrap.
def test_resume_after_second_delete_reports_expired(httpd_factory):
    srv = httpd_factory.start('delete-twice')
    ch = uniq('deltwice')
    a = srv.pub(ch, 'a')['id']
    assert srv.delete(ch).status_code == 200
    srv.pub(ch, 'b')                            # dropped by the second DELETE
    assert srv.delete(ch).status_code == 200
    c = srv.pub(ch, 'c')['id']
    s = srv.sub('/events/%s' % ch, last_event_id=a)
    s.wait_until(lambda st: any(e.id == c for e in st.parser.events))
    ev = s.events
    assert s.headers.get('SSE-Resume') == 'reset', (s.headers, ev)
    assert [(e.id, e.event) for e in ev] == [(str(int(c) - 1), 'sse-reset'), (c, 'message')]
    assert ev[0].json() == {'reason': 'expired', 'last_event_id': a}


# a subscriber that closes its socket leaves the channel and status counts within seconds
def test_client_disconnect_drops_counts(sse):
    ch = uniq('gone')
    before = sse.status()['subscribers']
    s = sse.sub('/events/%s' % ch)
    keep = sse.sub('/events/%s' % ch)
    assert sse.wait_channel_subscribers(ch, 2)
    assert wait_until(lambda: sse.status()['subscribers'] >= before + 2, 5)
    s.close()
    assert sse.wait_channel_subscribers(ch, 1, 10), sse.channel(ch)
    assert sse.pub(ch, 'still here')['subscribers'] == 1
    assert [e.data for e in keep.wait_for(1)] == ['still here']
    keep.close()
    assert sse.wait_channel_subscribers(ch, 0, 10), sse.channel(ch)


# a client that disconnects in the middle of a busy stream is noticed as well
def test_client_disconnect_while_publishing(sse):
    ch = uniq('gone2')
    s = sse.sub('/events/%s' % ch)
    for i in range(5):
        sse.pub(ch, 'm%d' % i)
    assert len(s.wait_for(5)) == 5
    s.close()
    for i in range(3):
        sse.pub(ch, 'after close %d' % i)
    assert sse.wait_channel_subscribers(ch, 0, 10), sse.channel(ch)
