"""Robustness: a child killed with open streams, a restart that changes the
store geometry, and the sse-store mutex under the standard Mutex directive."""
import os
import re
import signal

import pytest

from sse_env import uniq, wait_until

GENERATION_LINE = r'resuming normal operations'


def per_pid(srv):
    return {c['pid']: c['subscribers'] for c in srv.status()['children']}


# a child killed with SIGKILL while serving streams loses its share of the counts; the server keeps working
def test_killed_child_share_dropped(httpd_factory):
    srv = httpd_factory.start('killchild', expect_children=2)
    srv.log_ignore.append(r'AH00052: child pid \d+ exit signal Killed')
    ch = uniq('kill')
    streams = []
    while len(streams) < 30:
        streams.append(srv.sub('/events/%s' % ch))
        if len(streams) >= 6 and len([p for p, n in per_pid(srv).items() if n > 0]) >= 2:
            break
    assert srv.wait_channel_subscribers(ch, len(streams))
    counts = per_pid(srv)
    victim = max(counts, key=counts.get)
    lost = counts[victim]
    assert 0 < lost < len(streams), counts
    os.kill(victim, signal.SIGKILL)
    # the dead child's streams end, and its share leaves the counts
    assert wait_until(lambda: sum(1 for s in streams if s.ended) == lost, 10), \
        [s.ended for s in streams]
    assert wait_until(lambda: victim not in per_pid(srv), 10), srv.status()['children']
    assert srv.wait_channel_subscribers(ch, len(streams) - lost, 10), srv.channel(ch)
    st = srv.status()
    assert st['subscribers'] == sum(c['subscribers'] for c in st['children'])
    # the survivors still get publishes; new subscribers work (possibly in a replacement child)
    r = srv.pub(ch, 'after the crash')
    assert r['subscribers'] == len(streams) - lost
    alive = [s for s in streams if not s.ended]
    for s in alive:
        assert s.wait_for(1)[-1].id == r['id']
    newcomer = srv.sub('/events/%s' % ch, last_event_id=r['id'])
    assert newcomer.headers.get('SSE-Resume') == 'exact'
    r2 = srv.pub(ch, 'again')
    assert [e.id for e in newcomer.wait_for(1)] == [r2['id']]
    assert wait_until(lambda: len(srv.status()['children']) == 2, 15), srv.status()['children']


# a graceful restart that changes SSESharedMemorySize recreates the store: history dropped, old ids unknown, new ids higher
def test_geometry_change_recreates_store(httpd_factory):
    srv = httpd_factory.start('geometry', global_extra=['SSESharedMemorySize 1M'])
    ch = uniq('geo')
    ids = [srv.pub(ch, 'g%d' % i)['id'] for i in range(3)]
    assert srv.status()['shm']['size'] == 1024 * 1024
    srv.global_extra = ['SSESharedMemorySize 2M']
    srv.write_config()
    pos = srv.log_size()
    gens = srv.count_log(GENERATION_LINE)
    assert srv.apachectl('graceful').returncode == 0
    assert wait_until(lambda: srv.count_log(GENERATION_LINE) > gens, 15)
    assert wait_until(lambda: (srv.status_after_restart() or {}).get('shm', {}).get('size')
                      == 2 * 1024 * 1024, 10), srv.status()
    assert srv.channel(ch) is None, 'history should be dropped when the geometry changes'
    # ... and that is logged (above info level)
    assert re.search(r'\[sse:(notice|warn)\].*SSE\d{5}.*store', srv.read_log(pos)), srv.read_log(pos)[-1500:]
    s = srv.sub('/events/%s' % ch, last_event_id=ids[-1])
    assert s.headers.get('SSE-Resume') == 'reset'
    ev = s.wait_for(1)
    assert ev[0].event == 'sse-reset' and ev[0].json()['reason'] == 'unknown'
    r = srv.pub(ch, 'new store')
    assert int(r['id']) > int(ids[-1])
    assert [e.id for e in s.wait_for(2)[1:]] == [r['id']]


# a graceful restart that changes only other directives keeps the store
def test_graceful_restart_with_other_changes_keeps_store(httpd_factory):
    srv = httpd_factory.start('samegeo', global_extra=['SSEMaxMessageSize 64K'])
    ch = uniq('same')
    ids = [srv.pub(ch, 's%d' % i)['id'] for i in range(3)]
    srv.global_extra = ['SSEMaxMessageSize 1K']
    srv.write_config()
    gens = srv.count_log(GENERATION_LINE)
    assert srv.apachectl('graceful').returncode == 0
    assert wait_until(lambda: srv.count_log(GENERATION_LINE) > gens, 15)
    assert wait_until(srv.status_after_restart, 10)
    assert srv.channel(ch)['last_id'] == ids[-1]
    # the new message size limit applies
    assert srv.publish(ch, b'x' * 1025).status_code == 413
    assert srv.publish(ch, b'x' * 1024).status_code == 201
    # and the C API refuses data over it with APR_EINVAL (22)
    j = srv.get('/test-publish', params={'channel': ch, 'data': 'y' * 1025}).json()
    assert j['rv'] == 22, j
    assert srv.get('/test-publish', params={'channel': ch, 'data': 'y' * 1024}).json()['rv'] == 0


