"""A child killed while it holds the store lock, at chosen points of a
publish, a subscribe, a delete and a history trim, again and again, while a
publisher and 200 subscribers in three children run. The test build of the
module (SSE_TEST_HOOKS) stops the child there with SIGSTOP; the test kills
it with SIGKILL. Afterwards: the store was repaired once per kill, no
half-written message was ever delivered, and every subscriber (those of the
killed children resume with Last-Event-ID) got every accepted message once,
in order."""
import os
import random
import re
import signal
import threading
import time

import requests

import sse_env
from sse_env import ResilientSubscriber, uniq, wait_until

MPM = ['StartServers 3', 'ServerLimit 3', 'ThreadLimit 150', 'ThreadsPerChild 150',
       'MaxRequestWorkers 450',
       'MinSpareThreads 1', 'MaxSpareThreads 450', 'ThreadStackSize 262144',
       'ListenCoresBucketsRatio 1']
POINTS = ['subscribe', 'publish-written', 'publish-linked', 'delete', 'trim'] * 2
SUBSCRIBERS = 200
KILLED_CONNECTION = re.compile(r'ConnectionResetError|ConnectionRefusedError|BrokenPipeError|'
                               r'connection closed before the response head')


def stopped_children(srv):
    out = []
    for pid in srv.child_pids():
        try:
            state = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue
        if state == 'T':
            out.append(pid)
    return out


def payload(n):
    # longer than one 256-byte block, so a torn message would show
    return 'msg %06d ' % n + ('%06d' % n) * 60


class Publisher(threading.Thread):
    """Publishes to the channels in turn; keeps what was accepted (201)."""

    def __init__(self, srv, channels):
        super().__init__(daemon=True)
        self.srv, self.channels = srv, channels
        self.accepted = []          # (channel, id, data)
        self.unanswered = set()     # data of publishes whose answer was lost
        self.errors = 0
        self.stop_flag = threading.Event()

    def run(self):
        n = 0
        session = requests.Session()
        while not self.stop_flag.is_set():
            ch = self.channels[n % len(self.channels)]
            data = payload(n)
            try:
                r = session.post(self.srv.url('/sse-admin/channels/%s' % ch), data=data, timeout=30)
            except requests.RequestException:
                # the child holding this connection was killed: not
                # accepted, though it may have stored the event just before
                # it stopped (the same data is published again)
                self.errors += 1
                self.unanswered.add(data)
                session = requests.Session()
                continue
            assert r.status_code == 201, r.text
            self.accepted.append((ch, r.json()['id'], data))
            n += 1
            time.sleep(0.005)


