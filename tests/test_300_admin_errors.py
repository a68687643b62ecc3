"""Bad input on the admin API: the documented status, a JSON error body, and
nothing changed (channel counters, subscribers' streams)."""
import json

import pytest

from sse_env import SseStream, uniq


def assert_json_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers.get('Content-Type', '').startswith('application/json'), r.headers
    j = r.json()
    assert isinstance(j.get('error'), str) and j['error'], j
    assert j.get('status') == status, j
    return j


@pytest.fixture
def seeded(sse):
    """A channel with one message and one subscriber; yields (channel, stream, before)."""
    ch = uniq('bad')
    seed = sse.pub(ch, 'seed')
    s = sse.sub('/events/%s' % ch)
    before = sse.channel(ch)
    assert before['published'] == 1 and before['last_id'] == seed['id']
    yield ch, s, before
    # nothing reached the subscriber; a good publish still works afterwards
    after = sse.channel(ch)
    assert after == before, 'a refused request changed the channel'
    r = sse.pub(ch, 'good after bad')
    ev = s.wait_for(1)
    assert [(e.id, e.data) for e in ev] == [(r['id'], 'good after bad')], ev


def rejected(sse):
    return sse.status()['rejected']


BIG = 'x' * 65537
PUBLISH_REJECTS = [
    ('body-65537', dict(data=b'y' * 65537), 413),
    ('json-envelope-data-65537', dict(json_body={'data': BIG}), 413),
    ('json-body-over-8x', dict(json_body=[{'data': 'z' * 60000}] * 9), 413),
    ('json-array-one-too-big', dict(json_body=[{'data': 'ok'}, {'data': BIG}]), 413),
    ('event-lf', dict(data=b'x', event='a\nb'), 400),
    ('event-cr', dict(data=b'x', event='a\rb'), 400),
    ('event-nul', dict(data=b'x', event='a\0b'), 400),
    ('event-not-utf8', dict(data=b'x', event=b'\xff\xfe'), 400),
    ('retry-12a', dict(data=b'x', retry='12a'), 400),
    ('retry-minus-1', dict(data=b'x', retry='-1'), 400),
    ('retry-decimal', dict(data=b'x', retry='1.5'), 400),
    ('retry-header-12a', dict(data=b'x', headers={'SSE-Retry': '12a'}), 400),
    ('retry-header-minus-1', dict(data=b'x', headers={'SSE-Retry': '-1'}), 400),
    ('body-invalid-utf8', dict(data=b'abc\xff'), 400),
    ('body-truncated-utf8', dict(data=b'\xc3('), 400),
    ('body-overlong-utf8', dict(data=b'\xc0\xaf'), 400),
    ('body-surrogate-utf8', dict(data=b'\xed\xa0\x80'), 400),
    ('json-malformed', dict(data=b'{"data":', headers={'Content-Type': 'application/json'}), 400),
    ('json-not-json', dict(data=b'not json', headers={'Content-Type': 'application/json'}), 400),
    ('json-trailing-garbage', dict(data=b'{"data":"x"} x', headers={'Content-Type': 'application/json'}), 400),
    ('json-empty-body', dict(data=b'', headers={'Content-Type': 'application/json'}), 400),
    ('json-key-id', dict(json_body={'data': 'x', 'id': '5'}), 400),
    ('json-key-unknown', dict(json_body={'data': 'x', 'foo': 1}), 400),
    ('json-missing-data', dict(json_body={'event': 'x'}), 400),
    ('json-event-not-string', dict(json_body={'data': 'x', 'event': 5}), 400),
    ('json-event-lf', dict(json_body={'data': 'x', 'event': 'a\nb'}), 400),
    ('json-retry-negative', dict(json_body={'data': 'x', 'retry': -5}), 400),
    ('json-retry-fraction', dict(json_body={'data': 'x', 'retry': 1.5}), 400),
    ('json-retry-bad-string', dict(json_body={'data': 'x', 'retry': '12a'}), 400),
    ('json-top-level-string', dict(json_body='x'), 400),
    ('json-top-level-number', dict(json_body=5), 400),
    ('json-lone-surrogate', dict(data=b'{"data":"\\ud800"}', headers={'Content-Type': 'application/json'}), 400),
    ('json-array-one-bad', dict(json_body=[{'data': 'one'}, {'data': 'two', 'id': '9'}]), 400),
    ('json-array-one-not-object', dict(json_body=[{'data': 'one'}, 'two']), 400),
]


