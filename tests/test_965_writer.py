"""The per-child writer: streams on plain HTTP/1.x sockets are written by the
child's dispatcher thread while their own threads sleep. These tests prove
that such streams are really served by it (status `writer_streams`) and that
everything it hands back (slow sockets, hangups, deletions, filters that must
see every byte) still reaches the client exactly once and in order."""
import socket
import time

import pytest

from sse_env import build_variant, uniq, wait_until, MODULES

LOCATIONS = """
<Location /events>
    SetHandler sse-stream
    SSEKeepAlive 1
</Location>
<Location /quiet>
    SetHandler sse-stream
    SSEKeepAlive 0
</Location>
<Location /limited>
    SetHandler sse-stream
    SetOutputFilter RATE_LIMIT
    SetEnv rate-limit 4096
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1 ::1
</Location>
"""


@pytest.fixture(scope='module')
def srv(module_factory):
    return module_factory.start(
        'writer', expect_children=2, locations=LOCATIONS,
        global_extra=['SSEHistorySize 1000',
                      'LoadModule ratelimit_module %s/mod_ratelimit.so' % MODULES,
                      'LoadModule env_module %s/mod_env.so' % MODULES])


def writer_streams(srv):
    return srv.status()['writer_streams']


def wait_parked(srv, n, timeout=10):
    assert wait_until(lambda: writer_streams(srv) >= n, timeout, 0.05), srv.status()


def ids_of(stream):
    return [int(e.id) for e in stream.data_events()]


def assert_exact(stream, datas):
    got = [e.data for e in stream.data_events()]
    assert got == datas
    ids = ids_of(stream)
    assert ids == sorted(set(ids)), 'duplicate or reordered ids'


# plain HTTP/1.1 streams are served by the writer, one chunk per event or batch
def test_plain_streams_are_served_by_the_writer(srv):
    ch = uniq('w')
    streams = [srv.sub('/quiet/%s' % ch) for _ in range(6)]
    wait_parked(srv, 6)
    st = srv.status()
    assert st['writer_streams'] == st['subscribers'] == 6
    assert all(c['writer_streams'] == c['subscribers'] for c in st['children'])
    datas = ['event %d' % i for i in range(40)]
    for d in datas:
        srv.pub(ch, d.encode())
    for s in streams:
        s.wait_for(40)
        assert_exact(s, datas)
        # every chunk holds whole events: the writer never splits one
        for chunk in s.chunks[1:]:
            assert chunk.startswith(b'id: ') and chunk.endswith(b'\n\n')
    assert writer_streams(srv) == 6


# HTTP/1.0 has no chunked encoding: the writer sends raw bytes
def test_http10_stream_is_written_raw(srv):
    ch = uniq('w10')
    s = srv.sub('/quiet/%s' % ch, http10=True)
    wait_parked(srv, 1)
    for i in range(5):
        srv.pub(ch, b'raw %d' % i)
    s.wait_for(5)
    assert_exact(s, ['raw %d' % i for i in range(5)])
    assert s.mode == 'eof'
    assert b'\r\n' not in bytes(s.raw)


# a reader that stops reading owes the writer at most SSEMaxPendingBytes: then
# its stream is ended, the fast subscriber is never held back, and the slow one
# resumes with its Last-Event-ID with nothing lost
def test_slow_reader_is_ended_at_its_bound_and_resumes(srv):
    ch = uniq('wslow')
    pos = srv.log_size()
    slow = srv.sub('/quiet/%s' % ch, rcvbuf=4096, reading=False)
    fast = srv.sub('/quiet/%s' % ch)
    wait_parked(srv, 2)
    # more than the kernel buffers of both ends hold (tcp_wmem max is 4 MB)
    payload = 'x' * 16000
    datas = ['%d %s' % (i, payload) for i in range(400)]
    for d in datas:
        srv.pub(ch, d.encode())
    fast.wait_for(400, timeout=30)
    assert_exact(fast, datas)
    assert wait_until(lambda: 'more than SSEMaxPendingBytes owed' in srv.read_log(pos), 10)
    assert srv.wait_channel_subscribers(ch, 1)
    slow.start_reading()
    assert slow.wait_ended(30)
    got = [e.data for e in slow.data_events()]
    assert 0 < len(got) < 400 and got == datas[:len(got)]
    again = srv.sub('/quiet/%s' % ch, last_event_id=slow.parser.last_id)
    assert again.headers['SSE-Resume'] == 'exact'
    again.wait_for(400 - len(got), timeout=30)
    assert got + [e.data for e in again.data_events()] == datas
    assert not [e for e in again.events if e.event == 'sse-reset']


