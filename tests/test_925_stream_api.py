"""The stream API of mod_sse.h, through examples/mod_sse_example.c built with
apxs (make examples): a module's own events (one, a batch as one write, a
comment), joined channels with replay, keepalives, a client that leaves,
a refused event type, a graceful restart."""
import pytest

from sse_env import DEFAULT_LOCATIONS, EXAMPLE_MOD_SO, SseStream, uniq, wait_until

EXAMPLE_LOCATIONS = DEFAULT_LOCATIONS + """
<Location /ticks>
    SetHandler sse-example
    SSEKeepAlive 1
    SSERetry 1500
</Location>
"""


@pytest.fixture(scope='module')
def api(module_factory):
    return module_factory.start('api', locations=EXAMPLE_LOCATIONS, global_extra=[
        'LoadModule sse_example_module %s' % EXAMPLE_MOD_SO,
        'LogFormat "%r %>s ch=%{sse-channels}n events=%{sse-events}n end=%{sse-end}n" apinotes',
        'CustomLog logs/api_log apinotes'])


def frames(s):
    return [(e.id, e.event, e.data) for e in s.events]


HELLO = [(None, 'hello', 'batch one'), (None, 'hello', 'batch two\nsecond line')]


# the module's own events: a batch in one chunk, a comment, ticks; the
# stream headers, retry, and a clean end when the handler closes
def test_own_events_batch_comment_and_close(api):
    s = SseStream(api.port, '/ticks?ticks=3&every=50')
    assert s.status == 200
    assert s.headers['content-type'] == 'text/event-stream; charset=utf-8'
    assert s.headers['cache-control'] == 'no-cache, no-store, no-transform'
    assert s.wait_ended() and s.clean_end
    assert [(e.id or None, e.event, e.data) for e in s.events] == HELLO + [
        (None, 'tick', 'tick %d \u00e9' % i) for i in (1, 2, 3)]
    assert s.retries == [1500]
    assert s.comments[:2] == ['ok', 'from mod_sse_example']
    # the batch was one write: one chunk holds both events
    batch = b'event: hello\ndata: batch one\n\nevent: hello\ndata: batch two\ndata: second line\n\n'
    assert batch in s.chunks, s.chunks
    assert wait_until(lambda: 'GET /ticks?ticks=3&every=50 HTTP/1.1 200 ch=- events=5 end=closed'
                      in api.read_file('logs/api_log'))


# a joined channel: replay after Last-Event-ID, live events in between the
# module's own, the subscriber counted; a client that leaves is noticed
def test_joined_channel_replay_live_and_client_gone(api):
    ch = uniq('api')
    first = api.pub(ch, 'before one')['id']
    second = api.pub(ch, 'before two')['id']
    s = SseStream(api.port, '/ticks?ticks=0&hold=1&channel=%s' % ch, last_event_id=first)
    assert s.status == 200
    s.wait_for(3)
    assert frames(s)[0] == (second, 'message', 'before two')
    assert api.wait_channel_subscribers(ch, 1)
    live = api.pub(ch, 'live')['id']
    s.wait_for(4)
    assert frames(s)[3] == (live, 'message', 'live')
    s.close()
    assert api.wait_channel_subscribers(ch, 0)
    assert wait_until(lambda: 'mod_sse_example: stream ended (client gone)' in api.read_log())
    assert wait_until(lambda: ('ch=%s events=4 end=client-gone' % ch) in api.read_file('logs/api_log'))


# keepalive comments while the module waits (SSEKeepAlive 1)
def test_keepalive_while_waiting(api):
    s = SseStream(api.port, '/ticks?ticks=0&hold=1')
    assert s.wait_comment('keepalive')
    s.close()


# an event type of mod_sse's own (sse-...) is refused with APR_EINVAL and
# nothing of it is sent
def test_reserved_event_type_refused(api):
    s = SseStream(api.port, '/ticks?ticks=0&bad=1')
    assert s.wait_ended() and s.clean_end
    assert 'forged event refused: EINVAL' in s.comments
    assert all(e.event != 'sse-reset' for e in s.events)


# deleting a joined channel ends the wait with APR_EOF
def test_channel_deleted(api):
    ch = uniq('apidel')
    s = SseStream(api.port, '/ticks?ticks=0&hold=1&channel=%s' % ch)
    assert api.wait_channel_subscribers(ch, 1)
    assert api.delete(ch).status_code == 200
    assert s.wait_ended() and s.clean_end
    assert wait_until(lambda: 'mod_sse_example: stream ended (channel deleted)' in api.read_log())
    assert wait_until(lambda: ('ch=%s events=2 end=deleted' % ch) in api.read_file('logs/api_log'))


# HEAD: open answers APR_EOF, the handler returns at once with the stream
# headers (it would otherwise hold its thread, writing into nothing)
def test_head(api):
    r = api.request('HEAD', '/ticks?ticks=0&hold=1', timeout=10)
    assert r.status_code == 200
    assert r.headers['Content-Type'] == 'text/event-stream; charset=utf-8'
    assert r.content == b''


# a graceful restart ends the module's wait with APR_EINTR after
# ": server restarting", and the response ends cleanly (runs last)
def test_graceful_restart(api):
    s = SseStream(api.port, '/ticks?ticks=0&hold=1')
    assert s.wait_open()
    r = api.apachectl('graceful')
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert s.wait_ended(15) and s.clean_end
    assert s.comments[-1] == 'server restarting'
    assert wait_until(lambda: 'mod_sse_example: stream ended (server restarting)' in api.read_log())
