"""Browsers on other sites: the admin API refuses their pages (Origin,
Sec-Fetch-Site) and DNS-rebound host names, while curl and app servers keep
working; CORS answers for streams go only to listed origins; mod_sse's own
event types cannot be forged."""
import pytest

from sse_env import SseStream, raw_request, uniq

LOCATIONS = """
<VirtualHost 127.0.0.1:{port}>
ServerName 127.0.0.1
ServerAlias push.example
<Location /events>
    SetHandler sse-stream
</Location>
<Location /cors>
    SetHandler sse-stream
    SSECorsOrigins https://app.example http://App.Example:8080 http://plain.example:80
</Location>
<Location /cors-any>
    SetHandler sse-stream
    SSECorsOrigins *
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1
</Location>
<Location /admin-dash>
    SetHandler sse-admin
    Require ip 127.0.0.1
    SSECorsOrigins https://dash.example
</Location>
</VirtualHost>
"""


@pytest.fixture(scope='module')
def web(module_factory):
    srv = module_factory.create('origins')
    srv.locations = LOCATIONS.format(port=srv.port)
    srv.write_config()
    return srv.start()


def publish(srv, path, headers):
    return srv.request('POST', path, data='x', headers=headers)


# curl and app servers send no Origin: publishing works as before
def test_publish_without_origin(web):
    r = publish(web, '/sse-admin/channels/%s' % uniq('ok'), {})
    assert r.status_code == 201


# a page on another site cannot publish with a simple form POST (no preflight)
@pytest.mark.parametrize('headers', [
    {'Origin': 'http://evil.example', 'Content-Type': 'text/plain'},
    {'Origin': 'http://evil.example', 'Content-Type': 'application/x-www-form-urlencoded'},
    {'Origin': 'null'},
    {'Sec-Fetch-Site': 'cross-site'},
    {'Sec-Fetch-Site': 'same-site'},
    {'Sec-Fetch-Site': 'cross-site', 'Origin': 'http://evil.example'},
])
def test_cross_site_publish_refused(web, headers):
    ch = uniq('xsite')
    r = publish(web, '/sse-admin/channels/%s' % ch, headers)
    assert r.status_code == 403, (headers, r.status_code, r.text)
    assert r.headers['Content-Type'] == 'application/json'
    assert 'SSECorsOrigins' in r.json()['error']
    assert web.channel(ch) is None
    assert 'Access-Control-Allow-Origin' not in r.headers


# the same origin (a page served by this server) and same-origin fetch metadata may publish
def test_same_origin_publish_allowed(web):
    own = 'http://127.0.0.1:%d' % web.port
    for headers in ({'Origin': own}, {'Sec-Fetch-Site': 'same-origin', 'Origin': own},
                    {'Sec-Fetch-Site': 'none'}):
        r = publish(web, '/sse-admin/channels/%s' % uniq('same'), headers)
        assert r.status_code == 201, (headers, r.text)


# DNS rebinding: a Host that is not a name of this server is refused, for every method
@pytest.mark.parametrize('method', ['GET', 'POST', 'DELETE'])
def test_foreign_host_refused(web, method):
    ch = uniq('rebind')
    web.pub(ch, 'x')
    req = ('%s /sse-admin/channels/%s HTTP/1.1\r\nHost: evil.example:%d\r\n'
           'Content-Length: 1\r\nConnection: close\r\n\r\nx' % (method, ch, web.port)).encode()
    out = raw_request(web.port, req)
    assert out.startswith(b'HTTP/1.1 403'), out[:200]
    assert b'is not a name of this server' in out
    assert web.channel(ch)['messages'] == 1


# the server's own names (ServerName, ServerAlias, localhost, IP literals) pass
@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost', 'push.example', '[::1]'])
def test_own_host_names_allowed(web, host):
    req = ('GET /sse-admin/status HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n'
           % (host, web.port)).encode()
    out = raw_request(web.port, req)
    assert out.startswith(b'HTTP/1.1 200'), (host, out[:200])


# an admin dashboard on a listed origin may call the API, with CORS answers and a preflight
def test_listed_origin_may_use_admin(web):
    ch = uniq('dash')
    r = publish(web, '/admin-dash/channels/%s' % ch, {'Origin': 'https://dash.example'})
    assert r.status_code == 201
    assert r.headers['Access-Control-Allow-Origin'] == 'https://dash.example'
    assert r.headers['Access-Control-Allow-Credentials'] == 'true'
    r = web.request('OPTIONS', '/admin-dash/channels/%s' % ch,
                    headers={'Origin': 'https://dash.example',
                             'Access-Control-Request-Method': 'DELETE',
                             'Access-Control-Request-Headers': 'content-type'})
    assert r.status_code == 204
    assert 'DELETE' in r.headers['Access-Control-Allow-Methods']
    assert 'Content-Type' in r.headers['Access-Control-Allow-Headers']
    r = publish(web, '/admin-dash/channels/%s' % ch, {'Origin': 'https://evil.example'})
    assert r.status_code == 403


