"""Bugs found in review, each reproduced against a live server: the JSON
parser's memory, the admin POST's preallocation, decoded query bytes echoed
in 400 answers, and a graceful restart onto a module with another store
layout (an upgrade)."""
import json
import os
import time

import pytest

import sse_env
from sse_env import SseStream, uniq, wait_until


def proc_kb(pid, field):
    try:
        for line in open('/proc/%d/status' % pid):
            if line.startswith(field + ':'):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_kb(srv, field):
    return {pid: proc_kb(pid, field) for pid in srv.child_pids()}


def growth_kb(before, after):
    return max([after[p] - before.get(p, after[p]) for p in after] or [0])


# 43,690 {"data":""} envelopes in 512 KB: refused with 413 (longer than the
# history), and parsing them costs memory in proportion to the body. Each
# decoded string used to get a buffer as large as the rest of the body:
# 352 MB resident in one child.
def test_json_batch_parse_memory(httpd_factory):
    srv = httpd_factory.start('jsonmem', expect_children=2)
    before = children_kb(srv, 'VmHWM')
    body = '[' + ','.join(['{"data":""}'] * 43690) + ']'
    assert len(body) <= 512 * 1024
    for _ in range(4):   # reach both children
        r = srv.publish(uniq('mem'), body.encode(), headers={'Content-Type': 'application/json'},
                        fresh=True)
        assert r.status_code == 413, r.text
        assert 'longer than SSEHistorySize' in r.json()['error']
    after = children_kb(srv, 'VmHWM')
    assert growth_kb(before, after) < 64 * 1024, (before, after)


# the admin POST allocates what the body needs, not SSEMaxMessageSize x 8
# (512 MB of address space per request at the largest setting)
def test_publish_does_not_reserve_the_limit(httpd_factory):
    srv = httpd_factory.start('prealloc', global_extra=['SSEMaxMessageSize 64M'],
                              expect_children=2)
    before = children_kb(srv, 'VmPeak')
    for _ in range(4):
        r = srv.publish(uniq('small'), json_body={'data': 'small'}, fresh=True)
        assert r.status_code == 201
        r = srv.publish(uniq('small'), b'text', fresh=True)
        assert r.status_code == 201
    after = children_kb(srv, 'VmPeak')
    assert growth_kb(before, after) < 128 * 1024, (before, after)


# 400 answers name the bad channel without echoing decoded bytes as they came
@pytest.mark.parametrize('query,shown', [
    ('channel=%3Cscript%3Ealert(1)%3C/script%3E', b"channel '?script?alert(1)?/script?'"),
    ('channel=a%0D%0AX-Injected:%201', b"channel 'a??X-Injected: 1'"),
    ('channel=' + 'x' * 200, b"channel '" + b'x' * 64 + b"...'"),
])
def test_bad_channel_not_echoed(sse, query, shown):
    s = SseStream(sse.port, '/events?' + query)
    assert s.status == 400
    body = s.read_all()
    assert shown in body, body
    assert b'<script>' not in body and b'\r\nX-Injected' not in body
    assert 'X-Injected' not in s.headers


# an upgrade: the running store was made by another mod_sse version; a
# graceful restart onto this one must not reuse it (its layout differs) but
# recreate it, say so, and keep serving
def test_graceful_restart_onto_another_store_layout(httpd_factory):
    other = sse_env.build_variant('layout99', ['SSE_TEST_STORE_LAYOUT=99'])
    srv = httpd_factory.create('upgrade')
    srv.module_so = other
    srv.write_config()
    srv.start(expect_children=2)
    ch = uniq('upgrade')
    srv.pub(ch, 'from the old version')
    assert srv.channel(ch)['messages'] == 1
    pos = srv.log_size()
    srv.module_so = sse_env.MOD_SSE
    srv.write_config()
    r = srv.apachectl('graceful')
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: 'SSE00003' in srv.read_log(pos), 15), srv.read_log(pos)
    assert 'layout changed' in srv.read_log(pos)
    assert wait_until(lambda: srv.channel(ch) is None, 15)
    s = srv.sub('/events/%s' % ch)
    srv.pub(ch, 'from the new version')
    assert [e.data for e in s.wait_for(1)] == ['from the new version']
    s.close()