# the store lock works with the Mutex directive's other mechanisms, across children
@pytest.mark.parametrize('mech', ['fcntl', 'flock', 'sysvsem', 'pthread'])
def test_mutex_mechanisms(httpd_factory, mech):
    spec = mech if mech in ('sysvsem', 'pthread') else '%s:run' % mech
    srv = httpd_factory.create('mutex-%s' % mech, global_extra=['Mutex %s sse-store' % spec])
    srv.start(expect_children=2)
    ch = uniq(mech)
    streams = [srv.sub('/events/%s' % ch) for _ in range(6)]
    ids = []
    for i in range(20):
        ids.append(srv.pub(ch, str(i))['id'])
    for s in streams:
        assert [e.id for e in s.wait_for(20)] == ids
    assert srv.channel(ch)['subscribers'] == 6


# a store that cannot be created (64G of shared memory) stops httpd from
# starting, and the error log says why
def test_store_impossible_refuses_to_start(httpd_factory):
    srv = httpd_factory.create('nostore', global_extra=['SSESharedMemorySize 64G'])
    srv.log_ignore += [r'AH00020', r'sse:crit']
    try:
        srv.start(timeout=10)
    except RuntimeError as e:
        assert 'SSE00002' in str(e) and 'cannot create the event store' in str(e), str(e)[-600:]
        return
    if srv.get('/sse-admin/status').status_code == 200:
        pytest.skip('this machine could allocate 64G of shared memory')
    pytest.fail('httpd started without a store')


# a graceful restart whose new store cannot be created does not take the whole server down
def test_graceful_restart_to_impossible_store_keeps_server(httpd_factory):
    import requests
    srv = httpd_factory.start('badgeo', global_extra=['SSESharedMemorySize 1M'])
    srv.log_ignore += [r'AH00020', r'sse:crit']
    ch = uniq('bg')
    srv.pub(ch, 'before')
    srv.global_extra = ['SSESharedMemorySize 64G']
    srv.write_config()
    gens = srv.count_log(GENERATION_LINE)
    srv.apachectl('graceful')
    wait_until(lambda: srv.count_log(GENERATION_LINE) > gens or not srv.is_running(), 15)
    assert srv.is_running(), 'the server exited on a graceful restart:\n' + srv.read_log()[-600:]
    assert wait_until(lambda: srv.count_log(GENERATION_LINE) > gens, 15)
    # the previous store is kept, history included
    st = requests.get(srv.url('/sse-admin/status'), timeout=10)
    assert st.status_code == 200, st.text
    assert srv.channel(ch)['messages'] == 1
    assert 'SSE00010' in srv.read_log()


CACHE_CONF = ['LoadModule cache_module /usr/lib/apache2/modules/mod_cache.so',
              'LoadModule cache_socache_module /usr/lib/apache2/modules/mod_cache_socache.so',
              'LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so',
              'CacheSocache shmcb', 'CacheQuickHandler on', 'CacheIgnoreCacheControl On',
              'CacheStoreNoStore On', 'CacheIgnoreNoLastMod On', 'CacheDefaultExpire 300',
              'CacheSocacheMaxSize 1000000', 'SSEMaxSubscribersPerChannel 1']
CACHE_LOCATION = '<Location /cached>\n    SetHandler sse-stream\n    SSEKeepAlive 1\n    CacheEnable socache\n</Location>\n'


# mod_cache (even told to store no-store answers) neither caches streams nor the finite "busy" answer
def test_mod_cache_is_kept_out(httpd_factory):
    from sse_env import DEFAULT_LOCATIONS
    srv = httpd_factory.start('cache', global_extra=CACHE_CONF, locations=DEFAULT_LOCATIONS + CACHE_LOCATION)
    ch = uniq('cache')
    a = srv.sub('/cached/%s' % ch)
    r = srv.pub(ch, 'first')
    assert [e.id for e in a.wait_for(1)] == [r['id']]
    busy = srv.subscribe('/cached/%s' % ch)
    assert busy.status == 200 and busy.wait_ended(10) and 'busy, retry later' in busy.comments
    a.close()
    assert srv.wait_channel_subscribers(ch, 0, 10)
    b = srv.sub('/cached/%s' % ch)
    assert 'busy, retry later' not in b.comments and b.events == []
    assert 'Age' not in b.headers and 'X-Cache' not in b.headers
    r2 = srv.pub(ch, 'second')
    assert [(e.id, e.data) for e in b.wait_for(1)] == [(r2['id'], 'second')]