def trigger(srv, point, scratch):
    """Starts the operation that reaches the armed point, in a thread (it
    blocks or fails once its child stops)."""
    def go():
        try:
            if point.startswith('publish'):
                requests.post(srv.url('/sse-admin/channels/%s' % scratch['pub']), data='torn?',
                              timeout=60)
            elif point == 'subscribe':
                s = sse_env.SseStream(srv.port, '/events/%s' % uniq('victim'), timeout=60)
                s.close()
            elif point == 'delete':
                requests.delete(srv.url('/sse-admin/channels/%s' % scratch['del']), timeout=60)
            else:
                requests.post(srv.url('/sse-admin/channels/%s' % scratch['trim']), data='t',
                              timeout=60)
        except (requests.RequestException, OSError, sse_env.HttpError):
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_kill_inside_the_lock(httpd_factory):
    hooks = sse_env.build_variant('hooks', ['SSE_TEST_HOOKS'])
    srv = httpd_factory.create('crashlock', mpm_conf=MPM, global_extra=[
        'SSEHistorySize 2000', 'SSEMaxStreamsPerClient 1000', 'SSEMaxSubscribers 400',
        'SSEKeepAlive 1'])
    srv.module_so = hooks
    srv.write_config()
    srv.start(expect_children=3)
    # the killed children's ends are expected; nothing else may crash
    srv.log_ignore = [r'AH00052: child pid \d+ exit signal Killed']
    chans = [uniq('lock%d' % i) for i in range(4)]
    rng = random.Random(7)
    subs = []
    for i in range(SUBSCRIBERS):
        mine = [chans[i % 4]] + ([chans[(i + 1) % 4]] if i % 5 == 0 else [])
        path = '/events?channel=%s' % ','.join(mine)
        s = ResilientSubscriber(srv, path, rng=rng)
        s.channels = set(mine)
        subs.append(s)
        s.start()
    assert wait_until(lambda: srv.status()['subscribers'] >= SUBSCRIBERS, 60), srv.status()
    pub = Publisher(srv, chans)
    pub.start()
    kills = 0
    try:
        for point in POINTS:
            scratch = {'pub': uniq('scratch'), 'del': uniq('del'), 'trim': uniq('trim')}
            if point == 'delete':
                srv.pub(scratch['del'], 'to be deleted')
            if point == 'trim':
                # a full history: the next publish drops the oldest message
                srv.pub(scratch['trim'], json_body=[{'data': 'old %d' % i} for i in range(2000)])
            assert srv.request('POST', '/sse-admin/test/crash/%s' % point).status_code == 200
            t = trigger(srv, point, scratch)
            assert wait_until(lambda: stopped_children(srv), 30, 0.02), \
                'nothing stopped at %s' % point
            victim = stopped_children(srv)[0]
            os.kill(victim, signal.SIGKILL)
            kills += 1
            t.join(60)
            # the server recovers: publishes are accepted again
            assert wait_until(lambda: (srv.status_after_restart() or {}).get('repairs') == kills,
                              30), (point, srv.status_after_restart())
            time.sleep(0.5)
    finally:
        pub.stop_flag.set()
        pub.join(30)
    st = srv.status()
    assert st['repairs'] == kills == len(POINTS)
    assert pub.accepted, 'nothing was published' 
    last = max(int(i) for _, i, _ in pub.accepted)
    for s in subs:
        assert wait_until(lambda: s.last_id and int(s.last_id) >= max(
            int(i) for c, i, _ in pub.accepted if c in s.channels), 60), (s.path, s.last_id, last)
    for s in subs:
        s.stop()
    killed_streams = sum(s.connections - 1 for s in subs)
    assert killed_streams > 0, 'no subscriber was on a killed child'
    accepted_ids = {i for _, i, _ in pub.accepted}
    stored_unanswered = {}          # channel set -> the extras its subscribers got
    for k, s in enumerate(subs):
        want = [(i, d) for c, i, d in pub.accepted if c in s.channels]
        # a publish whose child was stopped after storing the event but
        # before answering is delivered (it was whole and committed); then
        # every subscriber of those channels gets it, at the same place
        extras = [(e.id, e.data) for e in s.events
                  if e.data in pub.unanswered and e.id not in accepted_ids]
        key = frozenset(s.channels)
        assert stored_unanswered.setdefault(key, extras) == extras, (k, extras, stored_unanswered[key])
        got = [(e.id, e.data) for e in s.events if (e.id, e.data) not in extras]
        assert got == want, 'subscriber %d %s: %d of %d events, first difference at %s' % (
            k, sorted(s.channels), len(got), len(want),
            next((j for j, (x, y) in enumerate(zip(got, want)) if x != y),
                 min(len(got), len(want))))
        assert not s.resets, (k, [e.data for e in s.resets])
        # connections a killed child had accepted or queued are reset; the
        # client reconnects, as EventSource does: nothing else may fail
        assert not [f for f in s.failures if not KILLED_CONNECTION.search(f)], s.failures
    print('crash-in-lock: %d kills (%s), %d accepted, %d refused by kills, %d subscribers, '
          '%d reconnects; %d stored but unanswered' % (
              kills, ', '.join(sorted(set(POINTS))), len(pub.accepted), pub.errors, len(subs),
              killed_streams, len(set().union(*stored_unanswered.values()))))
