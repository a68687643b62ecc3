"""Concurrency and leak guards (no timing assertions): concurrent publishers,
DELETE racing publishes, connect/close storms, children killed during a
publish storm, shared memory reuse."""
import os
import random
import signal
import socket
import threading
import time

import pytest
import requests

from sse_env import ResilientSubscriber, uniq, wait_until


class Threads:
    """Runs targets in daemon threads; an exception in one is kept and fails
    the test in join() (an assert inside a thread alone fails nothing)."""

    def __init__(self):
        self.threads = []
        self.errors = []

    def start(self, target, *args):
        def run():
            try:
                target(*args)
            except BaseException as e:   # noqa: BLE001 - reported by join()
                self.errors.append('%s%r: %r' % (target.__name__, args, e))
        t = threading.Thread(target=run, daemon=True)
        self.threads.append(t)
        t.start()

    def join(self, timeout=60):
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), 'threads did not finish'
        assert not self.errors, self.errors[:5]


def run_threads(n, target):
    threads = Threads()
    for k in range(n):
        threads.start(target, k)
    threads.join()


# concurrent publishers to one channel: every subscriber sees all events, in strictly increasing id order
def test_concurrent_publishers_keep_id_order(sse):
    ch = uniq('conc')
    streams = [sse.sub('/events/%s' % ch) for _ in range(6)]
    results = [[] for _ in range(4)]

    def publish(k):
        for i in range(50):
            r = sse.publish(ch, 'p%d-%d' % (k, i), fresh=True)
            assert r.status_code == 201, r.text
            results[k].append((r.json()['id'], 'p%d-%d' % (k, i)))
    run_threads(4, publish)
    published = sorted((x for r in results for x in r), key=lambda t: int(t[0]))
    assert len({i for i, _ in published}) == 200
    for s in streams:
        ev = s.wait_for(200, 20)
        assert [(e.id, e.data) for e in ev] == published
    # each publisher's own messages got increasing ids
    for r in results:
        assert [int(i) for i, _ in r] == sorted(int(i) for i, _ in r)
    info = sse.channel(ch)
    assert info['published'] == 200 and info['last_id'] == published[-1][0]


# concurrent JSON array publishes get consecutive id blocks that never interleave
def test_concurrent_array_publishes_are_atomic(sse):
    ch = uniq('arrc')
    s = sse.sub('/events/%s' % ch)
    blocks = []

    def publish(k):
        for i in range(10):
            data = ['b%d-%d-%d' % (k, i, j) for j in range(5)]
            r = sse.publish(ch, json_body=[{'data': d} for d in data], fresh=True)
            assert r.status_code == 201, r.text
            blocks.append(list(zip(r.json()['ids'], data)))
    run_threads(4, publish)
    assert len(blocks) == 40
    for b in blocks:
        ids = [int(i) for i, _ in b]
        assert ids == list(range(ids[0], ids[0] + 5)), b
    # every event once, in id order: the five of one request next to each other
    expected = sorted((x for b in blocks for x in b), key=lambda t: int(t[0]))
    ev = s.wait_for(200, 20)
    assert [(e.id, e.data) for e in ev] == expected


