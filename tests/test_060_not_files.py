"""Streams and the admin API are virtual: no directory walk, so neither a
stat of every URI component nor .htaccess lookups happen per request. The
proof: a broken .htaccess in the DocumentRoot, which fails every request for
a file with 500, does not touch mod_sse's locations."""
from sse_env import uniq


def test_sse_locations_skip_the_directory_walk(httpd_factory):
    srv = httpd_factory.create('nowalk', global_extra=[
        '<Directory />', '    AllowOverride All', '</Directory>'])
    (srv.dir / 'htdocs' / '.htaccess').write_text('ThisIsNotADirective\n')
    srv.start()      # /sse-admin/status answers 200 despite the .htaccess
    assert srv.get('/index.html').status_code == 500      # the walk reads .htaccess
    ch = uniq('nowalk')
    s = srv.sub('/events/%s' % ch)
    assert s.status == 200
    assert srv.pub(ch, b'hello')['subscribers'] == 1
    s.wait_for(1)
    assert s.data_events()[0].data == 'hello'
    assert srv.status()['subscribers'] == 1
