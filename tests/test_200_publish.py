"""Publishing through the admin API and the exact event format subscribers see."""
import json
import re
import time

import pytest

from sse_env import uniq

SESSION_START_US = int(time.time() * 1e6)


def only_event(stream, n=1):
    ev = stream.wait_for(n)
    assert len(ev) == n, 'expected %d event(s), got %r; body %r' % (n, ev, stream.body[-300:])
    return ev[-1]


# a plain body publish answers 201 JSON {channel, id, subscribers}
def test_publish_reply_shape(sse):
    ch = uniq('pub')
    r = sse.publish(ch, 'hello')
    assert r.status_code == 201, r.text
    assert r.headers['Content-Type'].startswith('application/json')
    j = r.json()
    assert set(j) == {'channel', 'id', 'subscribers'}
    assert j['channel'] == ch
    assert isinstance(j['id'], str) and re.fullmatch(r'[0-9]+', j['id']), j
    assert j['subscribers'] == 0


# 'subscribers' in the reply equals the number of connected subscribers
def test_publish_reports_subscriber_count(sse):
    ch = uniq('cnt')
    streams = []
    for n in range(1, 4):
        streams.append(sse.sub('/events/%s' % ch))
        assert sse.pub(ch, 'n=%d' % n)['subscribers'] == n
    for i, s in enumerate(streams):
        assert [e.data for e in s.wait_for(3 - i)] == ['n=%d' % k for k in range(i + 1, 4)]


# subscribers see exactly the id the publish reply announced, in an exact byte layout
def test_event_id_and_golden_bytes(sse):
    ch = uniq('gold')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, 'plain')
    ev = only_event(s)
    assert (ev.id, ev.id_field, ev.event, ev.data) == (r['id'], r['id'], 'message', 'plain')
    assert s.body.endswith(('id: %s\ndata: plain\n\n' % r['id']).encode()), s.body
    r2 = sse.pub(ch, '42.1', event='price')
    ev = only_event(s, 2)
    assert (ev.id, ev.event, ev.data) == (r2['id'], 'price', '42.1')
    assert s.body.endswith(('id: %s\nevent: price\ndata: 42.1\n\n' % r2['id']).encode()), s.body


# ids are decimal and begin near the current time in microseconds
def test_ids_are_time_based(sse):
    r = sse.pub(uniq('time'), 'x')
    now_us = int(time.time() * 1e6)
    assert SESSION_START_US - 3600 * 10**6 <= int(r['id']) <= now_us + 60 * 10**6, r


# event type via the query string and via the SSE-Event header
@pytest.mark.parametrize('how', ['query', 'header'])
def test_event_type(sse, how):
    ch = uniq('evt')
    s = sse.sub('/events/%s' % ch)
    if how == 'query':
        r = sse.pub(ch, 'typed', event='price.update')
    else:
        r = sse.pub(ch, 'typed', headers={'SSE-Event': 'price.update'})
    ev = only_event(s)
    assert (ev.id, ev.event, ev.data) == (r['id'], 'price.update', 'typed')


# retry via the query string and via the SSE-Retry header appears as 'retry:' in the event
@pytest.mark.parametrize('value', ['4500', '0', '03000'])
@pytest.mark.parametrize('how', ['query', 'header'])
def test_retry_field(sse, how, value):
    ch = uniq('rty')
    s = sse.sub('/events/%s' % ch)
    if how == 'query':
        r = sse.pub(ch, 'with retry', retry=value)
    else:
        r = sse.pub(ch, 'with retry', headers={'SSE-Retry': value})
    ev = only_event(s)
    assert (ev.id, ev.data, ev.retry) == (r['id'], 'with retry', int(value))
    assert re.search(rb'\nretry: 0*%d\n' % int(value), s.body), s.body[-200:]


MULTILINE = [
    ('lf', 'a\nb\nc', 'a\nb\nc', b'data: a\ndata: b\ndata: c\n\n'),
    ('cr', 'a\rb\rc', 'a\nb\nc', b'data: a\ndata: b\ndata: c\n\n'),
    ('crlf', 'a\r\nb\r\nc', 'a\nb\nc', b'data: a\ndata: b\ndata: c\n\n'),
    ('mixed', 'a\r\nb\rc\nd', 'a\nb\nc\nd', b'data: a\ndata: b\ndata: c\ndata: d\n\n'),
    ('cr-cr', 'a\r\rb', 'a\n\nb', b'data: a\ndata: \ndata: b\n\n'),
    ('trailing-lf', 'a\n', 'a\n', b'data: a\ndata: \n\n'),
    ('leading-space', ' x', ' x', b'data:  x\n\n'),
    ('colon', 'data: y', 'data: y', b'data: data: y\n\n'),
]


