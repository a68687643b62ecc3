"""Access control that holds: every channel a stream names is authorized by
httpd as the URL <stream location>/<channel>; the admin API's paths are
measured from the <Location> that set its handler; server-chosen channels;
nothing enabled from .htaccess; rewrites get the final URL's checks."""
import base64
import hashlib

import pytest
import requests

from sse_env import MODULES, SseStream, raw_request, uniq, wait_until

USERS = {'alice': 'wonderland', 'bob': 'builder'}

AUTH_MODULES = ['LoadModule %s_module %s/mod_%s.so' % (m, MODULES, m)
                for m in ('auth_basic', 'authn_core', 'authn_file', 'authz_user',
                          'authz_groupfile', 'rewrite', 'env')]

LOCATIONS = """
MergeSlashes Off
<Directory "{dir}/htdocs">
    AllowOverride FileInfo AuthConfig
    Require all granted
</Directory>
<Directory "{dir}/htdocs/files">
    Require all denied
</Directory>
RewriteEngine On
RewriteRule ^/events/go/(.*)$ /files/$1 [PT]
RewriteRule ^/feed/(.*)$ /events/$1 [PT]

<Location /events>
    SetHandler sse-stream
    SSEKeepAlive 1
</Location>
<Location /events/private>
    AuthType Basic
    AuthName "private channel"
    AuthUserFile "{dir}/conf/htpasswd"
    Require user alice
</Location>
<LocationMatch "^/events/secret">
    Require all denied
</LocationMatch>
<LocationMatch "^/events/team-(?<team>[a-z]+)$">
    AuthType Basic
    AuthName "team channels"
    AuthUserFile "{dir}/conf/htpasswd"
    AuthGroupFile "{dir}/conf/groups"
    Require group %{{env:MATCH_TEAM}}
</LocationMatch>

<Location /pev>
    SetHandler sse-stream
    AuthType Basic
    AuthName "protected events"
    AuthUserFile "{dir}/conf/htpasswd"
    Require user alice
</Location>
<Location /pev/public>
    Require all granted
</Location>

<Location /mine>
    SetHandler sse-stream
    AuthType Basic
    AuthName "my events"
    AuthUserFile "{dir}/conf/htpasswd"
    Require valid-user
    SSEChannel "user-%{{REMOTE_USER}}"
</Location>
<Location /tenant>
    SetHandler sse-stream
    SetEnv TENANT acme
    SSEChannel "%{{env:TENANT}}-alerts" news
</Location>
<Location /no-tenant>
    SetHandler sse-stream
    SSEChannel "%{{env:NO_SUCH_VARIABLE}}"
</Location>
<Location /header-chan>
    SetHandler sse-stream
    SSEChannel "x-%{{HTTP:X-Chan}}"
</Location>

<Location /adm>
    SetHandler sse-admin
    Require ip 10.9.9.9
</Location>
<Location /adm/status>
    Require all granted
</Location>
<Location /adm-if>
    SetHandler sse-admin
    Require all denied
    <If "-R '127.0.0.0/8'">
        Require ip 127.0.0.1
    </If>
    <If "%{{REQUEST_METHOD}} == 'DELETE'">
        Require all denied
    </If>
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1
</Location>
"""


def sha_line(user, password):
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return '%s:{SHA}%s\n' % (user, digest)


def basic(user):
    token = base64.b64encode(('%s:%s' % (user, USERS[user])).encode()).decode()
    return {'Authorization': 'Basic ' + token}


@pytest.fixture(scope='module')
def acl(module_factory):
    srv = module_factory.create('access', global_extra=AUTH_MODULES)
    srv.locations = LOCATIONS.format(dir=srv.dir)
    srv.write_config()
    (srv.dir / 'conf' / 'htpasswd').write_text(''.join(sha_line(u, p) for u, p in USERS.items()))
    (srv.dir / 'conf' / 'groups').write_text('red: alice\nblue: bob\n')
    (srv.dir / 'htdocs' / 'files').mkdir()
    (srv.dir / 'htdocs' / 'files' / 'secret.txt').write_text('top secret\n')
    (srv.dir / 'htdocs' / 'hta').mkdir()
    (srv.dir / 'htdocs' / 'hta' / '.htaccess').write_text('SetHandler sse-admin\n')
    (srv.dir / 'htdocs' / 'hta' / 'x').write_text('file\n')
    (srv.dir / 'htdocs' / 'hts').mkdir()
    (srv.dir / 'htdocs' / 'hts' / '.htaccess').write_text('SetHandler sse-stream\n')
    (srv.dir / 'htdocs' / 'hts' / 'news').write_text('file\n')
    srv.start()
    return srv


