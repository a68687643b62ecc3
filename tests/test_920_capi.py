"""The C API: mod_sse_test publishes through the optional function sse_publish."""
import re

import pytest

from sse_env import uniq


def capi(sse, **params):
    r = sse.get('/test-publish', params=params)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


# sse_publish delivers to subscribers, returns rv 0, the id and the subscriber count
def test_capi_publish_delivers(sse):
    ch = uniq('capi')
    s = sse.sub('/events/%s' % ch)
    j = capi(sse, channel=ch, data='hi', event='e')
    assert j['rv'] == 0, j
    assert re.fullmatch(r'[0-9]+', j['id']) and j['subscribers'] == 1
    ev = s.wait_for(1)
    assert [(e.id, e.event, e.data) for e in ev] == [(j['id'], 'e', 'hi')]
    info = sse.channel(ch)
    assert info['last_id'] == j['id'] and info['published'] == 1


# without an event type the event is a plain 'message'; multi-line data is split
def test_capi_default_event_and_multiline(sse):
    ch = uniq('capi2')
    s = sse.sub('/events/%s' % ch)
    j = capi(sse, channel=ch, data='a\nb\r\nc')
    assert j['rv'] == 0
    ev = s.wait_for(1)
    assert [(e.id, e.event, e.data) for e in ev] == [(j['id'], 'message', 'a\nb\nc')]
    assert ('id: %s\ndata: a\ndata: b\ndata: c\n\n' % j['id']).encode() in s.body


# ids from the C API and the admin API share one increasing sequence
def test_capi_ids_interleave_with_admin(sse):
    ch = uniq('capi3')
    a = int(sse.pub(ch, 'admin')['id'])
    b = int(capi(sse, channel=ch, data='c')['id'])
    c = int(sse.pub(ch, 'admin2')['id'])
    assert a < b < c


# the C API creates a channel that did not exist and counts no subscribers there
def test_capi_creates_channel(sse):
    ch = uniq('capi4')
    j = capi(sse, channel=ch, data='x')
    assert j['rv'] == 0 and j['subscribers'] == 0
    assert sse.channel(ch)['messages'] == 1


# bad input returns a nonzero rv (APR_EINVAL) and publishes nothing
@pytest.mark.parametrize('params', [
    {'channel': 'a b', 'data': 'x'},
    {'channel': '', 'data': 'x'},
    {'channel': 'x' * 129, 'data': 'x'},
    {'channel': 'CH', 'data': 'x', 'event': 'a\nb'},
    {'channel': 'CH', 'data': b'\xff\xfe'},
], ids=['space', 'empty', 'too-long', 'event-lf', 'bad-utf8'])
def test_capi_bad_input(sse, params):
    ch = uniq('capibad')
    sse.pub(ch, 'seed')
    before = sse.channel(ch)
    params = {k: (ch if v == 'CH' else v) for k, v in params.items()}
    j = capi(sse, **params)
    assert j['rv'] != 0, j
    assert j['rv'] == 22, 'expected APR_EINVAL (22): %r' % j
    assert sse.channel(ch) == before