# multi-line data is split on LF, CR and CRLF into one data: line each
@pytest.mark.parametrize('name,body,expect,raw', MULTILINE, ids=[m[0] for m in MULTILINE])
def test_multiline_data(sse, name, body, expect, raw):
    ch = uniq('ml')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, body)
    ev = only_event(s)
    assert (ev.id, ev.data) == (r['id'], expect)
    assert s.body.endswith(('id: %s\n' % r['id']).encode() + raw), s.body[-120:]


# unicode data round-trips byte for byte
def test_unicode_roundtrip(sse):
    ch = uniq('uni')
    text = 'h\u00e9llo w\u00f6rld \u2713 \U0001F600'
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, text.encode('utf-8'))
    ev = only_event(s)
    assert (ev.id, ev.data) == (r['id'], text)
    assert ('data: ' + text + '\n\n').encode('utf-8') in s.body
    r = sse.pub(ch, 'uni', event='\u00e9v\u00e9nement')
    ev = only_event(s, 2)
    assert (ev.id, ev.event) == (r['id'], '\u00e9v\u00e9nement')


# an empty body publishes an event with empty data
def test_empty_body_publishes_empty_data(sse):
    ch = uniq('empty')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, b'')
    ev = only_event(s)
    assert (ev.id, ev.data, ev.event) == (r['id'], '', 'message')


# a JSON envelope with string data sends the string as is, with its event type
def test_json_envelope_string(sse):
    ch = uniq('js')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, json_body={'event': 'price', 'data': 'line1\nline2 "quoted" \u00e9'})
    assert set(r) == {'channel', 'id', 'subscribers'} and r['subscribers'] == 1
    ev = only_event(s)
    assert (ev.id, ev.event, ev.data) == (r['id'], 'price', 'line1\nline2 "quoted" \u00e9')


# a JSON envelope with non-string data sends its JSON text
@pytest.mark.parametrize('value', [{'eur': 1.08, 'n': [1, 2, {'x': None}]}, [1, 'two', True], 42, False])
def test_json_envelope_non_string(sse, value):
    ch = uniq('jo')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, json_body={'data': value})
    ev = only_event(s)
    assert ev.id == r['id'] and ev.event == 'message'
    assert '\n' not in ev.data
    assert json.loads(ev.data) == value


# a JSON envelope's retry (integer or digit string) becomes the event's retry field
@pytest.mark.parametrize('retry', [5000, '7000', 0])
def test_json_envelope_retry(sse, retry):
    ch = uniq('jr')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, json_body={'data': 'r', 'retry': retry, 'event': 'x'})
    ev = only_event(s)
    assert (ev.id, ev.data, ev.event, ev.retry) == (r['id'], 'r', 'x', int(retry))


# a JSON array publishes in order with consecutive ids and answers 'ids'
def test_json_array(sse):
    ch = uniq('arr')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, json_body=[{'data': 'one'}, {'data': 'two', 'event': 'x'}, {'data': {'three': 3}}])
    assert set(r) == {'channel', 'ids', 'subscribers'}, r
    assert r['channel'] == ch and r['subscribers'] == 1
    ids = [int(i) for i in r['ids']]
    assert all(isinstance(i, str) for i in r['ids'])
    assert ids == list(range(ids[0], ids[0] + 3))
    ev = s.wait_for(3)
    assert [(e.id, e.event, e.data) for e in ev[:2]] == [(r['ids'][0], 'message', 'one'),
                                                          (r['ids'][1], 'x', 'two')]
    assert ev[2].id == r['ids'][2] and json.loads(ev[2].data) == {'three': 3}
    info = sse.channel(ch)
    assert info['published'] == 3 and info['last_id'] == r['ids'][2]


# a JSON array of one envelope is still an array: the README names 'ids' as the answer for an array
def test_json_array_of_one_answers_ids(sse):
    ch = uniq('arr1')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, json_body=[{'data': 'only'}])
    assert set(r) == {'channel', 'ids', 'subscribers'}, r
    assert [(e.id, e.data) for e in s.wait_for(1)] == [(r['ids'][0], 'only')]


# ids strictly increase across different channels
def test_ids_increase_across_channels(sse):
    chans = [uniq('inc') for _ in range(3)]
    ids = [int(sse.pub(chans[i % 3], str(i))['id']) for i in range(15)]
    assert all(b > a for a, b in zip(ids, ids[1:])), ids


# exactly SSEMaxMessageSize bytes (64K) is accepted and delivered whole
def test_max_size_message_accepted(sse):
    ch = uniq('big')
    s = sse.sub('/events/%s' % ch)
    data = ('0123456789abcdef' * 4096).encode()
    assert len(data) == 65536
    r = sse.pub(ch, data)
    ev = only_event(s)
    assert ev.id == r['id'] and ev.data == data.decode()