# DELETE racing publishes and subscribes on the same channel: every request gets
# its documented answer and the channel left behind holds exactly the newest
# publishes. Every DELETE is sent only after a publish sent after the previous
# DELETE's answer came back, so the channel always exists and each DELETE is 200.
def test_delete_racing_publishes(sse):
    ch = uniq('race-del')
    stop = threading.Event()
    lock = threading.Lock()
    deletes = [0]             # DELETEs answered so far
    done = {}                 # deletes seen at send -> publishes answered 201
    published = {}            # id -> (data, deletes seen at send)
    streams = []

    def publisher(k):
        i = 0
        while not stop.is_set():
            seen = deletes[0]
            data = 'p%d-%05d-' % (k, i) + 'x' * 300
            r = sse.publish(ch, data, fresh=True)
            assert r.status_code == 201, (r.status_code, r.text)
            with lock:
                published[int(r.json()['id'])] = (data, seen)
                done[seen] = done.get(seen, 0) + 1
            i += 1

    def subscriber(k):
        while not stop.is_set():
            s = sse.subscribe('/events/%s' % ch)
            assert s.status == 200, (s.status, s.body[:200])
            streams.append(s)
            s.wait_until(lambda st: st.ended or len(st.parser.events) >= 50, 1)
            s.close()

    def after_last_delete():
        n = deletes[0]
        assert wait_until(lambda: done.get(n, 0) >= 1 or threads.errors, 10), 'no publish after DELETE %d' % n
        assert not threads.errors, threads.errors[:5]

    threads = Threads()
    for k in range(2):
        threads.start(publisher, k)
        threads.start(subscriber, k)
    try:
        for _ in range(30):
            after_last_delete()
            r = sse.delete(ch)
            assert r.status_code == 200, r.text
            assert r.json()['channel'] == ch and r.json()['deleted'] is True, r.json()
            deletes[0] += 1
            time.sleep(0.02)
        after_last_delete()
    finally:
        stop.set()
        threads.join(20)
    ids = sorted(published)
    # every stream saw published events only, each once, in id order; a stream
    # the server ended was ended by a DELETE
    ended_by_delete = 0
    for s in streams:
        got = [(int(e.id), e.data) for e in s.events]
        assert all(e.event == 'message' for e in s.events), [e.event for e in s.events]
        assert [i for i, _ in got] == sorted({i for i, _ in got}), got
        assert all(published.get(i, (None,))[0] == d for i, d in got), got
        if s.clean_end:
            assert s.comments[-1:] == ['channel deleted'], s.body[-200:]
            ended_by_delete += 1
    assert ended_by_delete >= 1, 'no DELETE met an open stream in %d streams' % len(streams)
    # the channel holds the newest publishes: those sent after the last DELETE are
    # all there, and nothing older than the oldest of them is missing
    assert sse.wait_channel_subscribers(ch, 0), sse.channel(ch)
    info = sse.channel(ch)
    assert info['last_id'] == str(ids[-1]), (info, ids[-1])
    s = sse.sub('/events/%s?lastEventId=0' % ch)
    ev = s.wait_for(info['messages'] + 1, 10)
    kept = [(int(e.id), e.data) for e in ev[1:]]
    assert len(kept) == info['messages'] == info['published'], (len(kept), info)
    assert kept == [(i, published[i][0]) for i in ids[-len(kept):]]
    assert {i for i in ids if published[i][1] == deletes[0]} <= {i for i, _ in kept}
    # ... after an sse-reset telling that older history was dropped by the DELETEs
    assert (ev[0].event, int(ev[0].id)) == ('sse-reset', kept[0][0] - 1), ev[0]
    assert ev[0].json() == {'reason': 'expired', 'last_event_id': '0'}
    assert sse.wait_channel_subscribers(ch, 1), sse.channel(ch)


# connections that send a stream request and vanish at once leave no subscriber behind
def test_connect_close_storm_leaves_no_subscribers(sse):
    ch = uniq('storm')
    sse.pub(ch, 'before the storm')
    for i in range(60):
        c = socket.create_connection(('127.0.0.1', sse.port), timeout=5)
        c.sendall(('GET /events/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n' % ch).encode())
        if i % 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')  # RST
        c.close()
    assert sse.wait_channel_subscribers(ch, 0, 15), sse.channel(ch)
    s = sse.sub('/events/%s' % ch)
    assert sse.pub(ch, 'after the storm')['subscribers'] == 1
    assert [e.data for e in s.wait_for(1)] == ['after the storm']


# a client that goes away in the middle of a large replay is cleaned up
def test_disconnect_during_large_replay(sse):
    ch = uniq('bigreplay')
    for i in range(100):
        sse.pub(ch, '%03d' % i + 'r' * 60000)
    for _ in range(5):
        s = sse.subscribe('/events/%s?lastEventId=0' % ch, rcvbuf=4096, reading=False)
        assert s.status == 200
        s.close()
    assert sse.wait_channel_subscribers(ch, 0, 15), sse.channel(ch)
    s = sse.sub('/events/%s?lastEventId=0' % ch)
    ev = s.wait_for(100, 30)
    assert [e.data[:3] for e in ev] == ['%03d' % i for i in range(100)]


# the history's shared memory is reused: a channel at its history limit stops growing, DELETE gives it back
def test_shared_memory_is_reused(sse):
    base = sse.status()['shm']['used']
    ch = uniq('reuse')
    for i in range(150):
        sse.pub(ch, 'm' * 1000)
    used_150 = sse.status()['shm']['used']
    bytes_150 = sse.channel(ch)['bytes']
    for i in range(150):
        sse.pub(ch, 'm' * 1000)
    assert sse.channel(ch)['bytes'] == bytes_150
    assert sse.status()['shm']['used'] == used_150
    assert sse.delete(ch).status_code == 200
    assert sse.status()['shm']['used'] == base