# a client that goes away while parked is noticed without any publish
def test_hangup_while_parked_frees_the_subscriber(srv):
    ch = uniq('whup')
    s = srv.sub('/quiet/%s' % ch)
    keep = srv.sub('/quiet/%s' % ch)
    wait_parked(srv, 2)
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    assert srv.wait_channel_subscribers(ch, 1, timeout=5)
    assert writer_streams(srv) == 1
    srv.pub(ch, b'still here')
    keep.wait_for(1)
    assert keep.data_events()[0].data == 'still here'


# the writer sends keepalives on the location's interval
def test_keepalive_while_parked(srv):
    ch = uniq('wka')
    s = srv.sub('/events/%s' % ch)
    wait_parked(srv, 1)
    assert s.wait_until(lambda st: st.comments.count('keepalive') >= 2, timeout=6)
    assert writer_streams(srv) == 1


# a filter that must see every byte keeps the stream on its own thread
def test_filtered_stream_is_not_parked(srv):
    ch = uniq('wrl')
    pos = srv.log_size()
    s = srv.sub('/limited/%s' % ch)
    srv.wait_channel_subscribers(ch, 1)
    time.sleep(1.2)
    assert writer_streams(srv) == 0
    for i in range(3):
        srv.pub(ch, b'limited %d' % i)
    s.wait_for(3)
    assert_exact(s, ['limited %d' % i for i in range(3)])
    assert srv.count_log(r"SSE00106: output filter 'rate_limit'", pos) == 1


# several channels on one stream stay in id order, each event once
def test_multi_channel_stream_in_id_order(srv):
    a, b = uniq('wa'), uniq('wb')
    s = srv.sub('/quiet/?channel=%s,%s' % (a, b))
    only_a = srv.sub('/quiet/%s' % a)
    wait_parked(srv, 2)
    for i in range(30):
        srv.pub(a if i % 3 else b, b'm%d' % i)
    s.wait_for(30)
    assert_exact(s, ['m%d' % i for i in range(30)])
    only_a.wait_for(20)
    assert [e.data for e in only_a.data_events()] == ['m%d' % i for i in range(30) if i % 3]


# a stream that resumes joins the writer after its replay without repeats
def test_resume_then_join_a_busy_feed(srv):
    ch = uniq('wjoin')
    first = srv.sub('/quiet/%s' % ch)
    wait_parked(srv, 1)
    for i in range(10):
        srv.pub(ch, b'n%d' % i)
    first.wait_for(10)
    fifth = first.data_events()[4].id
    late = srv.sub('/quiet/%s' % ch, last_event_id=fifth)
    for i in range(10, 20):
        srv.pub(ch, b'n%d' % i)
    late.wait_for(15)
    first.wait_for(20)
    assert_exact(late, ['n%d' % i for i in range(5, 20)])
    assert_exact(first, ['n%d' % i for i in range(20)])
    wait_parked(srv, 2)


# deleting a channel ends its parked streams with the usual notice
def test_delete_ends_parked_streams(srv):
    ch = uniq('wdel')
    s = srv.sub('/quiet/%s' % ch)
    wait_parked(srv, 1)
    srv.pub(ch, b'before')
    s.wait_for(1)
    assert srv.delete(ch).status_code == 200
    s.wait_ended(timeout=5)
    assert 'channel deleted' in s.comments
    assert writer_streams(srv) == 0


# an event published while a stream is being handed to the writer (after its
# handler's last read; the test build widens that window) reaches it at once,
# though no later event follows
def test_event_during_hand_off_is_not_held_back(httpd_factory):
    hooks = build_variant('hooks', ['SSE_TEST_HOOKS'])
    srv = httpd_factory.create('handoffrace', locations=LOCATIONS, global_extra=[
        'LoadModule ratelimit_module %s/mod_ratelimit.so' % MODULES,
        'LoadModule env_module %s/mod_env.so' % MODULES])
    srv.module_so = hooks
    srv.write_config()
    srv.start()
    for i in range(5):
        ch = uniq('join%d' % i)
        s = srv.sub('/quiet/%s' % ch, headers={'SSE-Test-Delay-Hand-Off': '1'})
        r = srv.pub(ch, 'right away')
        assert [(e.id, e.data) for e in s.wait_for(1, timeout=5)] == [(r['id'], 'right away')], i
        s.close()
