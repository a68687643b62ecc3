"""1,000 subscribers in three children of mpm_event ride through three
graceful restarts while a publisher keeps publishing: every accepted (201)
message reaches every subscriber of its channel exactly once and in order,
across the reconnects (Last-Event-ID, as EventSource sends it), and nobody
is told to reset."""
import threading
import time

import requests

from sse_env import uniq
from sse_mass import Crowd, MassSubscriber

SUBSCRIBERS = 1000
CHANNELS = 4
RESTARTS = 3
RATE = 20                      # publishes per second, over all channels
# MaxSpareThreads: 2 buckets x 2 children in the fuller x 500 (SSE00012)
MPM = ['StartServers 3', 'ServerLimit 6', 'ThreadLimit 500', 'ThreadsPerChild 500',
       'MaxRequestWorkers 1500', 'MinSpareThreads 1', 'MaxSpareThreads 2000',
       'ThreadStackSize 131072', 'ListenBacklog 4096', 'ListenCoresBucketsRatio 1']
GENERATION_LINE = r'resuming normal operations'
# httpd's, not mod_sse's: a graceful restart replaces the SO_REUSEPORT
# listeners, and a connection still queued on an old one is reset by the
# kernel before any child reads it. EventSource retries those.
REPLACED_LISTENER = ('ConnectionResetError(', 'closed before the response head')


class Publisher(threading.Thread):
    """Publishes RATE messages a second over the channels, each on a fresh
    connection (a restart closes kept-alive ones); keeps what got 201."""

    def __init__(self, srv, channels):
        super().__init__(daemon=True, name='publisher')
        self.srv, self.channels = srv, channels
        self.accepted = []           # (channel, id, data)
        self.refused = []            # connection errors (nothing stored) and non-201 answers
        self.stop_flag = threading.Event()

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            ch = self.channels[n % len(self.channels)]
            data = 'm%05d %s' % (n, ch)
            try:
                r = self.srv.publish(ch, data, fresh=True)
            except requests.ConnectionError as e:
                self.refused.append(repr(e))
            else:
                if r.status_code == 201:
                    self.accepted.append((ch, r.json()['id'], data))
                else:
                    self.refused.append('%d %s' % (r.status_code, r.text[:100]))
            n += 1
            self.stop_flag.wait(1.0 / RATE)


def subscribed(srv, n):
    st = srv.status_after_restart()
    return st is not None and st['subscribers'] == n


def test_graceful_restarts_lose_nothing(httpd_factory):
    srv = httpd_factory.start('graceful3', mpm_conf=MPM, expect_children=3, global_extra=[
        'SSEMaxSubscribers 1400', 'SSEMaxStreamsPerClient 2000', 'SSEHistorySize 1000'])
    chans = [uniq('gr%d' % i) for i in range(CHANNELS)]
    crowd = Crowd()
    try:
        for i in range(SUBSCRIBERS):
            # every tenth stream holds two channels: replay merges them by id
            mine = [chans[i % CHANNELS]] + ([chans[(i + 1) % CHANNELS]] if i % 10 == 0 else [])
            s = crowd.add(MassSubscriber(srv.port, '/quiet?channel=%s' % ','.join(mine),
                                         resilient=True))
            s.channels = set(mine)
            if i % 200 == 199:
                crowd.pump(0.2)
        assert crowd.pump_until(lambda: subscribed(srv, SUBSCRIBERS), 60, 0.5), srv.status()
        pub = Publisher(srv, chans)
        pub.start()
        try:
            crowd.pump(2)
            for k in range(1, RESTARTS + 1):
                gens = srv.count_log(GENERATION_LINE)
                r = srv.apachectl('graceful')
                assert r.returncode == 0, (r.stdout, r.stderr)
                assert crowd.pump_until(lambda: srv.count_log(GENERATION_LINE) > gens, 30), \
                    srv.read_log()[-2000:]
                # every stream of the old generation was ended, and came back
                assert crowd.pump_until(lambda: all(s.server_ends >= k for s in crowd.subs), 30), \
                    'restart %d: %d streams not ended' % (
                        k, sum(s.server_ends < k for s in crowd.subs))
                assert crowd.pump_until(lambda: subscribed(srv, SUBSCRIBERS), 60, 0.5), \
                    (k, srv.status_after_restart())
                crowd.pump(2)
        finally:
            pub.stop_flag.set()
            pub.join(15)
        assert len(pub.accepted) > 100, (len(pub.accepted), pub.refused[:5])
        last = {}
        for ch, i, _ in pub.accepted:
            last[ch] = int(i)

        def caught_up():
            return all(s.events and int(s.events[-1].id) >= max(last[c] for c in s.channels)
                       for s in crowd.subs)
        crowd.pump_until(caught_up, 60)
        lost = dups = delivered = 0
        bad = []
        for k, s in enumerate(crowd.subs):
            want = [(i, d) for c, i, d in pub.accepted if c in s.channels]
            got = [(e.id, e.data) for e in s.events]
            delivered += len(got)
            dups += len(got) - len(set(got))
            lost += len(set(want) - set(got))
            if got != want:
                bad.append((k, sorted(s.channels), len(got), len(want)))
        resets = sum(len(s.resets) for s in crowd.subs)
        reconnects = sum(s.connections - 1 for s in crowd.subs)
        # a child that starts listening first takes every reconnect until
        # it reaches its share (90 % of its threads); the rest are told
        # "busy, retry later" and come back, as EventSource does
        busy = sum(s.busy for s in crowd.subs)
        failures = [f for s in crowd.subs for f in s.failures]
        print('graceful-restarts: %d subscribers, %d published, %d delivered, lost=%d, '
              'duplicates=%d, resets=%d, restarts=%d, reconnects=%d, busy=%d, '
              'reset-by-listener=%d, publishes refused during restarts=%d'
              % (SUBSCRIBERS, len(pub.accepted), delivered, lost, dups, resets, RESTARTS,
                 reconnects, busy, len(failures), len(pub.refused)))
        assert not bad, '%d subscribers differ from what was accepted, e.g. %s' % (len(bad), bad[:5])
        assert lost == 0 and dups == 0
        assert resets == 0, [e.data for s in crowd.subs for e in s.resets][:5]
        assert not [f for s in crowd.subs for f in s.unknown_fields]
        assert all(s.server_ends >= RESTARTS for s in crowd.subs)
        assert reconnects >= RESTARTS * SUBSCRIBERS
        assert not [f for f in failures if not f.startswith(REPLACED_LISTENER)], failures[:5]
    finally:
        crowd.close()