# data containing NUL (valid UTF-8) is delivered as is
def test_data_with_nul(sse):
    ch = uniq('nul')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, b'a\x00b')
    ev = only_event(s)
    assert (ev.id, ev.data) == (r['id'], 'a\x00b')


# a JSON body larger than SSEMaxMessageSize but within 8x is accepted
def test_json_body_within_8x_accepted(sse):
    ch = uniq('jbig')
    s = sse.sub('/events/%s' % ch)
    items = [{'data': chr(ord('a') + i) * 60000} for i in range(5)]
    r = sse.pub(ch, json_body=items)
    ev = s.wait_for(5)
    assert [(e.id, e.data) for e in ev] == list(zip(r['ids'], [it['data'] for it in items]))


# JSON string escapes (\\n, \\u00e9, surrogate pairs, \\/) decode to the right data
def test_json_escapes(sse):
    ch = uniq('esc')
    s = sse.sub('/events/%s' % ch)
    body = b'{"data":"a\\nb \\u00e9 \\ud83d\\ude00 \\/ \\"q\\" \\\\ \\t"}'
    r = sse.pub(ch, body, headers={'Content-Type': 'application/json'})
    ev = only_event(s)
    assert (ev.id, ev.data) == (r['id'], 'a\nb \u00e9 \U0001F600 / "q" \\ \t')


# a Content-Type with parameters is still JSON; other types are published as text
def test_content_type_handling(sse):
    ch = uniq('ctype')
    s = sse.sub('/events/%s' % ch)
    r1 = sse.pub(ch, b'{"data":"enveloped"}', headers={'Content-Type': 'application/json; charset=utf-8'})
    r2 = sse.pub(ch, b'{"data":"raw"}', headers={'Content-Type': 'text/plain'})
    r3 = sse.pub(ch, b'{"data":"form"}', headers={'Content-Type': 'application/x-www-form-urlencoded'})
    ev = s.wait_for(3)
    assert [(e.id, e.data) for e in ev] == [(r1['id'], 'enveloped'), (r2['id'], '{"data":"raw"}'),
                                            (r3['id'], '{"data":"form"}')]


# a chunked request body and an Expect: 100-continue body are read like any other
def test_chunked_and_expect_bodies(sse):
    ch = uniq('chunked')
    s = sse.sub('/events/%s' % ch)

    def gen():
        yield b'first part, '
        yield b'second part'
    r = sse.request('POST', sse.channel_path(ch), data=gen())
    assert r.status_code == 201, r.text
    big = 'e' * 5000
    r2 = sse.request('POST', sse.channel_path(ch), data=big.encode(),
                     headers={'Expect': '100-continue'})
    assert r2.status_code == 201, r2.text
    ev = s.wait_for(2)
    assert [(e.id, e.data) for e in ev] == [(r.json()['id'], 'first part, second part'),
                                            (r2.json()['id'], big)]


# a chunked body over SSEMaxMessageSize is refused with 413 as well
def test_chunked_body_too_large(sse):
    ch = uniq('chunkbig')
    sse.pub(ch, 'seed')
    before = sse.channel(ch)

    def gen():
        for _ in range(17):
            yield b'x' * 4096
    r = sse.request('POST', sse.channel_path(ch), data=gen(), headers={'Connection': 'close'})
    assert r.status_code == 413 and r.json()['status'] == 413
    assert sse.channel(ch) == before


# an empty event= is the default type
def test_empty_event_parameter(sse):
    ch = uniq('emptyev')
    s = sse.sub('/events/%s' % ch)
    r = sse.pub(ch, 'x', event='')
    ev = only_event(s)
    assert (ev.id, ev.event, ev.data) == (r['id'], 'message', 'x')


# Nesting limit of a JSON envelope's data (README: "JSON may nest 64 arrays and
# objects deep"; sse_json.c, ENVELOPE_DATA_MAX_DEPTH). Only arrays and objects
# count, starting with the data value itself; the envelope object and a batch
# array around it do not, and neither do scalars inside. So:
#   64 nested empty arrays               -> 201
#   65 nested empty arrays               -> 400 "nested too deeply"
#   64 arrays around a 0                 -> 201
#   65 arrays around a 0                 -> 400
MAX_DEPTH = 64


def nested(depth, inner=None, kind='array'):
    """JSON text of depth nested arrays (or {"k": ...} objects). Without
    inner the innermost one is empty ('[]' or '{}'); with inner, depth
    containers hold it (so inner is one level deeper than the last)."""
    opener, closer, empty = (b'[', b']', b'[]') if kind == 'array' else (b'{"k":', b'}', b'{}')
    if inner is None:
        return opener * (depth - 1) + empty + closer * (depth - 1)
    return opener * depth + inner + closer * depth


