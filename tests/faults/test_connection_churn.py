"""20,000 streams opened and dropped, 200 at a time: half closed cleanly
(FIN), half reset (SO_LINGER 0, so RST), some while an event is half
received, some before the response head. Afterwards every count is back
to zero (status, each child, each channel, the per-client table) and the
children's memory and file descriptors did not grow between cycle 5,000
and cycle 20,000."""
import errno
import os
import selectors
import socket
import struct
import threading
import time

import requests

from sse_env import uniq, wait_until

CYCLES = 20000
CHECKPOINT = 10000
CONCURRENCY = 200
SOURCES = ['127.0.0.%d' % i for i in range(2, 12)]    # 20 streams each at a time
PER_CLIENT = 100
BIG = 16 * 1024                                     # events the 'mid' streams cut in half
# Bound on the growth of a child's own memory (RssAnon) from cycle 10,000
# to cycle 20,000. Each child serves about 5,000 streams in that stretch
# (1,000 of them cut mid-event, whose unsent bytes the writer hands to the
# stream's thread in a malloc'd buffer), so a leak of one pool per stream
# (8 KB) would add 40 MB, a leaked hand-back buffer several MB, and any
# leak of 630 bytes or more per stream over 3 MB. Below that is the
# allocators' warm-up: glibc gives threads that malloc for the first time
# arenas of their own, and a thread's pools and stack grow on its first
# streams. Measured with these 150 threads a child: 0 to 1.4 MB from
# cycle 5,000 to 20,000 on a quiet machine; with the machine busy, more of
# the threads get their first streams later: 5 MB from 5,000 to 20,000
# (ending at the same 13.7 MB as the quiet run), hence the later baseline.
RSS_GROWTH_KB = 3072
# few threads, so that all of them have run streams by cycle 5,000; a
# child takes at most 90 % of them (135) and tells the rest "busy"
MPM = ['StartServers 2', 'ServerLimit 2', 'ThreadLimit 150', 'ThreadsPerChild 150',
       'MaxRequestWorkers 300', 'MinSpareThreads 1', 'MaxSpareThreads 300',
       'MaxConnectionsPerChild 0', 'ThreadStackSize 262144', 'ListenBacklog 4096',
       'ListenCoresBucketsRatio 1']
LINGER_RST = struct.pack('ii', 1, 0)
MID_WAIT = 5          # s a 'mid' stream waits for an event to cut
CYCLE_WAIT = 20       # s any stream may take; longer is a failure


class Cycle:
    """One stream: connect, ask, read as far as its kind says, drop."""

    def __init__(self, n, port, quiet, big):
        self.n = n
        self.rst = n % 2 == 1
        self.kind = 'early' if n % 50 == 7 else 'mid' if n % 10 in (3, 4) else 'open'
        self.source = SOURCES[n % len(SOURCES)]
        path = '/quiet/%s' % (big if self.kind == 'mid' else quiet[n % len(quiet)])
        self.request = ('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'
                        % path).encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.bind((self.source, 0))
        self.sock.connect_ex(('127.0.0.1', port))
        self.buf = b''
        self.started = time.monotonic()

    def on_writable(self):
        """Sends the request; an outcome when the cycle ends here."""
        try:
            self.sock.send(self.request)
        except OSError as e:
            return 'error %s' % errno.errorcode.get(e.errno, e.errno)
        return 'early' if self.kind == 'early' else None

    def on_readable(self):
        """An outcome when the stream should be dropped now, else None."""
        try:
            got = self.sock.recv(4096)
        except OSError as e:
            return 'error %s' % errno.errorcode.get(e.errno, e.errno)
        if not got:
            return 'eof'
        self.buf += got
        head_end = self.buf.find(b'\r\n\r\n')
        if head_end < 0:
            return None
        if not self.buf.startswith(b'HTTP/1.1 200'):
            return 'status ' + self.buf[9:12].decode()
        body = self.buf[head_end + 4:]
        if b'busy, retry later' in body:
            return 'busy'
        opened = body.find(b': ok\nid: ')
        if opened < 0 or body.find(b'\n\n', opened) < 0:
            return None
        if self.kind == 'open':
            return 'open'
        rest = body[body.find(b'\n\n', opened) + 2:]
        # bytes of an event that has not ended yet: drop it half received
        if b'id: ' in rest and not rest.endswith(b'\n\n\r\n'):
            return 'mid'
        return None

    def drop(self):
        if self.rst:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        else:
            try:
                self.sock.shutdown(socket.SHUT_WR)      # FIN
            except OSError:
                pass
        self.sock.close()


