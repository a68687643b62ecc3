"""Delivery across child processes of the main server (mpm_event, 2 children,
SO_REUSEPORT listener buckets).

Which child serves a request is read from the access log (pid=%P), which
httpd writes when the request ends, for a handed-off stream when it is
handed to the child's writer: each stream gets a unique ?tag= so that its
log line can be told apart. The per-child subscriber counts in
/sse-admin/status come from the store, so comparing them with the access log
compares two independent observations."""
import re
from collections import Counter

from sse_env import uniq, wait_until


def per_pid(status):
    return {c['pid']: c['subscribers'] for c in status['children']}


def logged_pids(srv, method, path_prefix, n, timeout=10):
    """{query tag: pid} from the access log lines of `method path_prefix?tag=k`;
    waits until n of them are there."""
    rx = re.compile(r'"%s %s\?tag=(\d+) HTTP/1\.1" \d{3} \S+ \d+ pid=(\d+)$'
                    % (method, re.escape(path_prefix)), re.M)

    def read():
        return {int(t): int(p) for t, p in rx.findall(srv.read_file('logs/access_log'))}
    wait_until(lambda: len(read()) >= n, timeout)
    return read()


def open_across_children(srv, ch, minimum=12, maximum=40):
    """Opens tagged subscribers on ch until status shows subscribers in two
    different child pids; returns (streams, per-pid counts, pids at start)."""
    # streams of earlier tests are closed; once the server has noticed, every
    # count in status belongs to this test
    assert wait_until(lambda: srv.status()['subscribers'] == 0, 16, 0.2), srv.status()
    start_pids = set(per_pid(srv.status()))
    streams = []
    counts = {}
    while len(streams) < maximum:
        streams.append(srv.sub('/events/%s?tag=%d' % (ch, len(streams))))
        if len(streams) < minimum:
            continue
        assert srv.wait_channel_subscribers(ch, len(streams))
        counts = {pid: n for pid, n in per_pid(srv.status()).items() if n}
        if len(counts) >= 2:
            break
    assert len(counts) >= 2, 'subscribers never spread over two children: %r' % srv.status()['children']
    assert sum(counts.values()) == len(streams), counts
    return streams, counts, start_pids


# subscribers held by two children all receive a publish handled by one of them;
# the access log places exactly as many streams in each child as status counts
def test_publish_reaches_all_children(sse):
    ch = uniq('xproc')
    streams, counts, start_pids = open_across_children(sse, ch)
    n = len(streams)
    r = sse.publish(ch, 'to every child', params={'tag': 0})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first['subscribers'] == n
    for s in streams:
        assert [(e.id, e.data) for e in s.wait_for(1)] == [(first['id'], 'to every child')], s
    # a burst also arrives everywhere, in order
    ids = [sse.pub(ch, 'burst %d' % i)['id'] for i in range(20)]
    for s in streams:
        ev = s.wait_for(21)
        assert [(e.id, e.data) for e in ev[1:]] == list(zip(ids, ['burst %d' % i for i in range(20)]))
    publisher_pid = logged_pids(sse, 'POST', '/sse-admin/channels/%s' % ch, 1)[0]
    for s in streams:
        s.close()
    assert sse.wait_channel_subscribers(ch, 0), sse.channel(ch)
    stream_pids = logged_pids(sse, 'GET', '/events/%s' % ch, n)
    assert sorted(stream_pids) == list(range(n)), stream_pids
    # the children status counted are the ones the access log names, stream for stream
    assert dict(Counter(stream_pids.values())) == counts, (stream_pids, counts)
    assert set(counts) <= start_pids and publisher_pid in start_pids, (counts, publisher_pid, start_pids)
    # the first publish was handled by one child and reached the streams of the other
    other = [k for k, pid in stream_pids.items() if pid != publisher_pid]
    assert other, 'no stream outside the publishing child %d: %r' % (publisher_pid, stream_pids)


# per-child counts in status follow streams closing in either child, as the access log places them
def test_children_counts_follow_streams(sse):
    ch = uniq('kids')
    streams, counts, _ = open_across_children(sse, ch, minimum=6)
    n = len(streams)
    # the access log names each stream's child (its line is written when the
    # stream is handed to that child's writer)
    pids = logged_pids(sse, 'GET', '/events/%s' % ch, n)
    assert sorted(pids) == list(range(n)), pids
    assert dict(Counter(pids.values())) == counts, (pids, counts)
    # close a few: the children the log names lose them
    closing = [0, 1, 2, n - 1]
    for k in closing:
        streams[k].close()
    assert sse.wait_channel_subscribers(ch, n - len(closing), 10), sse.channel(ch)
    expected = Counter(counts)
    expected.subtract(Counter(pids[k] for k in closing))
    now = per_pid(sse.status())
    assert now == {pid: expected[pid] for pid in now}, (now, counts, pids)
    # the rest close; every child's count returns to 0 and the log accounts for all n streams
    for s in streams:
        s.close()
    assert wait_until(lambda: all(c == 0 for c in per_pid(sse.status()).values()), 10), sse.status()
