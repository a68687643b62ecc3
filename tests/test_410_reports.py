"""What operators see: the SSE section of mod_status's server-status (HTML
and ?auto), Prometheus metrics at <admin>/metrics, and the request notes
%{sse-channels}n, %{sse-events}n, %{sse-bytes}n, %{sse-end}n for LogFormat.

Every figure is checked against what the test itself did on a server of its
own, so a count that is off by one fails."""
import re

import pytest

from sse_env import DEFAULT_LOCATIONS, MODULES, uniq, wait_until

REPORT_LOCATIONS = DEFAULT_LOCATIONS + """
<Location /server-status>
    SetHandler server-status
    Require ip 127.0.0.1
</Location>
<Location /quiet-threaded>
    SetHandler sse-stream
    SSEHandOff Off
    SSEKeepAlive 0
</Location>
"""
NOTES_FORMAT = '"%r" %>s sse-channels=%{sse-channels}n sse-events=%{sse-events}n ' \
               'sse-bytes=%{sse-bytes}n sse-end=%{sse-end}n'

# one sample line of the text exposition format: name{labels} value
SAMPLE = re.compile(r'^([a-z_][a-z0-9_]*)(\{[^}]*\})? (-?[0-9]+(?:\.[0-9]+)?)$')


@pytest.fixture(scope='module')
def reports(module_factory):
    srv = module_factory.start(
        'reports', expect_children=2, locations=REPORT_LOCATIONS,
        global_extra=['LoadModule status_module %s/mod_status.so' % MODULES,
                      'ExtendedStatus On',
                      'LogFormat "%s" ssenotes' % NOTES_FORMAT.replace('"', '\\"'),
                      'CustomLog logs/sse_notes_log ssenotes'])
    return srv


def auto_status(srv):
    r = srv.get('/server-status?auto')
    assert r.status_code == 200, r.text
    figures, children = {}, []
    for line in r.text.splitlines():
        if line.startswith('SSEChild: '):
            children.append(dict(kv.split('=') for kv in line[len('SSEChild: '):].split()))
        elif line.startswith('SSE'):
            k, v = line.split(': ', 1)
            assert k not in figures, 'figure %s twice' % k
            figures[k] = v
    return figures, children