# streams: listed origins get CORS headers, with credentials only when named
@pytest.mark.parametrize('path,origin,allow,creds', [
    ('/cors/x', 'https://app.example', 'https://app.example', 'true'),
    ('/cors/x', 'https://APP.example:443', 'https://APP.example:443', 'true'),
    ('/cors/x', 'http://app.example:8080', 'http://app.example:8080', 'true'),
    ('/cors/x', 'http://plain.example', 'http://plain.example', 'true'),
    ('/cors/x', 'https://evil.example', None, None),
    ('/cors/x', 'http://app.example', None, None),
    ('/cors-any/x', 'https://anyone.example', '*', None),
    ('/events/x', 'https://app.example', None, None),
])
def test_stream_cors_headers(web, path, origin, allow, creds):
    s = SseStream(web.port, path, headers={'Origin': origin})
    assert s.status == 200
    assert s.headers.get('Access-Control-Allow-Origin') == allow
    assert s.headers.get('Access-Control-Allow-Credentials') == creds
    if allow:
        assert 'Origin' in s.headers['Vary']
    s.close()


# the preflight a browser sends to resume cross-origin with Last-Event-ID
def test_stream_preflight(web):
    r = web.request('OPTIONS', '/cors/x', headers={
        'Origin': 'https://app.example', 'Access-Control-Request-Method': 'GET',
        'Access-Control-Request-Headers': 'last-event-id'})
    assert r.status_code == 204, r.text
    assert r.headers['Access-Control-Allow-Origin'] == 'https://app.example'
    assert r.headers['Access-Control-Allow-Credentials'] == 'true'
    assert 'Last-Event-ID' in r.headers['Access-Control-Allow-Headers']
    assert r.headers['Access-Control-Allow-Methods'] == 'GET'
    r = web.request('OPTIONS', '/cors/x', headers={
        'Origin': 'https://evil.example', 'Access-Control-Request-Method': 'GET'})
    assert 'Access-Control-Allow-Origin' not in r.headers
    assert r.status_code == 405


# SSECorsOrigins takes origins only: configtest says what is wrong
@pytest.mark.parametrize('value', ['https://app.example/', 'app.example', 'ftp://x.example',
                                   'https://a.example/path'])
def test_bad_cors_origin_refused_by_configtest(module_factory, value):
    srv = module_factory.create('badcors', locations='<Location /c>\nSetHandler sse-stream\n'
                                'SSECorsOrigins %s\n</Location>\n' % value)
    r = srv.configtest()
    assert r.returncode != 0
    assert "SSECorsOrigins: '%s' is not an origin" % value in r.stderr, r.stderr


# event types starting with sse- are mod_sse's own (sse-reset): publishers get 400
@pytest.mark.parametrize('how', ['query', 'header', 'json', 'batch'])
def test_reserved_event_types_refused(web, how):
    ch = uniq('reserved')
    path = '/sse-admin/channels/%s' % ch
    if how == 'query':
        r = web.request('POST', path + '?event=sse-reset', data='{}')
    elif how == 'header':
        r = web.request('POST', path, data='{}', headers={'SSE-Event': 'sse-anything'})
    elif how == 'json':
        r = web.publish(ch, json_body={'event': 'sse-reset', 'data': {'reason': 'expired'}})
    else:
        r = web.publish(ch, json_body=[{'data': 'a'}, {'event': 'sse-reset', 'data': 'b'}])
    assert r.status_code == 400, r.text
    assert 'reserved' in r.json()['error']
    assert web.channel(ch) is None
    assert web.pub(ch, 'fine', event='ssereset')['id']


# a listed page can read why its stream was refused: errors carry the CORS
# headers too, whichever step refused
@pytest.mark.parametrize('method,path,status', [
    ('POST', '/cors/x', 405),
    ('GET', '/cors/' + 'a' * 129, 400),
    ('GET', '/cors', 400),
])
def test_stream_errors_carry_cors_headers(web, method, path, status):
    r = web.request(method, path, headers={'Origin': 'https://app.example',
                                           'Accept': 'text/event-stream'}, data=b'')
    assert r.status_code == status, r.text
    assert r.headers.get('Access-Control-Allow-Origin') == 'https://app.example'
    assert r.headers['Vary'] == 'Origin'
    r = web.request(method, path, headers={'Origin': 'https://evil.example'}, data=b'')
    assert r.status_code == status
    assert 'Access-Control-Allow-Origin' not in r.headers
