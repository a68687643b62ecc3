"""Several servers sharing channels through Redis (SSERedis): a publish on
any server reaches every server's subscribers with the same id and order, a
browser resumes on another server with its Last-Event-ID, a server started
later catches up from Redis, and publishing while Redis is down is a 503
that changes nothing."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from sse_env import SseStream, free_port, uniq, wait_until

REDIS = shutil.which('redis-server') or '/usr/bin/redis-server'
pytestmark = pytest.mark.skipif(not os.path.exists(REDIS), reason='redis-server not installed')


class Redis:
    """A redis-server of the test's own: high port, own directory, no
    persistence (a restart loses everything, as a crash of such a server
    does)."""

    def __init__(self, password=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='sse-redis-')
        self.password = password
        self.proc = None

    def start(self):
        extra = ['--requirepass', self.password] if self.password else []
        self.proc = subprocess.Popen([REDIS, '--port', str(self.port), '--bind', '127.0.0.1',
                                      '--save', '', '--appendonly', 'no', '--dir', self.dir,
                                      '--daemonize', 'no'] + extra,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.answers, 10), 'redis-server did not start'

    def answers(self):
        try:
            with socket.create_connection(('127.0.0.1', self.port), timeout=1) as s:
                s.sendall(b'PING\r\n')
                return s.recv(64).startswith((b'+PONG', b'-NOAUTH'))
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def url(self):
        return 'redis://127.0.0.1:%d' % self.port


@pytest.fixture(scope='module')
def redis():
    r = Redis()
    r.start()
    yield r
    r.stop()
    shutil.rmtree(r.dir, ignore_errors=True)


def start_server(factory, name, redis):
    return factory.start(name, expect_children=2, global_extra=['SSERedis %s' % redis.url])


@pytest.fixture(scope='module')
def pair(module_factory, redis):
    a = start_server(module_factory, 'redis-a', redis)
    b = start_server(module_factory, 'redis-b', redis)
    return a, b


def frames(s):
    return [(e.id, e.data) for e in s.events]


# a publish on A reaches B's subscribers with the id A answered, and both
# stores hold it under that id
def test_publish_on_one_server_reaches_the_other(pair):
    a, b = pair
    ch = uniq('rx')
    s = b.sub('/events/%s' % ch)
    reply = a.pub(ch, 'from A')
    assert frames_after(s, 1) == [(reply['id'], 'from A')]
    assert wait_until(lambda: (a.channel(ch) or {}).get('last_id') == reply['id'])
    assert b.channel(ch)['last_id'] == reply['id']


def frames_after(s, n):
    s.wait_for(n)
    return frames(s)


# publishes on both servers, interleaved: every subscriber on either server
# gets all of them once, in the same order, with the same, increasing ids
def test_same_order_and_ids_everywhere(pair):
    a, b = pair
    ch = uniq('order')
    subs = [a.sub('/events/%s' % ch), b.sub('/events/%s' % ch), b.sub('/events/%s' % ch)]
    sent = []
    for n in range(30):
        srv = (a, b)[n % 2]
        sent.append((srv.pub(ch, 'n%02d' % n)['id'], 'n%02d' % n))
    for s in subs:
        s.wait_for(30)
    ids = [int(i) for i, _ in sent]
    assert ids == sorted(ids) and len(set(ids)) == 30
    for s in subs:
        assert frames(s) == sent


# a browser that read part of a channel on A resumes on B with its
# Last-Event-ID: exactly what it missed, nothing twice
def test_resume_on_another_server(pair):
    a, b = pair
    ch = uniq('resume')
    s = a.sub('/events/%s' % ch)
    first = [(a.pub(ch, 'one %d' % n)['id'], 'one %d' % n) for n in range(3)]
    assert frames_after(s, 3) == first
    s.close()
    missed = [((a, b)[n % 2].pub(ch, 'two %d' % n)['id'], 'two %d' % n) for n in range(4)]
    again = SseStream(b.port, '/events/%s' % ch, last_event_id=first[-1][0])
    assert again.status == 200 and again.headers['sse-resume'] == 'exact'
    assert frames_after(again, 4) == missed


# a server started after the publishes catches up from Redis: a client
# resuming there from the first id gets the rest
def test_new_server_catches_up(pair, httpd_factory, redis):
    a, _ = pair
    ch = uniq('late')
    sent = [(a.pub(ch, 'early %d' % n)['id'], 'early %d' % n) for n in range(5)]
    c = start_server(httpd_factory, 'redis-c', redis)
    assert wait_until(lambda: (c.channel(ch) or {}).get('last_id') == sent[-1][0], 15)
    s = SseStream(c.port, '/events/%s' % ch, last_event_id=sent[0][0])
    assert s.headers['sse-resume'] == 'exact'
    assert frames_after(s, 4) == sent[1:]


# status and metrics show the mirror: subscribed, what it copied, its lag
def test_status_and_metrics_show_redis(pair, redis):
    a, b = pair
    before = b.status()['redis']
    assert before['state'] == 'subscribed' and before['host'] == '127.0.0.1:%d' % redis.port
    ch = uniq('fig')
    for n in range(3):
        a.pub(ch, 'f%d' % n)
    assert wait_until(lambda: b.status()['redis']['mirrored'] == before['mirrored'] + 3)
    text = b.get('/sse-admin/metrics').text
    assert '\nsse_redis_up 1\n' in text
    assert '\nsse_redis_mirrored_total %d\n' % (before['mirrored'] + 3) in text
    assert '# TYPE sse_redis_lag_seconds gauge' in text


# a DELETE on one server deletes the channel on every server and ends its
# streams there
def test_delete_everywhere(pair):
    a, b = pair
    ch = uniq('del')
    sa, sb = a.sub('/events/%s' % ch), b.sub('/events/%s' % ch)
    a.pub(ch, 'x')
    assert wait_until(lambda: b.channel(ch) is not None)
    r = b.delete(ch)
    assert r.status_code == 200 and r.json()['deleted'] is True, r.text
    assert sa.wait_ended() and sb.wait_ended()
    assert wait_until(lambda: a.channel(ch) is None and b.channel(ch) is None)


def mirror_pid(srv):
    """The server's mirror process: the main process's child that is not
    one of its worker children."""
    workers = {c['pid'] for c in srv.status()['children']}
    others = [pid for pid in srv.child_pids() if pid not in workers]
    return others[0] if len(others) == 1 else None


# the mirror process is killed: the server starts another, which catches up
# with what was published meanwhile, in order
def test_mirror_killed_catches_up(pair):
    a, b = pair
    ch = uniq('mk')
    s = b.sub('/events/%s' % ch)
    first = a.pub(ch, 'before')['id']
    assert frames_after(s, 1) == [(first, 'before')]
    old = mirror_pid(b)
    assert old
    os.kill(old, signal.SIGKILL)
    meanwhile = [(a.pub(ch, 'meanwhile %d' % n)['id'], 'meanwhile %d' % n) for n in range(5)]
    assert wait_until(lambda: mirror_pid(b) not in (None, old), 15)
    assert frames_after(s, 6)[1:] == meanwhile


# graceful restarts of one server while the other publishes: a client that
# reconnects with its Last-Event-ID after each restart misses nothing
def test_graceful_restart_while_publishing(pair):
    a, b = pair
    ch = uniq('gr')
    sent, earlier = [], []           # published; got on streams that ended
    s = b.sub('/events/%s' % ch)
    for round_ in range(2):
        sent += [(a.pub(ch, 'r%d-%d' % (round_, n))['id'], 'r%d-%d' % (round_, n)) for n in range(3)]
        s.wait_for(len(sent) - len(earlier))
        assert earlier + frames(s) == sent
        r = b.apachectl('graceful')
        assert r.returncode == 0, r.stderr
        sent.append((a.pub(ch, 'during %d' % round_)['id'], 'during %d' % round_))
        assert s.wait_ended(15)
        earlier += frames(s)
        assert wait_until(lambda: b.status_after_restart() is not None, 20)
        s = SseStream(b.port, '/events/%s' % ch, last_event_id=earlier[-1][0])
        assert s.headers['sse-resume'] == 'exact'
    s.wait_for(len(sent) - len(earlier))
    assert earlier + frames(s) == sent


# many channels, publishes spread over both servers: every server's store
# ends with the same last id per channel
def test_many_channels(pair):
    a, b = pair
    chans = [uniq('many%d' % n) for n in range(60)]
    last = {}
    for n, ch in enumerate(chans * 2):
        last[ch] = (a, b)[n % 2].pub(ch, 'm%d' % n)['id']
    for ch in chans:
        assert wait_until(lambda: (a.channel(ch) or {}).get('last_id') == last[ch]
                          and (b.channel(ch) or {}).get('last_id') == last[ch]), ch
        assert a.channel(ch)['messages'] == b.channel(ch)['messages'] == 2


# Redis down: a publish is a 503 with a JSON error and stores nothing;
# open streams stay open; when Redis is back (without its data: this one
# keeps none), the clients are told with sse-reset and publishing and
# delivery go on (runs last among the pair's tests: restarts Redis)
def test_redis_down_then_back(pair, redis):
    a, b = pair
    ch = uniq('down')
    s = b.sub('/events/%s' % ch)
    before = a.pub(ch, 'before')['id']
    assert frames_after(s, 1) == [(before, 'before')]
    assert wait_until(lambda: b.status()['redis']['state'] == 'subscribed')
    reconnects = b.status()['redis']['reconnects']
    redis.stop()
    r = a.publish(ch, 'while down')
    assert r.status_code == 503, r.text
    assert 'Redis' in r.json()['error'] and r.json()['status'] == 503
    assert a.channel(ch)['last_id'] == before
    # the stream is still open: its keepalives keep coming
    kept = s.comments.count('keepalive')
    assert s.wait_until(lambda st: st.parser.comments.count('keepalive') > kept)
    assert not s.ended
    assert wait_until(lambda: b.status()['redis']['state'] == 'connecting')
    redis.start()
    # this Redis lost everything: the servers see it when they reconnect,
    # one of them tells every channel's clients (sse-reset, "lost")
    assert wait_until(lambda: all(srv.status()['redis']['state'] == 'subscribed'
                                  for srv in (a, b)), 20)
    assert b.status()['redis']['reconnects'] == reconnects + 1
    after = a.pub(ch, 'after')['id']
    s.wait_for(3)
    assert [(e.event, e.data) for e in s.events] == [
        ('message', 'before'), ('sse-reset', '{"reason":"lost","last_event_id":null}'),
        ('message', 'after')]
    ids = [int(e.id) for e in s.events]
    assert ids == sorted(ids) and ids[-1] == int(after)
    # the first mirror back sees it and raises Redis's ids to its own; the
    # other then finds nothing missing, or loses the race to tell
    assert sum(srv.read_log().count('telling every channel') for srv in (a, b)) == 1


# a Redis with a password: the right one in the URL works, a wrong one is a
# 503 that names the refusal
def test_password(httpd_factory):
    r = Redis(password='s3cret')
    r.start()
    try:
        good = httpd_factory.start('redis-pw', expect_children=2, global_extra=[
            'SSERedis redis://:s3cret@127.0.0.1:%d/1' % r.port])
        bad = httpd_factory.start('redis-badpw', expect_children=2, global_extra=[
            'SSERedis redis://:wrong@127.0.0.1:%d/1' % r.port])
        ch = uniq('pw')
        s = good.sub('/events/%s' % ch)
        reply = good.pub(ch, 'secret data')
        assert frames_after(s, 1) == [(reply['id'], 'secret data')]
        refused = bad.publish(ch, 'x')
        assert refused.status_code == 503 and 'password' in refused.json()['error'], refused.text
        assert bad.status()['redis']['state'] == 'connecting'
    finally:
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)


# SSERedis URLs: configtest accepts the documented forms and says what is
# wrong with the others
@pytest.mark.parametrize('url', ['redis://127.0.0.1:6379', 'redis://h', 'redis://:pw@h:1/2',
                                 'redis://user:pw@h:65535/0'])
def test_good_urls(built, base_dir, url):
    from test_050_config import configtest
    r = configtest(base_dir, ['SSERedis %s' % url])
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize('url,why', [
    ('http://h:1', 'must start with redis://'),
    ('rediss://h:1', 'rediss:// (TLS) is not supported'),
    ('redis://:6379', 'names no host'),
    ('redis://h:0', 'port must be a number from 1 to 65535'),
    ('redis://h:99999', 'port must be a number from 1 to 65535'),
    ('redis://h:x', 'port must be a number'),
    ('redis://h:1/db', 'database after / must be a number'),
])
def test_bad_urls(built, base_dir, url, why):
    from test_050_config import configtest
    r = configtest(base_dir, ['SSERedis %s' % url])
    assert r.returncode != 0 and 'SSERedis %s: ' % url in r.stderr and why in r.stderr, r.stderr


# SSERedis is a server-wide setting
def test_not_in_virtual_host(built, base_dir):
    from test_050_config import configtest
    r = configtest(base_dir, ['<VirtualHost 127.0.0.1:1>', 'SSERedis redis://h:1', '</VirtualHost>'])
    assert r.returncode != 0 and 'SSERedis' in r.stderr, r.stderr
