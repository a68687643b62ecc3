"""Signed tokens (SSETokenKey): HS256, RS256 and ES256 from a header, a cookie
or the authorization query parameter; every way a token can be wrong gets
401 and nothing else; a channel the token does not grant gets 403; tokens
never reach a log; an admin location can take the sse_publish claim instead
of an IP rule."""
import time

import pytest

from sse_env import SseStream, uniq, wait_until
import sse_tokens

LOCATIONS = """
# room for the oversized token: at httpd's default 8190 bytes, httpd itself
# refuses the header line (400) before mod_sse's own 8192-byte token limit
LimitRequestFieldSize 16384
<Location /tok>
    SetHandler sse-stream
    SSETokenKey HS256 keys/hs.secret
</Location>
<Location /tok-rs>
    SetHandler sse-stream
    SSETokenKey RS256 keys/rs.pub
</Location>
<Location /tok-es>
    SetHandler sse-stream
    SSETokenKey ES256 keys/ec.pub
</Location>
<Location /tok-aud>
    SetHandler sse-stream
    SSETokenKey HS256 keys/hs.secret
    SSETokenAudience push.example
</Location>
<Location /tok-cookie>
    SetHandler sse-stream
    SSETokenKey HS256 keys/hs.secret
    SSETokenCookie session_jwt
</Location>
<Location /tok-mine>
    SetHandler sse-stream
    SSETokenKey HS256 keys/hs.secret
    SSEChannel "user-%{REMOTE_USER}"
</Location>
<Location /tok-admin>
    SetHandler sse-admin
    SSETokenKey HS256 keys/hs.secret
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1
</Location>
"""

KEYFILE = {'HS256': 'hs.secret', 'RS256': 'rs.key', 'ES256': 'ec.key'}
PATH = {'HS256': '/tok', 'RS256': '/tok-rs', 'ES256': '/tok-es'}


@pytest.fixture(scope='module')
def tok(module_factory):
    srv = module_factory.create('tokens', locations=LOCATIONS)
    sse_tokens.make_keys(srv.dir / 'keys')
    srv.start()
    srv.keys = srv.dir / 'keys'
    return srv


def claims(**kw):
    c = {'sub': 'alice', 'exp': int(time.time()) + 600, 'sse_subscribe': ['news', 'prices.*']}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def token(srv, alg='HS256', key=None, header=None, **kw):
    return sse_tokens.sign(alg, srv.keys / (key or KEYFILE[alg]), claims(**kw), header)


def bearer(t):
    return {'Authorization': 'Bearer ' + t}


def open_stream(srv, path, **kw):
    s = SseStream(srv.port, path, **kw)
    if s.status == 200:
        assert s.wait_open()
    else:
        s.read_all(5)
    return s


def assert_receives(srv, s, channel):
    data = 'to %s %s' % (channel, uniq('m'))
    srv.pub(channel, data)
    assert data in [e.data for e in s.wait_for(1)]


# a valid token of each algorithm, in the Authorization header
@pytest.mark.parametrize('alg', ['HS256', 'RS256', 'ES256'])
def test_valid_token_each_algorithm(tok, alg):
    s = open_stream(tok, PATH[alg] + '/news', headers=bearer(token(tok, alg)))
    assert s.status == 200, s.body
    assert_receives(tok, s, 'news')
    s.close()


# the token from a cookie (default and configured name) and from ?authorization=
def test_token_from_cookie_and_query(tok):
    t = token(tok)
    s = open_stream(tok, '/tok/news', headers={'Cookie': 'a=b; sse_token=%s' % t})
    assert s.status == 200
    s.close()
    s = open_stream(tok, '/tok-cookie/news', headers={'Cookie': 'session_jwt=%s' % t})
    assert s.status == 200
    s.close()
    s = open_stream(tok, '/tok-cookie/news', headers={'Cookie': 'sse_token=%s' % t})
    assert s.status == 401
    s.close()
    s = open_stream(tok, '/tok/news?authorization=%s' % t)
    assert s.status == 200
    assert_receives(tok, s, 'news')
    s.close()


