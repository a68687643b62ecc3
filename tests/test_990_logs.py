"""The main server's error_log after the whole suite: tagged messages, no
errors from mod_sse during normal operation."""
import re


# every mod_sse message at debug level or above carries an SSEnnnnn tag
def test_sse_log_lines_are_tagged(sse):
    untagged = [line for line in sse.read_log().splitlines()
                if re.search(r'\[sse:(debug|info|notice|warn|error|crit|alert|emerg)\]', line)
                and not re.search(r'SSE\d{5}', line)]
    assert not untagged, '\n'.join(untagged[:20])


# normal operation logs no mod_sse errors
def test_no_sse_errors_logged(sse):
    bad = [line for line in sse.read_log().splitlines()
           if re.search(r'\[sse:(error|crit|alert|emerg)\]', line)]
    assert not bad, '\n'.join(bad[:20])


# stream opens, publishes and stream ends are logged at debug level
def test_debug_log_shows_activity(sse):
    debug = [line for line in sse.read_log().splitlines() if '[sse:debug]' in line]
    assert len(debug) > 100


# (suite guard) the suite stays well within the main server's 1024-channel table
def test_suite_channel_budget(sse):
    st = sse.status()
    print('main server: %d channels, %d messages, shm used %d' % (st['channels'], st['messages'], st['shm']['used']))
    assert st['channels'] < 900, 'tests create too many channels on the main server'