def stream(srv, path, **kw):
    s = SseStream(srv.port, path, **kw)
    if s.status == 200:
        s.wait_open()
    else:
        s.read_all(5)
    return s


# --- per-channel authorization ------------------------------------------------

# the channel's own URL is protected: every other way of naming it asks the same rule
@pytest.mark.parametrize('path', [
    '/events?channel=private',
    '/events?channel=public,private',
    '/events/public?channel=private',
    '/events?chan%6eel=%70rivate',
    '/events/private',
])
def test_private_channel_needs_credentials_whatever_the_spelling(acl, path):
    assert wait_until(lambda: (acl.channel('private') or {'subscribers': 0})['subscribers'] == 0)
    s = stream(acl, path)
    assert s.status == 401, (path, s.status, s.body[:200])
    assert s.headers.get('WWW-Authenticate', '').startswith('Basic realm="private channel"')
    # refused before subscribing: never counted
    assert (acl.channel('private') or {'subscribers': 0})['subscribers'] == 0
    s.close()


# the right user gets it, whichever way it is named; a wrong user gets 401 too
@pytest.mark.parametrize('path', ['/events/private', '/events?channel=public,private'])
def test_private_channel_for_alice_only(acl, path):
    s = stream(acl, path, headers=basic('alice'))
    assert s.status == 200, (path, s.body[:200])
    acl.pub('private', 'for alice')
    assert [e.data for e in s.wait_for(1)] == ['for alice']
    s.close()
    bob = stream(acl, path, headers=basic('bob'))
    assert bob.status == 401
    bob.close()


# per-group channels (the README's example): each team's channel for its members only
def test_per_group_channels(acl):
    s = stream(acl, '/events?channel=team-red', headers=basic('alice'))
    assert s.status == 200
    acl.pub('team-red', 'red news')
    assert [e.data for e in s.wait_for(1)] == ['red news']
    s.close()
    for user, path in (('bob', '/events?channel=team-red'), ('alice', '/events/news?channel=team-blue')):
        s = stream(acl, path, headers=basic(user))
        assert s.status == 401, (user, path)
        s.close()
    s = stream(acl, '/events/team-blue', headers=basic('bob'))
    assert s.status == 200
    s.close()


# a <LocationMatch> rule on the channel's URL applies to ?channel= too
@pytest.mark.parametrize('path', ['/events?channel=secret', '/events/news?channel=secret'])
def test_locationmatch_denies_channel(acl, path):
    s = stream(acl, path)
    assert s.status == 403, (path, s.status)
    s.close()


# with MergeSlashes Off, "//" would let a <LocationMatch> and a <Location> judge
# one channel URL differently: refused on streams and the admin API
# (<Location /events/private> matches the merged path and asks for credentials first)
@pytest.mark.parametrize('path,status', [('/events//private', 401), ('/events//secret', 400),
                                         ('/events/x//y', 400)])
def test_double_slash_refused(acl, path, status):
    s = stream(acl, path)
    assert s.status == status, (path, s.status)
    if status == 400:
        assert b'empty path segment' in s.body
    s.close()
    s = stream(acl, path, headers=basic('alice'))
    assert s.status == 400, (path, s.status)
    s.close()
    r = acl.request('POST', '/sse-admin//channels/%s' % uniq('dbl'), data='x')
    assert r.status_code == 400 and r.json()['error'].startswith('empty path segment')


# . and .. would name another URL: refused as channel names
@pytest.mark.parametrize('name', ['.', '..'])
def test_dot_channels_refused(acl, name):
    s = stream(acl, '/events?channel=%s' % name)
    assert s.status == 400
    assert b'may not be . or ..' in s.body
    s.close()


# the unprotected channels keep working without credentials
def test_public_channel_open(acl):
    s = stream(acl, '/events?channel=public')
    assert s.status == 200
    acl.pub('public', 'hello')
    assert [e.data for e in s.wait_for(1)] == ['hello']
    s.close()


# a public <Location> nested in a protected stream location opens only its own channel
def test_nested_public_location_opens_only_itself(acl):
    s = stream(acl, '/pev/public')
    assert s.status == 200
    s.close()
    s = stream(acl, '/pev/public/payroll')
    assert s.status == 400, s.body[:200]
    s.close()
    s = stream(acl, '/pev?channel=payroll')
    assert s.status == 401
    s.close()
    s = stream(acl, '/pev/public?channel=payroll')
    assert s.status == 401
    s.close()