DEPTH_OK = [
    ('arrays', nested(MAX_DEPTH)),
    ('arrays-around-scalar', nested(MAX_DEPTH, b'0')),
    ('objects', nested(MAX_DEPTH, kind='object')),
    ('objects-around-scalar', nested(MAX_DEPTH, b'0', kind='object')),
]
DEPTH_TOO_DEEP = [
    ('arrays', nested(MAX_DEPTH + 1)),
    ('arrays-around-scalar', nested(MAX_DEPTH + 1, b'0')),
    ('objects', nested(MAX_DEPTH + 1, kind='object')),
    ('objects-around-scalar', nested(MAX_DEPTH + 1, b'0', kind='object')),
    ('far-too-deep', nested(100000)),
]


def publish_json(sse, ch, body):
    return sse.publish(ch, body, headers={'Content-Type': 'application/json'}, fresh=True)


def assert_refused(r, status, words):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers['Content-Type'].startswith('application/json')
    j = r.json()
    assert set(j) == {'error', 'status'} and j['status'] == status, j
    assert words in j['error'], j


# data nested exactly to the parser's maximum depth (64) is published and arrives as its JSON text, byte for byte
@pytest.mark.parametrize('batch', [False, True], ids=['envelope', 'batch'])
@pytest.mark.parametrize('name,text', DEPTH_OK, ids=[d[0] for d in DEPTH_OK])
def test_json_data_at_max_depth_is_published(sse, name, text, batch):
    ch = uniq('deep')
    s = sse.sub('/events/%s' % ch)
    env = b'{"data":' + text + b'}'
    if batch:
        r = publish_json(sse, ch, b'[{"data":"first"},' + env + b']')
        assert r.status_code == 201, r.text
        first_id, rid = r.json()['ids']
        assert [(e.id, e.data) for e in s.wait_for(2)][:1] == [(first_id, 'first')]
        ev = only_event(s, 2)
    else:
        r = publish_json(sse, ch, env)
        assert r.status_code == 201, r.text
        rid = r.json()['id']
        ev = only_event(s)
    assert (ev.id, ev.event, ev.data) == (rid, 'message', text.decode())
    assert s.body.endswith(b'id: ' + rid.encode() + b'\ndata: ' + text + b'\n\n'), s.body[-200:]


# one level deeper than the maximum is refused with 400 naming the nesting, and changes nothing
@pytest.mark.parametrize('batch', [False, True], ids=['envelope', 'batch'])
@pytest.mark.parametrize('name,text', DEPTH_TOO_DEEP, ids=[d[0] for d in DEPTH_TOO_DEEP])
def test_json_data_too_deep_is_refused(sse, name, text, batch):
    ch = uniq('deeper')
    s = sse.sub('/events/%s' % ch)
    first = sse.pub(ch, 'before')
    before = sse.channel(ch)
    env = b'{"data":' + text + b'}'
    r = publish_json(sse, ch, b'[{"data":"ok"},' + env + b']' if batch else env)
    assert_refused(r, 400, 'nested too deeply')
    assert sse.channel(ch) == before
    last = sse.pub(ch, 'after')
    assert [(e.id, e.data) for e in s.wait_for(2)] == [(first['id'], 'before'), (last['id'], 'after')]


def padded_to(body, size):
    """body with JSON whitespace appended until it is exactly size bytes."""
    assert len(body) <= size
    return body + b' ' * (size - len(body))


JSON_BODY_LIMIT = 8 * 65536     # 8 x SSEMaxMessageSize (64K on the main server)


# the JSON body limit is 8 x SSEMaxMessageSize: a too-deep body of exactly that size is parsed (400), one byte more is 413
def test_json_body_limit_comes_before_nesting(sse):
    ch = uniq('deepbig')
    sse.pub(ch, 'seed')
    before = sse.channel(ch)
    too_deep = b'{"data":' + nested(MAX_DEPTH + 1) + b'}'
    r = publish_json(sse, ch, padded_to(too_deep, JSON_BODY_LIMIT))
    assert_refused(r, 400, 'nested too deeply')
    r = publish_json(sse, ch, padded_to(too_deep, JSON_BODY_LIMIT + 1))
    assert_refused(r, 413, 'larger than the limit of %d bytes' % JSON_BODY_LIMIT)
    # deep far beyond the limit and over the size: still 413, the parser is never reached
    depth = (JSON_BODY_LIMIT // 2) + 10
    r = publish_json(sse, ch, b'{"data":' + nested(depth) + b'}')
    assert_refused(r, 413, 'larger than the limit of %d bytes' % JSON_BODY_LIMIT)
    # a flat body over the size is 413 as well
    r = publish_json(sse, ch, padded_to(b'{"data":"flat"}', JSON_BODY_LIMIT + 1))
    assert_refused(r, 413, 'larger than the limit of %d bytes' % JSON_BODY_LIMIT)
    assert sse.channel(ch) == before