def bad_tokens(srv):
    now = int(time.time())
    good = token(srv)
    head, body, sig = good.split('.')
    tampered_body = sse_tokens.b64url(b'{"sub":"alice","sse_subscribe":["*"]}')
    rs_pub = srv.keys / 'rs.pub'
    return {
        'missing': None,
        'expired': token(srv, exp=now - 5),
        'not yet valid': token(srv, nbf=now + 300),
        'wrong key': token(srv, key='other.secret'),
        'wrong algorithm': token(srv, 'RS256'),
        'alg none': sse_tokens.sign('none', None, claims(), {'alg': 'none'}),
        'alg none with signature': '.'.join(sse_tokens.sign('none', None, claims(),
                                                            {'alg': 'none'}).split('.')[:2] + [sig]),
        'tampered payload': '.'.join([head, tampered_body, sig]),
        'tampered signature': '.'.join([head, body, sig[:-2] + ('AA' if sig[-2:] != 'AA' else 'BA')]),
        'two parts': head + '.' + body,
        'padding': good + '=',
        'garbage': 'not-a-token',
        'oversized': token(srv, pad='x' * 9000),
        'audience not ours': token(srv, aud='someone-else'),
        # HS256 "signed" with the RSA public key's PEM bytes, sent to the RS256 location
        'algorithm confusion': sse_tokens.sign('HS256', rs_pub, claims()),
    }


# every kind of bad token gets 401 with a Bearer challenge, and no stream
@pytest.mark.parametrize('kind', ['missing', 'expired', 'not yet valid', 'wrong key',
                                  'wrong algorithm', 'alg none', 'alg none with signature',
                                  'tampered payload', 'tampered signature', 'two parts',
                                  'padding', 'garbage', 'oversized', 'audience not ours',
                                  'algorithm confusion'])
def test_bad_token_401(tok, kind):
    t = bad_tokens(tok)[kind]
    path = '/tok-rs/news' if kind == 'algorithm confusion' else '/tok/news'
    s = open_stream(tok, path, headers=bearer(t) if t else None)
    assert s.status == 401, (kind, s.status)
    assert s.headers['WWW-Authenticate'].startswith('Bearer realm="sse"')
    assert not s.events
    s.close()


# the configured audience must be named; a token without one is refused there
def test_audience(tok):
    ok = open_stream(tok, '/tok-aud/news', headers=bearer(token(tok, aud='push.example')))
    assert ok.status == 200
    ok.close()
    arr = open_stream(tok, '/tok-aud/news', headers=bearer(token(tok, aud=['x', 'push.example'])))
    assert arr.status == 200
    arr.close()
    none = open_stream(tok, '/tok-aud/news', headers=bearer(token(tok)))
    assert none.status == 401
    none.close()


# a channel the token does not list gets 403; prefix* patterns match
def test_channel_grants(tok):
    t = token(tok)
    s = open_stream(tok, '/tok?channel=prices.eur,prices.usd', headers=bearer(t))
    assert s.status == 200
    assert_receives(tok, s, 'prices.usd')
    s.close()
    for path in ('/tok/payroll', '/tok?channel=news,payroll', '/tok/prices'):
        s = open_stream(tok, path, headers=bearer(t))
        assert s.status == 403, path
        s.close()
    star = open_stream(tok, '/tok/anything', headers=bearer(token(tok, sse_subscribe=['*'])))
    assert star.status == 200
    star.close()
    nothing = open_stream(tok, '/tok/news', headers=bearer(token(tok, sse_subscribe=None)))
    assert nothing.status == 403
    nothing.close()


# the token's subject is the user: server-chosen per-user channels work with tokens
def test_subject_is_remote_user(tok):
    t = token(tok, sub='carol', sse_subscribe=['user-carol'])
    s = open_stream(tok, '/tok-mine', headers=bearer(t))
    assert s.status == 200
    assert_receives(tok, s, 'user-carol')
    s.close()
    # the expression gives user-dave, which dave's token does not grant
    s = open_stream(tok, '/tok-mine', headers=bearer(token(tok, sub='dave')))
    assert s.status == 403
    s.close()