class BigPublisher(threading.Thread):
    """Keeps 16 KB events coming on the channel the 'mid' streams read, one
    fresh connection each (a saturated mpm_event closes idle keep-alive
    connections); a refused or failed publish is counted, not fatal."""

    def __init__(self, srv, ch):
        super().__init__(daemon=True)
        self.srv, self.ch, self.n, self.failed = srv, ch, 0, 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                ok = self.srv.publish(self.ch, ('%08d' % self.n) + 'b' * (BIG - 8),
                                      fresh=True).status_code == 201
            except requests.RequestException:
                ok = False
            self.n += ok
            self.failed += not ok
            self.stop_flag.wait(0.02)


def run_cycles(srv, start, stop, quiet, big, outcomes):
    """Runs cycles start..stop, CONCURRENCY at a time; counts outcomes."""
    sel = selectors.DefaultSelector()
    n, live = start, 0
    deadline = time.monotonic() + 150
    # Cycles told "busy, retry later" run again, as EventSource would. A
    # parked stream whose client left is noticed at its child's writer's
    # next round (a publish, or once a second): at thousands of cycles a
    # second, streams already gone can fill a child's share for a moment.
    retry = []
    while (n < stop or live or retry) and time.monotonic() < deadline:
        while (n < stop or retry) and live < CONCURRENCY:
            if retry:
                c = Cycle(retry.pop(), srv.port, quiet, big)
            else:
                c = Cycle(n, srv.port, quiet, big)
                n += 1
            sel.register(c.sock, selectors.EVENT_WRITE, c)
            live += 1
        ready = [(key.data, mask) for key, mask in sel.select(0.2)]
        now = time.monotonic()
        # bounded: a 'mid' stream without an event for MID_WAIT s (the
        # publisher was refused) drops anyway; no cycle waits past CYCLE_WAIT
        ready += [(key.data, 0) for key in list(sel.get_map().values())
                  if now - key.data.started > (MID_WAIT if key.data.kind == 'mid' else CYCLE_WAIT)]
        for c, mask in ready:
            if c.sock.fileno() < 0:
                continue
            if not mask:
                outcome = 'no event' if c.kind == 'mid' and now - c.started < CYCLE_WAIT else 'timeout'
            elif mask & selectors.EVENT_WRITE:
                outcome = c.on_writable()
                if outcome is None:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
            else:
                outcome = c.on_readable()
                if outcome is None:
                    continue
            sel.unregister(c.sock)
            c.drop()
            live -= 1
            if outcome == 'busy':
                retry.append(c.n)
                outcomes['busy'] = outcomes.get('busy', 0) + 1
                continue
            for k in (outcome, 'rst' if c.rst else 'fin'):
                outcomes[k] = outcomes.get(k, 0) + 1
    sel.close()
    assert n == stop and not live and not retry, \
        'cycles stuck: %d of %d started, %d live, %d to retry' % (n, stop, live, len(retry))


def settled(srv):
    """Every count the status and the channel list keep is zero."""
    st = srv.status()
    chans = srv.get('/sse-admin/channels').json()['channels']
    return (st['subscribers'] == 0 and st['writer_streams'] == 0
            and all(c['subscribers'] == 0 and c['writer_streams'] == 0 for c in st['children'])
            and all(c['subscribers'] == 0 for c in chans))


def footprint(srv, pids):
    """{pid: (RssAnon kB, open fds)}: the child's own memory. VmRSS also
    counts the pages of the shared store it has touched (RssShmem), which
    grow towards SSESharedMemorySize as the store hands out blocks it has
    not used before, and the mapped binaries (RssFile). Our own kept-alive
    admin connection is closed first, so that no socket of ours is counted."""
    srv.session().close()
    srv.quiesce(5)
    out = {}
    for pid in pids:
        rss = next(int(line.split()[1]) for line in open('/proc/%d/status' % pid)
                   if line.startswith('RssAnon:'))
        out[pid] = (rss, len(os.listdir('/proc/%d/fd' % pid)))
    return out


