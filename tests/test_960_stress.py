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

from sse_env import uniq, wait_until


def run_threads(n, target):
    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


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
            body = [{'data': 'b%d-%d-%d' % (k, i, j)} for j in range(5)]
            r = sse.publish(ch, json_body=body, fresh=True)
            assert r.status_code == 201, r.text
            blocks.append([int(x) for x in r.json()['ids']])
    run_threads(4, publish)
    for b in blocks:
        assert b == list(range(b[0], b[0] + 5))
    ev = s.wait_for(200, 20)
    ids = [int(e.id) for e in ev]
    assert ids == sorted(ids) and len(set(ids)) == 200
    # the five events of one request arrive together
    for k in range(0, 200, 5):
        names = {e.data.rsplit('-', 1)[0] for e in ev[k:k + 5]}
        assert len(names) == 1, [e.data for e in ev[k:k + 5]]


# DELETE racing publishes and subscribes on the same channel crashes nothing and leaves a consistent channel
def test_delete_racing_publishes(sse):
    ch = uniq('race-del')
    stop = threading.Event()
    errors = []

    def publisher():
        while not stop.is_set():
            r = sse.publish(ch, 'x' * 300, fresh=True)
            if r.status_code not in (201,):
                errors.append(r.status_code)

    def subscriber():
        while not stop.is_set():
            try:
                s = sse.subscribe('/events/%s' % ch)
                s.wait_until(lambda st: st.ended or len(st.parser.events) >= 5, 1)
                s.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
    threads = [threading.Thread(target=publisher, daemon=True) for _ in range(2)]
    threads += [threading.Thread(target=subscriber, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deletes = 0
    for _ in range(30):
        r = sse.delete(ch)
        assert r.status_code in (200, 404), r.text
        deletes += r.status_code == 200
        time.sleep(0.03)
    stop.set()
    for t in threads:
        t.join(20)
    assert not errors, errors[:5]
    assert deletes > 0
    info = sse.channel(ch)
    if info is not None:
        assert info['messages'] <= 100
        s = sse.sub('/events/%s?lastEventId=0' % ch)
        # history was dropped by DELETEs: an sse-reset 'expired' may come first
        s.wait_for(info['messages'] + 1, 3)
        ev = s.data_events()
        assert all(e.json()['reason'] == 'expired' for e in s.events if e.event == 'sse-reset')
        assert len(ev) == info['messages'] and (not ev or ev[-1].id == info['last_id'])
    assert sse.wait_channel_subscribers(ch, 1 if info is not None else 0, 10) or sse.channel(ch) is None


# connections that send a stream request and vanish at once leave no subscriber behind
def test_connect_close_storm_leaves_no_subscribers(sse):
    ch = uniq('storm')
    for i in range(60):
        c = socket.create_connection(('127.0.0.1', sse.port), timeout=5)
        c.sendall(('GET /events/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n' % ch).encode())
        if i % 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')  # RST
        c.close()
    assert wait_until(lambda: (sse.channel(ch) or {'subscribers': 0})['subscribers'] == 0, 15), sse.channel(ch)
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
    assert sse.status()['shm']['used'] <= base


# children killed with SIGKILL during a publish storm: the store stays consistent and the server keeps working
def test_children_killed_during_publish_storm(httpd_factory):
    srv = httpd_factory.start('storm', expect_children=2)
    srv.log_ignore.append(r'AH00052: child pid \d+ exit signal Killed')
    ch = uniq('kill')
    stop = threading.Event()
    ok_ids = []

    def publisher():
        while not stop.is_set():
            try:
                r = srv.publish(ch, 'k' * random.randint(1, 3000), fresh=True)
                if r.status_code == 201:
                    ok_ids.append(int(r.json()['id']))
            except Exception:   # noqa: BLE001 - connections of killed children break
                pass
    threads = [threading.Thread(target=publisher, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    killed = 0
    try:
        for _ in range(5):
            assert wait_until(lambda: len(srv.child_pids()) >= 1, 10)
            time.sleep(0.3)
            pids = srv.child_pids()
            os.kill(random.choice(pids), signal.SIGKILL)
            killed += 1
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert killed == 5 and len(ok_ids) > 20
    assert wait_until(lambda: srv.get('/sse-admin/status').status_code == 200, 15)
    info = srv.channel(ch)
    assert info['published'] >= len(ok_ids)
    assert info['messages'] == min(100, info['published'])
    # replay is consistent: strictly increasing ids ending at last_id
    s = srv.sub('/events/%s?lastEventId=0' % ch)
    # when more than 100 were published, an sse-reset 'expired' comes first
    rolled = info['published'] > info['messages']
    all_ev = s.wait_for(info['messages'] + rolled, 15)
    if rolled:
        assert all_ev[0].event == 'sse-reset' and all_ev[0].json()['reason'] == 'expired'
    ev = all_ev[1:] if rolled else all_ev
    ids = [int(e.id) for e in ev]
    assert len(ids) == info['messages'] and ids == sorted(set(ids)) and str(ids[-1]) == info['last_id']
    assert all(set(e.data) == {'k'} for e in ev)
    assert set(ok_ids[-50:]) & set(ids)
    # publishing and subscribing still work, and memory is given back on DELETE
    r = srv.pub(ch, 'after the storm')
    assert [e.id for e in s.wait_for(len(all_ev) + 1)[-1:]] == [r['id']]
    s.close()
    assert srv.delete(ch).status_code == 200
    st = srv.status()
    assert st['messages'] == 0 and st['shm']['used'] + st['shm']['free'] <= st['shm']['size']
    r = srv.pub(uniq('fresh'), 'y' * 5000)
    assert r['subscribers'] == 0