# --- server-chosen channels -----------------------------------------------------

# two users on the same URL get their own channels and never each other's events
def test_per_user_channels(acl):
    a = stream(acl, '/mine', headers=basic('alice'))
    b = stream(acl, '/mine', headers=basic('bob'))
    assert a.status == 200 and b.status == 200
    assert wait_until(lambda: acl.channel('user-alice') and acl.channel('user-bob'))
    acl.pub('user-alice', 'to alice')
    acl.pub('user-bob', 'to bob')
    assert [e.data for e in a.wait_for(1)] == ['to alice']
    assert [e.data for e in b.wait_for(1)] == ['to bob']
    a.close()
    b.close()
    anon = stream(acl, '/mine')
    assert anon.status == 401
    anon.close()


# an expression over the environment, next to a fixed name
def test_env_expression_channel(acl):
    s = stream(acl, '/tenant')
    assert s.status == 200
    acl.pub('acme-alerts', 'alert')
    acl.pub('news', 'headline')
    assert [e.data for e in s.wait_for(2)] == ['alert', 'headline']
    s.close()


# an expression that yields nothing or an invalid name refuses with 403 and says why in the log
def test_bad_expression_channel_refused(acl):
    pos = acl.log_size()
    s = stream(acl, '/no-tenant')
    assert s.status == 403
    s.close()
    s = stream(acl, '/header-chan', headers={'X-Chan': 'a b'})
    assert s.status == 403
    s.close()
    log = acl.read_log(pos)
    assert 'SSE00107' in log and 'invalid channel name' in log
    ok = stream(acl, '/header-chan', headers={'X-Chan': 'fine'})
    assert ok.status == 200
    ok.close()


# --- admin paths under nested sections ------------------------------------------------

# a nested <Location> that opens /adm/status does not move the API under it
def test_nested_admin_location(acl):
    assert acl.get('/adm/status').status_code == 200
    assert acl.get('/adm/status').json()['channels'] >= 0
    ch = uniq('nested')
    r = acl.request('POST', '/adm/status/channels/%s' % ch, data='x')
    assert r.status_code == 404, r.text
    r = acl.request('DELETE', '/adm/status/channels/%s' % ch)
    assert r.status_code == 404
    assert acl.channel(ch) is None
    # the API itself stays behind its Require
    assert acl.request('POST', '/adm/channels/%s' % ch, data='x').status_code == 403


# an <If> inside the admin location changes access, not the paths
def test_if_inside_admin_location(acl):
    ch = uniq('iff')
    r = acl.request('POST', '/adm-if/channels/%s' % ch, data='x')
    assert r.status_code == 201, r.text
    assert acl.get('/adm-if/status').status_code == 200
    assert acl.request('DELETE', '/adm-if/channels/%s' % ch).status_code == 403
    assert acl.channel(ch)['messages'] == 1


# --- .htaccess and rewrites -------------------------------------------------------------

# SetHandler sse-admin in .htaccess opens no admin API
def test_htaccess_cannot_enable_admin(acl):
    for path in ('/hta/x', '/hta/status', '/hta/channels/x'):
        r = acl.get(path)
        assert r.status_code == 500, (path, r.status_code, r.text[:200])
        assert 'channels' not in r.text
    r = acl.request('POST', '/hta/channels/%s' % uniq('hta'), data='x')
    assert r.status_code == 500
    assert 'SetHandler sse-admin is honoured only' in acl.read_log()


# nor a stream location
def test_htaccess_cannot_enable_streams(acl):
    s = stream(acl, '/hts/news')
    assert s.status == 500
    assert not s.events and b': ok' not in s.body
    s.close()
    assert 'SetHandler sse-stream is honoured only' in acl.read_log()


# a [PT] rewrite to a stream location gets the final URL's rules
def test_rewrite_to_stream_location_checks_target(acl):
    s = stream(acl, '/feed/private')
    assert s.status == 401
    s.close()
    s = stream(acl, '/feed/private', headers=basic('alice'))
    assert s.status == 200
    s.close()
    s = stream(acl, '/feed/public')
    assert s.status == 200
    s.close()


# a [PT] rewrite away from a stream location gets the target's <Directory> checks
def test_rewrite_from_stream_location_checks_target(acl):
    r = acl.get('/events/go/secret.txt')
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert 'top secret' not in r.text
    assert acl.get('/files/secret.txt').status_code == 403
