"""mod_sse's error_log lines, for activity this module causes itself on the
main server: streams opened and ended (by the client and by a DELETE),
publishes, refused requests. Only the lines written since the module started
are read, so it passes or fails the same alone and after the whole suite."""
import re

import pytest

from sse_env import uniq, wait_until

SSE_LINE = re.compile(r'\[sse:(debug|info|notice|warn|error|crit|alert|emerg)\]')


def port_of(stream):
    return stream.sock.getsockname()[1]


@pytest.fixture(scope='module')
def activity(sse):
    """Runs the activity; returns the log position before it and what the
    log must show."""
    pos = sse.log_size()
    ch = uniq('logs')
    kept = sse.sub('/events/%s' % ch)
    left = sse.sub('/events?channel=%s' % ch)
    ports = {'kept': port_of(kept), 'left': port_of(left)}
    first = sse.pub(ch, 'one')
    assert first['subscribers'] == 2
    r = sse.publish(ch, 'refused', retry='soon')
    assert r.status_code == 400, r.text
    bad = sse.subscribe('/events/a%20b')
    ports['bad'] = port_of(bad)
    bad.read_all()
    assert bad.status == 400
    assert [e.data for e in left.wait_for(1)] == ['one']
    left.close()
    assert sse.wait_channel_subscribers(ch, 1), sse.channel(ch)
    second = sse.pub(ch, 'two')
    assert second['subscribers'] == 1
    assert [e.data for e in kept.wait_for(2)] == ['one', 'two']
    r = sse.delete(ch)
    assert r.status_code == 200, r.text
    assert kept.wait_ended() and kept.comments[-1:] == ['channel deleted'], kept.body[-100:]
    # a handed-off stream's end is logged by the child's writer, after the
    # client saw the end: wait for both
    wait_until(lambda: sse.count_log(r'SSE00401: stream of .* ends \(', pos) >= 2, 10)
    return {'pos': pos, 'ch': ch, 'ports': ports, 'ids': (first['id'], second['id'])}


def lines_since(sse, pos):
    return sse.read_log(pos).splitlines()


def exactly_one(lines, level, text, client_port=None):
    """The one line at [sse:level] that ends with `text` (after the tag)
    and, when given, is from that client port."""
    rx = re.compile(r'\[sse:%s\] .*%s%s$' % (
        level, r'\[client 127\.0\.0\.1:%d\] ' % client_port if client_port else '', re.escape(text)))
    found = [line for line in lines if rx.search(line)]
    assert len(found) == 1, 'expected one [sse:%s] line %r, found %r' % (level, text, found)
    return found[0]


# the activity is logged line by line, each with its SSEnnnnn tag, at the documented level
def test_activity_is_logged(sse, activity):
    lines = lines_since(sse, activity['pos'])
    ch, ports, (id1, id2) = activity['ch'], activity['ports'], activity['ids']
    for name in ('kept', 'left'):
        exactly_one(lines, 'debug', "SSE00105: stream opens: 1 channel(s), first '%s', last event id -" % ch,
                    ports[name])
    exactly_one(lines, 'debug', "SSE00202: published 1 event(s) to '%s', first id %s, 2 subscriber(s)" % (ch, id1))
    exactly_one(lines, 'debug', "SSE00202: published 1 event(s) to '%s', first id %s, 1 subscriber(s)" % (ch, id2))
    exactly_one(lines, 'info', 'SSE00201: admin request refused (400): retry must be a number of '
                               'milliseconds, digits only')
    exactly_one(lines, 'debug', "SSE00101: refusing stream (400): channel 'a b' may only contain "
                                "A-Z a-z 0-9 _ - . : @ ~", ports['bad'])
    for name in ('kept', 'left'):
        exactly_one(lines, 'debug', 'SSE00110: stream handed to the writer after 0 events', ports[name])
    ended = lambda port, why, events: [l for l in lines if re.search(
        r'\[sse:info\] .*SSE00401: stream of 127\.0\.0\.1:%d on %s ends \(%s\) after \d+ ms, '
        r'%d events, \d+ bytes$' % (port, re.escape(ch), re.escape(why), events), l)]
    assert len(ended(ports['left'], 'client gone', 1)) == 1, lines[-20:]
    exactly_one(lines, 'info', "SSE00203: channel '%s' deleted: 2 message(s) dropped, 1 subscriber(s) ended" % ch)
    assert len(ended(ports['kept'], 'channel deleted', 2)) == 1, lines[-20:]


# every mod_sse message at debug level or above carries an SSEnnnnn tag
def test_sse_log_lines_are_tagged(sse, activity):
    lines = [line for line in lines_since(sse, activity['pos']) if SSE_LINE.search(line)]
    assert len(lines) >= 9, lines
    untagged = [line for line in lines if not re.search(r'\] SSE\d{5}: ', line)]
    assert not untagged, '\n'.join(untagged[:20])


# normal operation, refusals included, logs no mod_sse errors
def test_no_sse_errors_logged(sse, activity):
    lines = lines_since(sse, activity['pos'])
    assert any(SSE_LINE.search(line) for line in lines)
    bad = [line for line in lines if re.search(r'\[sse:(error|crit|alert|emerg)\]', line)]
    assert not bad, '\n'.join(bad[:20])
