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
