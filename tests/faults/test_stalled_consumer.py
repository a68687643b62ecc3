"""A consumer that stops reading (a 4 KB receive buffer, nothing read)
holds up nobody: while it is stalled, the other subscribers of its channel
get all 500 events of 2 KB, and once it owes the writer more than
SSEMaxPendingBytes its stream is ended. When it reads again and resumes
with its Last-Event-ID, as EventSource does, it gets what the README
promises: everything once and in order while history still holds it, or,
once history has rolled over, an sse-reset with reason expired and then the
retained messages.

httpd's SendBufferSize caps the server's socket buffer (the kernel would
otherwise grow it to 4 MB and swallow the whole test), so each config
knows which of the two answers must come."""
import fcntl
import struct
import termios

from sse_env import SseStream, uniq, wait_until

EVENTS = 500
SIZE = 2048
OTHERS = 5
# what can sit between the server and the stalled client: the server's
# send buffer (16 KB, doubled by the kernel), the client's receive buffer
# (4 KB, doubled) and what the writer may owe it (SSEMaxPendingBytes, 64 KB,
# never sent once the stream ends): under 110 KB, fewer than 55 events
IN_FLIGHT_MAX = 110 * 1024
MPM_EXTRA = ['SendBufferSize 16384']


def queued(stream):
    """Bytes waiting in the client's receive queue (not read yet)."""
    buf = fcntl.ioctl(stream.sock.fileno(), termios.FIONREAD, b'\0\0\0\0')
    return struct.unpack('i', buf)[0]


def writer_streams(srv):
    return srv.status()['writer_streams']


def stall_and_publish(srv, ch):
    """Opens the stalled stream and the others, publishes EVENTS events;
    returns (stalled, others, sent [(id, data)], bytes the stalled one held)."""
    stalled = SseStream(srv.port, '/quiet/%s' % ch, rcvbuf=4096, reading=False)
    assert stalled.status == 200
    others = [srv.sub('/quiet/%s' % ch) for _ in range(OTHERS)]
    assert wait_until(lambda: writer_streams(srv) == OTHERS + 1, 10, 0.05), srv.status()
    sent = []
    for n in range(EVENTS):
        data = 'e%04d ' % n + 'x' * (SIZE - 6)
        sent.append((srv.pub(ch, data)['id'], data))
    # count, not time: every other subscriber has everything...
    for s in others:
        s.wait_for(EVENTS, 30)
        assert [(e.id, e.data) for e in s.events] == sent
    # ...while the stalled one holds a few buffers' worth and its stream was
    # ended for owing more than SSEMaxPendingBytes
    assert wait_until(lambda: writer_streams(srv) == OTHERS, 10, 0.05), srv.status()
    assert 'more than SSEMaxPendingBytes owed' in srv.read_log()
    held = len(stalled.raw) + queued(stalled)
    assert held < IN_FLIGHT_MAX, held
    return stalled, others, sent, held


def read_and_resume(srv, ch, stalled):
    """The stalled client reads what reached it, sees the end, and comes
    back with its last event id; returns (before, resumed stream)."""
    stalled.start_reading()
    assert stalled.wait_ended(30)
    before = [(e.id, e.data) for e in stalled.events]
    again = srv.sub('/quiet/%s' % ch, last_event_id=stalled.parser.last_id)
    return before, again


def test_stalled_consumer_resumes_with_everything(httpd_factory):
    history = 2 * EVENTS           # holds everything: no reset may come
    srv = httpd_factory.start('stall-keep', global_extra=MPM_EXTRA + [
        'SSEHistorySize %d' % history])
    ch = uniq('stall')
    stalled, others, sent, held = stall_and_publish(srv, ch)
    before, again = read_and_resume(srv, ch, stalled)
    assert again.headers['SSE-Resume'] == 'exact'
    again.wait_for(EVENTS - len(before), 30)
    got = before + [(e.id, e.data) for e in again.events]
    print('stalled-consumer (history %d): %d published, %d delivered to %d others while '
          'the stalled one had %d bytes (%.1f events) in its receive queue; after resuming it got %d, lost=%d, '
          'duplicates=%d, resets=%d'
          % (history, EVENTS, sum(len(s.events) for s in others), OTHERS, held, held / SIZE,
             len(got), len(set(sent) - set(got)), len(got) - len(set(got)),
             sum(e.event == 'sse-reset' for e in again.events)))
    assert got == sent
    # caught up, it is the writer's again
    assert wait_until(lambda: writer_streams(srv) == OTHERS + 1, 10, 0.05), srv.status()


def test_stalled_consumer_past_history_gets_expired_reset(httpd_factory):
    # 450 of the 500 leave history while at most IN_FLIGHT_MAX bytes (under
    # 55 events) can be on their way to the stalled client: it must miss some
    history = 50
    srv = httpd_factory.start('stall-overflow', global_extra=MPM_EXTRA + [
        'SSEHistorySize %d' % history])
    ch = uniq('stallof')
    stalled, others, sent, held = stall_and_publish(srv, ch)
    before, again = read_and_resume(srv, ch, stalled)
    assert again.headers['SSE-Resume'] == 'reset'
    evs = again.wait_for(history + 1, 30)
    reset, after = evs[0], [(e.id, e.data) for e in evs[1:]]
    print('stalled-consumer (history %d): %d published, %d delivered to %d others while '
          'the stalled one had %d bytes (%.1f events) in its receive queue; it got %d, was ended, '
          'resumed with sse-reset %s, then the %d retained; lost=%d (dropped from history), '
          'duplicates=%d'
          % (history, EVENTS, sum(len(s.events) for s in others), OTHERS, held, held / SIZE,
             len(before), reset.data, len(after), EVENTS - len(before) - len(after),
             len(before + after) - len(set(before + after))))
    # what it got before its stream ended is the start of what was sent, gapless
    assert before == sent[:len(before)]
    # the reset, exactly as the README describes it for a resume
    assert reset.event == 'sse-reset'
    assert reset.json() == {'reason': 'expired', 'last_event_id': stalled.parser.last_id}, reset.data
    assert reset.id_field == str(int(after[0][0]) - 1)
    # then the retained messages: the last SSEHistorySize, in order
    assert after == sent[-history:]
    assert len(before) + len(after) < EVENTS