def test_connection_churn_leaves_nothing(httpd_factory):
    srv = httpd_factory.start('churn', mpm_conf=MPM, expect_children=2, global_extra=[
        'SSEMaxSubscribers 270', 'SSEMaxStreamsPerClient %d' % PER_CLIENT,
        # httpd's allocators keep up to MaxMemFree (2 MB) each of freed memory:
        # that cache, not the streams, would otherwise be what grows
        'MaxMemFree 64'])
    quiet = [uniq('churn%d' % i) for i in range(4)]
    big = uniq('big')
    srv.pub(big, 'seed')
    pids = sorted(c['pid'] for c in srv.status()['children'])
    pubs = [BigPublisher(srv, big)]
    pubs[0].start()
    outcomes = {}
    try:
        run_cycles(srv, 0, CHECKPOINT, quiet, big, outcomes)
        pubs[0].stop_flag.set()
        pubs[0].join(10)
        assert wait_until(lambda: settled(srv), 30, 0.2), srv.status()
        at_checkpoint = footprint(srv, pids)
        pubs.append(BigPublisher(srv, big))
        pubs[1].start()
        run_cycles(srv, CHECKPOINT, CYCLES, quiet, big, outcomes)
    finally:
        pubs[-1].stop_flag.set()
        pubs[-1].join(10)
    assert wait_until(lambda: settled(srv), 30, 0.2), (srv.status(), srv.get('/sse-admin/channels').text)
    at_end = footprint(srv, pids)
    st = srv.status()
    assert sorted(c['pid'] for c in st['children']) == pids, 'a child was replaced: %s' % st['children']
    # the per-client table kept nothing either: one address gets its whole share again
    crowd = [socket.create_connection(('127.0.0.1', srv.port), source_address=(SOURCES[0], 0))
             for _ in range(PER_CLIENT + 1)]
    try:
        for s in crowd:
            s.sendall(('GET /quiet/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream'
                       '\r\n\r\n' % quiet[0]).encode())
        assert wait_until(lambda: srv.status()['subscribers'] == PER_CLIENT, 15, 0.1), srv.status()
        busy_before = st['busy']['client']
        assert wait_until(lambda: srv.status()['busy']['client'] == busy_before + 1, 10, 0.1), \
            srv.status()
    finally:
        for s in crowd:
            s.close()
    assert wait_until(lambda: settled(srv), 30, 0.2), srv.status()
    growth = {pid: at_end[pid][0] - at_checkpoint[pid][0] for pid in pids}
    fd_growth = {pid: at_end[pid][1] - at_checkpoint[pid][1] for pid in pids}
    print('connection-churn: %d cycles (%d FIN, %d RST; %d closed after the opening, '
          '%d mid-event, %d before the response head, other %s; %d more told busy and retried), %d big events '
          'published (%d refused); after: subscribers=0 writer_streams=0 channel subscribers=0; '
          'child RssAnon kB at cycle %d %s, at cycle %d %s, growth %s (bound %d); open fds %s -> %s'
          % (CYCLES, outcomes.get('fin', 0), outcomes.get('rst', 0), outcomes.get('open', 0),
             outcomes.get('mid', 0), outcomes.get('early', 0),
             {k: v for k, v in outcomes.items()
              if k not in ('fin', 'rst', 'open', 'mid', 'early', 'busy')}, outcomes.get('busy', 0),
             sum(p.n for p in pubs), sum(p.failed for p in pubs), CHECKPOINT, [at_checkpoint[p][0] for p in pids],
             CYCLES, [at_end[p][0] for p in pids], [growth[p] for p in pids], RSS_GROWTH_KB,
             [at_checkpoint[p][1] for p in pids], [at_end[p][1] for p in pids]))
    assert outcomes.get('fin', 0) == outcomes.get('rst', 0) == CYCLES // 2
    assert outcomes.get('mid', 0) > CYCLES // 20, outcomes
    assert not outcomes.get('timeout'), 'streams unanswered for %d s: %s' % (CYCLE_WAIT, outcomes)
    assert all(g <= RSS_GROWTH_KB for g in growth.values()), growth
    assert all(g <= 0 for g in fd_growth.values()), fd_growth
