"""Directive parsing: `apache2 -t` accepts good values and refuses bad ones,
including server-config directives inside <VirtualHost>."""
import pytest

from sse_env import HttpdServer


def configtest(base_dir, global_extra=(), locations_extra=''):
    from sse_env import DEFAULT_LOCATIONS
    srv = HttpdServer('conf', base_dir, global_extra=global_extra,
                      locations=DEFAULT_LOCATIONS + locations_extra)
    return srv.configtest()


GOOD = [
    ['SSEHistorySize 5000'], ['SSEHistoryMaxAge 0'], ['SSEHistoryMaxAge 3600'],
    ['SSESharedMemorySize 1M'], ['SSESharedMemorySize 512K'], ['SSESharedMemorySize 1048576'],
    ['SSEMaxChannels 10'], ['SSEMaxMessageSize 1K'], ['SSEMaxMessageSize 1M'],
    ['SSEMaxSubscribers 10'], ['SSEMaxSubscribersPerChannel 0'], ['SSEKeepAlive 0'],
    ['SSERetry 1000'], ['SSEAutoCreate off'], ['SSEAutoCreate On'],
    ['Mutex default sse-store'],
]


# good directive values pass the configuration test
@pytest.mark.parametrize('lines', GOOD, ids=[' '.join(g) for g in GOOD])
def test_good_directives(built, base_dir, lines):
    r = configtest(base_dir, lines)
    assert r.returncode == 0, r.stderr


BAD = [
    ['SSEHistorySize abc'], ['SSEHistorySize -1'], ['SSEHistorySize 0'],
    ['SSEMaxChannels 100000', 'SSESharedMemorySize 1M'], ['SSEHistoryMaxAge x'], ['SSEHistoryMaxAge -2'],
    ['SSESharedMemorySize 12X'], ['SSESharedMemorySize abc'], ['SSEMaxChannels x'], ['SSEMaxChannels -1'],
    ['SSEMaxMessageSize abc'], ['SSEMaxSubscribers -3'], ['SSEMaxSubscribers x'],
    ['SSEMaxSubscribersPerChannel x'], ['SSEKeepAlive -1'], ['SSEKeepAlive abc'], ['SSERetry abc'],
    ['SSERetry -5'], ['SSEAutoCreate maybe'], ['SSEChannel news'], ['SSEHistorySize 1 2'],
]


# bad directive values are refused by the configuration test with a message naming the directive
@pytest.mark.parametrize('lines', BAD, ids=[' '.join(b) for b in BAD])
def test_bad_directives(built, base_dir, lines):
    r = configtest(base_dir, lines)
    assert r.returncode != 0, 'accepted: %r' % lines
    assert lines[0].split()[0] in r.stderr, r.stderr


# a bad channel name in SSEChannel is refused at configuration time
@pytest.mark.parametrize('name', ['"a b"', 'x' * 129, 'a/b'])
def test_bad_pinned_channel(built, base_dir, name):
    r = configtest(base_dir, locations_extra='<Location /bad>\n SetHandler sse-stream\n SSEChannel %s\n</Location>\n' % name)
    assert r.returncode != 0 and 'SSEChannel' in r.stderr, (r.returncode, r.stderr)


SERVER_ONLY = ['SSEHistorySize 5', 'SSEHistoryMaxAge 5', 'SSESharedMemorySize 1M', 'SSEMaxChannels 5',
               'SSEMaxMessageSize 1K', 'SSEMaxSubscribers 5', 'SSEMaxSubscribersPerChannel 5']


# server-config directives inside <VirtualHost> are refused
@pytest.mark.parametrize('line', SERVER_ONLY)
def test_server_config_directive_in_vhost(built, base_dir, line):
    vhost = '<VirtualHost 127.0.0.1:1>\n ServerName vh\n %s\n</VirtualHost>\n' % line
    r = configtest(base_dir, locations_extra=vhost)
    assert r.returncode != 0, 'accepted %s in a VirtualHost' % line
    assert line.split()[0] in r.stderr, r.stderr


# server/directory directives are accepted inside <VirtualHost>
@pytest.mark.parametrize('line', ['SSERetry 1000', 'SSEKeepAlive 5', 'SSEAutoCreate Off'])
def test_vhost_directives_accepted(built, base_dir, line):
    vhost = '<VirtualHost 127.0.0.1:1>\n ServerName vh\n %s\n</VirtualHost>\n' % line
    r = configtest(base_dir, locations_extra=vhost)
    assert r.returncode == 0, r.stderr