# each bad publish is refused with its status and JSON error, counted as rejected, and changes nothing
@pytest.mark.parametrize('name,kw,status', PUBLISH_REJECTS, ids=[p[0] for p in PUBLISH_REJECTS])
def test_bad_publish_refused(sse, seeded, name, kw, status):
    ch, stream, before = seeded
    rej = rejected(sse)
    r = sse.publish(ch, fresh=True, **kw)
    assert_json_error(r, status)
    assert rejected(sse) == rej + 1
    assert sse.channel(ch) == before
    assert stream.events == []


BAD_NAMES = ['a b', 'c' * 129, '\u00e9', 'a<b', 'semi;colon']


# a bad channel name in an admin path is 400 for POST, GET and DELETE and creates nothing
@pytest.mark.parametrize('name', BAD_NAMES, ids=['space', '129-bytes', 'non-ascii', 'angle', 'semicolon'])
@pytest.mark.parametrize('method', ['POST', 'GET', 'DELETE'])
def test_bad_channel_name_in_admin_path(sse, name, method):
    channels = sse.status()['channels']
    r = sse.request(method, sse.channel_path(name), data=b'x' if method == 'POST' else None)
    assert_json_error(r, 400)
    assert sse.status()['channels'] == channels


# GET and DELETE of an unknown channel are 404 JSON
@pytest.mark.parametrize('method', ['GET', 'DELETE'])
def test_unknown_channel_404(sse, method):
    ch = uniq('nochan')
    r = sse.request(method, sse.channel_path(ch))
    assert_json_error(r, 404)
    assert sse.channel(ch) is None


# an unknown admin path is 404 JSON
@pytest.mark.parametrize('path', ['/sse-admin/nope', '/sse-admin/status/extra', '/sse-admin/channelsx'])
def test_unknown_admin_path_404(sse, path):
    assert_json_error(sse.get(path), 404)


# a method not allowed for an admin path is 405 JSON with the right Allow header
@pytest.mark.parametrize('method,path,allowed', [
    ('PUT', '/sse-admin/status', 'GET'),
    ('POST', '/sse-admin/status', 'GET'),
    ('DELETE', '/sse-admin/status', 'GET'),
    ('POST', '/sse-admin/channels', 'GET'),
    ('POST', '/sse-admin/metrics', 'GET'),
    ('PUT', '/sse-admin/channels/CHANNEL', 'GET, POST, DELETE'),
    ('PATCH', '/sse-admin/channels/CHANNEL', 'GET, POST, DELETE'),
])
def test_admin_wrong_method_405(sse, method, path, allowed):
    ch = uniq('m405')
    sse.pub(ch, 'x')
    before = sse.channel(ch)
    r = sse.request(method, path.replace('CHANNEL', ch), data=b'payload')
    assert_json_error(r, 405)
    # exactly once: requests joins repeated headers with ", "
    assert r.headers.get('Allow') == allowed, r.headers
    assert sse.channel(ch) == before


# the admin location behind 'Require ip 10.255.255.1' answers 403 and publishes nothing
def test_admin_access_denied_403(sse):
    assert sse.get('/sse-admin-denied/status').status_code == 403
    ch = uniq('deny')
    r = sse.request('POST', '/sse-admin-denied/channels/%s' % ch, data=b'x')
    assert r.status_code == 403
    assert sse.channel(ch) is None