def parse_metrics(text):
    """{(name, labels): value}; asserts the exposition format on the way:
    every sample's family has one HELP and one TYPE before its samples."""
    helped, typed, samples = set(), {}, {}
    for line in text.splitlines():
        if line.startswith('# HELP '):
            name = line.split()[2]
            assert name not in helped, 'HELP twice for ' + name
            helped.add(name)
        elif line.startswith('# TYPE '):
            _, _, name, kind = line.split()
            assert kind in ('gauge', 'counter'), line
            assert name in helped and name not in typed, line
            typed[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, 'not an exposition line: %r' % line
            name = m.group(1)
            assert name.startswith('sse_'), line
            assert name in typed, 'sample before its TYPE: %r' % line
            if typed[name] == 'counter':
                assert name.endswith('_total'), line
            key = (name, m.group(2) or '')
            assert key not in samples, 'sample twice: %r' % line
            samples[key] = int(m.group(3))
    return samples


def metrics(srv):
    r = srv.get('/sse-admin/metrics')
    assert r.status_code == 200, r.text
    assert r.headers['Content-Type'] == 'text/plain; version=0.0.4; charset=utf-8'
    return parse_metrics(r.text)


# server-status and metrics both show exactly what one scenario did: channels,
# streams by who serves them, published, delivered, rejected, busy, per child
def test_status_and_metrics_count_one_scenario(reports):
    before_f, _ = auto_status(reports)
    before_m = metrics(reports)
    a, b = uniq('rep-a'), uniq('rep-b')
    writer = reports.sub('/events/%s' % a)
    threaded = reports.sub('/threaded/%s' % a)
    assert reports.wait_channel_subscribers(a, 2)
    for i in range(3):
        reports.pub(a, 'event %d' % i)
    reports.pub(b, 'lonely')
    bad = reports.publish(b, '{not json', headers={'Content-Type': 'application/json'})
    assert bad.status_code == 400
    assert len(writer.wait_for(3)) == 3 and len(threaded.wait_for(3)) == 3

    def settled():
        f, _ = auto_status(reports)
        return int(f['SSEDelivered']) - int(before_f['SSEDelivered']) == 6
    assert wait_until(settled), auto_status(reports)
    f, kids = auto_status(reports)
    m = metrics(reports)

    def delta(key):
        return int(f[key]) - int(before_f[key])
    assert re.fullmatch(r'[0-9]+\.[0-9]+\.[0-9]+', f['SSEVersion'])
    assert (delta('SSEChannels'), delta('SSESubscribers'), delta('SSEWriterStreams'),
            delta('SSEThreadStreams'), delta('SSEPublished'), delta('SSERejected'),
            delta('SSEBusy')) == (2, 2, 1, 1, 4, 1, 0), f
    assert int(f['SSEShmUsed']) + int(f['SSEShmFree']) <= int(f['SSEShmSize'])
    assert int(f['SSEShmUsed']) > 0 and int(f['SSEMessages']) >= 4
    # per child: the running children, and their streams add up
    assert int(f['SSEChildren']) == len(kids)
    assert {int(k['pid']) for k in kids} == set(reports.child_pids())
    assert sum(int(k['subscribers']) for k in kids) == int(f['SSESubscribers'])
    assert sum(int(k['writer_streams']) for k in kids) == int(f['SSEWriterStreams'])
    assert sum(int(k['thread_streams']) for k in kids) == int(f['SSEThreadStreams'])

    def mdelta(key):
        return m[key] - before_m.get(key, 0)
    assert (mdelta(('sse_channels', '')), mdelta(('sse_subscribers', '')),
            mdelta(('sse_streams', '{served_by="writer"}')),
            mdelta(('sse_streams', '{served_by="thread"}')),
            mdelta(('sse_published_total', '')), mdelta(('sse_delivered_total', '')),
            mdelta(('sse_rejected_total', ''))) == (2, 2, 1, 1, 4, 6, 1), m
    assert sum(m[('sse_busy_total', '{reason="%s"}' % why)]
               for why in ('server', 'channel', 'client', 'table')) == int(f['SSEBusy'])
    assert m[('sse_channel_subscribers', '{channel="%s"}' % a)] == 2
    assert m[('sse_channel_published_total', '{channel="%s"}' % a)] == 3
    assert m[('sse_channel_published_total', '{channel="%s"}' % b)] == 1
    assert m[('sse_last_event_id', '')] == int(reports.channel(b)['last_id'])
    pids = set(reports.child_pids())
    for pid in pids:
        for served in ('writer', 'thread'):
            assert ('sse_child_streams', '{pid="%d",served_by="%s"}' % (pid, served)) in m
    assert sum(v for (n, _), v in m.items() if n == 'sse_child_subscribers') == \
        m[('sse_subscribers', '')]

    # the HTML page has the same section, as the status shows it now
    html = reports.get('/server-status').text
    assert '<h2>SSE (mod_sse %s)</h2>' % f['SSEVersion'] in html
    assert '<tr><th align="left">Subscribers</th><td>%s of %s</td></tr>' % (
        f['SSESubscribers'], f['SSEMaxSubscribers']) in html
    assert '<tr><th align="left">Streams on threads</th><td>%s</td></tr>' % (
        f['SSEThreadStreams']) in html

    writer.close()
    threaded.close()
    assert wait_until(lambda: auto_status(reports)[0]['SSESubscribers'] == before_f['SSESubscribers'])


# the metrics name at most 20 channels, busiest (most subscribers) first
def test_metrics_list_at_most_20_busiest_channels(reports):
    busy = uniq('rep-busy')
    streams = [reports.sub('/events/%s' % busy) for _ in range(3)]
    for i in range(25):
        reports.pub(uniq('rep-many%d' % i), 'x')
    assert reports.wait_channel_subscribers(busy, 3)
    r = reports.get('/sse-admin/metrics')
    named = [line for line in r.text.splitlines()
             if line.startswith('sse_channel_subscribers{')]
    assert len(named) == 20, named
    assert named[0] == 'sse_channel_subscribers{channel="%s"} 3' % busy
    published = [line for line in r.text.splitlines()
                 if line.startswith('sse_channel_published_total{')]
    assert len(published) == 20
    for s in streams:
        s.close()


# the metrics are an admin resource: GET only, and refused where the admin API is
def test_metrics_method_and_access(reports):
    r = reports.request('POST', '/sse-admin/metrics', data=b'x')
    assert r.status_code == 405 and r.headers['Allow'] == 'GET', (r.status_code, r.headers)
    assert r.json()['status'] == 405
    r = reports.get('/sse-admin-denied/metrics')
    assert r.status_code == 403
    assert 'sse_' not in r.text


def notes_lines(srv, marker):
    path = srv.dir / 'logs' / 'sse_notes_log'
    return [line for line in path.read_text().splitlines() if marker in line]


# a stream on a thread logs its channels, events and bytes when it ends (here
# by a DELETE, so that the client has read every byte the server counted);
# a handed-off stream logs at hand-off what went out on the thread
def test_log_notes_for_streams_and_publishes(reports):
    a, b = uniq('note-a'), uniq('note-b')
    threaded = reports.sub('/quiet-threaded?channel=%s,%s' % (a, b))
    handed = reports.sub('/quiet/%s' % a)
    ids = [reports.pub(a, 'n%d' % i)['id'] for i in range(2)]
    batch = reports.publish(b, json_body=[{'data': 'x'}, {'data': 'y'}, {'data': 'z'}])
    assert batch.status_code == 201
    assert len(threaded.wait_for(5)) == 5 and len(handed.wait_for(2)) == 2
    assert reports.delete(a).status_code == 200
    assert threaded.wait_ended() and threaded.clean_end
    assert wait_until(lambda: notes_lines(reports, '/quiet-threaded?channel=%s' % a))
    [line] = notes_lines(reports, '/quiet-threaded?channel=%s' % a)
    assert line.endswith(' 200 sse-channels=%s,%s sse-events=5 sse-bytes=%d sse-end=deleted'
                         % (a, b, len(threaded.raw))), (line, len(threaded.raw))
    [line] = notes_lines(reports, '/quiet/%s ' % a)
    # logged when the writer took it: the opening, nothing delivered yet
    assert re.search(r' 200 sse-channels=%s sse-events=0 sse-bytes=[0-9]+ sse-end=handed-off$' % a,
                     line), line
    assert int(re.search(r'sse-bytes=([0-9]+)', line).group(1)) == len(b': ok\nid: \n\n') + \
        len(str(int(ids[0]) - 1))
    [line] = notes_lines(reports, '/sse-admin/channels/%s ' % b)
    assert line.endswith(' 201 sse-channels=%s sse-events=3 sse-bytes=- sse-end=-' % b), line
    assert len([line for line in notes_lines(reports, '/sse-admin/channels/%s ' % a)
                if '"POST ' in line and line.endswith(' 201 sse-channels=%s sse-events=1 '
                                                      'sse-bytes=- sse-end=-' % a)]) == 2
    handed.close()