# tokens reach neither the access log nor the error log, from any source
def test_tokens_never_logged(tok):
    pos = tok.log_size()
    access = tok.dir / 'logs' / 'access_log'
    apos = access.stat().st_size
    good, bad = token(tok), bad_tokens(tok)['wrong key']
    for t in (good, bad):
        for kw in ({'headers': bearer(t)}, {'headers': {'Cookie': 'sse_token=' + t}}, {}):
            path = '/tok/news' if kw else '/tok/news?x=1&authorization=%s&y=2' % t
            s = open_stream(tok, path, **kw)
            s.close()
    r = tok.request('POST', '/tok-admin/channels/news?authorization=' + bad, data='x')
    assert r.status_code == 401
    assert wait_until(lambda: access.stat().st_size > apos)
    time.sleep(0.5)
    logs = tok.read_log(pos) + access.read_bytes()[apos:].decode('utf-8', 'replace')
    for t in (good, bad):
        for part in t.split('.'):
            if len(part) > 8:
                assert part not in logs
    assert 'authorization=redacted' in logs
    assert 'SSE00302' in logs      # the refusals are logged, with their reason only


# a token sent twice, or under an escaped name that decodes to
# "authorization", is used (the last one) and reaches no log either
@pytest.mark.parametrize('query,shown', [
    ('authorization=x&%61uthorization={t}', 'authorization=redacted&%61uthorization=redacted'),
    ('%61%75%74horization={t}&y=1', '%61%75%74horization=redacted&y=1'),
    ('authorization={t}&authorization={t}', 'authorization=redacted&authorization=redacted')])
def test_escaped_and_repeated_query_tokens_never_logged(tok, query, shown):
    pos = tok.log_size()
    access = tok.dir / 'logs' / 'access_log'
    apos = access.stat().st_size
    t = token(tok)
    s = open_stream(tok, '/tok/news?' + query.format(t=t))
    assert s.status == 200
    s.close()
    assert wait_until(lambda: access.stat().st_size > apos)
    time.sleep(0.3)
    logs = tok.read_log(pos) + access.read_bytes()[apos:].decode('utf-8', 'replace')
    for part in t.split('.'):
        assert part not in logs
    assert '/tok/news?%s HTTP/1.1' % shown in logs


# an admin location with SSETokenKey: the sse_publish claim decides
def test_admin_with_token(tok):
    ch = uniq('pubtok')
    pub = token(tok, sse_publish=[ch], sse_subscribe=None)
    r = tok.request('POST', '/tok-admin/channels/%s' % ch, data='hi', headers=bearer(pub))
    assert r.status_code == 201, r.text
    assert tok.channel(ch)['messages'] == 1
    r = tok.request('POST', '/tok-admin/channels/%s-other' % ch, data='hi', headers=bearer(pub))
    assert r.status_code == 403
    assert tok.channel('%s-other' % ch) is None
    r = tok.request('POST', '/tok-admin/channels/%s' % ch, data='hi')
    assert r.status_code == 401 and r.json()['status'] == 401
    assert r.headers['WWW-Authenticate'] == 'Bearer realm="sse"'
    assert tok.request('GET', '/tok-admin/status', headers=bearer(pub)).status_code == 403
    star = token(tok, sse_publish=['*'])
    assert tok.request('GET', '/tok-admin/status', headers=bearer(star)).status_code == 200
    r = tok.request('DELETE', '/tok-admin/channels/%s' % ch, headers=bearer(pub))
    assert r.status_code == 200
    assert tok.channel(ch) is None


# configtest names the key problem
@pytest.mark.parametrize('line,message', [
    ('SSETokenKey HS384 keys/hs.secret', "algorithm 'HS384' is not one of HS256, RS256, ES256"),
    ('SSETokenKey HS256 keys/nope', 'keys/nope'),
    ('SSETokenKey RS256 keys/ec.pub', 'keys/ec.pub'),
    ('SSETokenKey RS256 keys/rs.key', 'private key'),
])
def test_configtest_reports_key_problems(tok, module_factory, line, message):
    srv = module_factory.create('tokcfg', locations='<Location /x>\nSetHandler sse-stream\n%s\n'
                                '</Location>\n' % line)
    sse_tokens.make_keys(srv.dir / 'keys')
    r = srv.configtest()
    assert r.returncode != 0
    assert message in r.stderr and 'SSETokenKey' in r.stderr, r.stderr