# the storm below publishes at most this many messages: with SSEHistorySize above
# it, nothing is evicted, so the history and a subscriber must hold every one
STORM_MAX = 4000


# children killed with SIGKILL during a publish storm: every publish is answered
# 201 or dies with the killed child's connection; the history holds every
# answered publish, exactly once, in id order; a subscriber that resumes with
# Last-Event-ID after each kill of its child receives exactly the same
def test_children_killed_during_publish_storm(httpd_factory):
    srv = httpd_factory.start('storm', expect_children=2,
                              global_extra=['SSEHistorySize %d' % (STORM_MAX + 100)])
    srv.log_ignore.append(r'AH00052: child pid \d+ exit signal Killed')
    ch = uniq('kill')
    seed = srv.pub(ch, 'seed')
    sub = ResilientSubscriber(srv, '/events/%s' % ch, last_event_id=seed['id'])
    sub.start()
    assert srv.wait_channel_subscribers(ch, 1)
    stop = threading.Event()
    lock = threading.Lock()
    ok = {}           # id -> data, answered 201
    broken = []       # data whose connection died with a killed child (outcome unknown)

    def publisher(k):
        rng = random.Random(k)
        i = 0
        while not stop.is_set():
            with lock:
                if len(ok) + len(broken) >= STORM_MAX:
                    return
            data = 'k%d-%05d-' % (k, i) + 'k' * rng.randint(1, 3000)
            i += 1
            try:
                r = srv.publish(ch, data, fresh=True)
            except requests.ConnectionError:
                with lock:
                    broken.append(data)
                continue
            assert r.status_code == 201, (r.status_code, r.text)
            with lock:
                ok[int(r.json()['id'])] = data

    threads = Threads()
    for k in range(3):
        threads.start(publisher, k)
    killed = 0
    try:
        for _ in range(5):
            time.sleep(0.3)
            # after a kill the MPM needs about a second for a new child:
            # take the children from the same look that found one
            alive = []
            assert wait_until(lambda: alive.extend(srv.child_pids()) or alive, 10)
            os.kill(random.choice(alive), signal.SIGKILL)
            killed += 1
    finally:
        stop.set()
        threads.join(20)
    assert killed == 5 and len(ok) > 20, (killed, len(ok))
    # three publishers: a kill breaks at most the three requests in flight
    assert len(broken) <= 3 * killed, broken
    assert wait_until(srv.status_after_restart, 15)
    info = srv.channel(ch)
    # replay: every answered publish once, in id order; the only others are
    # publishes whose connection broke (a kill may land after the commit)
    s = srv.sub('/events/%s?lastEventId=0' % ch)
    ev = s.wait_for(info['messages'], 15)
    got = [(int(e.id), e.data) for e in ev]
    assert [i for i, _ in got] == sorted({i for i, _ in got}), 'ids not strictly increasing'
    assert all(e.event == 'message' for e in ev), [e.data for e in ev if e.event != 'message']
    assert got[0] == (int(seed['id']), 'seed')
    assert [(i, d) for i, d in got[1:] if i in ok] == sorted(ok.items())
    others = [d for i, d in got[1:] if i not in ok]
    assert len(set(others)) == len(others) and set(others) <= set(broken), others
    assert len(got) == info['messages'] == info['published'], (len(got), info)
    assert str(got[-1][0]) == info['last_id']
    # the subscriber, resuming after every kill of its child, got exactly the same
    assert wait_until(lambda: len(sub.events) >= len(got) - 1, 15), (len(sub.events), len(got))
    sub.stop()
    assert [(int(e.id), e.data) for e in sub.events] == got[1:], sub.connections
    assert sub.resets == [] and sub.busy == 0, (sub.resets, sub.busy)
    assert set(sub.resume_headers) == {'exact'}, sub.resume_headers
    # its reconnects were refused only by the kills themselves (a new connection
    # the killed child had just taken)
    assert len(sub.failures) <= killed and all('connection closed before the response head' in f
                                               or 'ConnectionResetError' in f for f in sub.failures), sub.failures
    # publishing and subscribing still work, and memory is given back on DELETE
    r = srv.pub(ch, 'after the storm')
    assert [(e.id, e.data) for e in s.wait_for(len(got) + 1)[len(got):]] == [(r['id'], 'after the storm')]
    s.close()
    assert srv.delete(ch).status_code == 200
    st = srv.status()
    assert st['messages'] == 0 and st['shm']['used'] + st['shm']['free'] <= st['shm']['size']
    r = srv.pub(uniq('fresh'), 'y' * 5000)
    assert r['subscribers'] == 0
