"""pytest fixtures for the mod_sse suite: run with `/usr/bin/python3 -m pytest tests`
from the repository root. Needs .libs/mod_sse.so (runs `make` once if it is
missing), /usr/sbin/apache2 and apxs. Set SSE_KEEP=1 to keep the server
directories (they are always kept when a test fails)."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import sse_browser
import sse_env

_state = {'base': None}


@pytest.fixture(scope='session')
def base_dir(request):
    d = Path(tempfile.mkdtemp(prefix='sse-tests-'))
    os.chmod(d, 0o755)
    _state['base'] = d
    yield d
    if request.session.testsfailed == 0 and not os.environ.get('SSE_KEEP'):
        shutil.rmtree(d, ignore_errors=True)
        _state['base'] = None


def pytest_terminal_summary(terminalreporter):
    if _state['base'] is not None:
        terminalreporter.write_line('mod_sse test servers kept in %s' % _state['base'])


@pytest.fixture(scope='session')
def built():
    try:
        sse_env.ensure_built()
    except RuntimeError as e:
        pytest.exit(str(e), returncode=3)


@pytest.fixture(scope='session')
def sse(built, base_dir):
    """The main server: mpm_event with two children, all standard locations."""
    srv = sse_env.HttpdServer('main', base_dir)
    srv.start(expect_children=2)
    yield srv
    sse_env.close_all_streams()
    # (suite guard) whatever ran stays well within the main server's 1024-channel table
    channels = srv.status()['channels']
    srv.quiesce()
    ok = srv.stop()
    crashes = srv.crash_lines()
    reports = srv.sanitizer_reports()
    assert ok, 'main server did not exit within 10s of SIGTERM (%s)' % srv.dir
    assert not crashes, 'main server error_log:\n' + '\n'.join(crashes[:30])
    assert channels < 900, 'tests create too many channels on the main server: %d' % channels
    assert not reports, '\n'.join(reports)


def _factory(base_dir):
    f = sse_env.ServerFactory(base_dir)
    yield f
    problems = f.stop_all()
    if problems:
        pytest.fail('\n'.join(problems))


@pytest.fixture
def httpd_factory(built, base_dir):
    """Starts extra servers for one test; stopped (and checked) at its end."""
    yield from _factory(base_dir)


@pytest.fixture(scope='module')
def module_factory(built, base_dir):
    """Starts extra servers shared by the tests of one module."""
    yield from _factory(base_dir)


@pytest.fixture(scope='module')
def browser():
    """Headless Chromium for the tests of one module (tests/sse_browser.py)."""
    b = sse_browser.Browser()
    yield b
    problems = b.close()
    if problems:
        pytest.fail('\n'.join(problems))


@pytest.fixture(autouse=True)
def _per_test_checks():
    """Closes the test's streams and fails it when a running server logged a
    crash (segfault, children that would not exit, crit/emerg) or when any
    server wrote a sanitizer report (SSE_SANITIZE=1) no check has shown yet."""
    positions = [(s, s.log_size()) for s in sse_env.RUNNING]
    yield
    sse_env.close_all_streams()
    problems = []
    for srv, pos in positions:
        crashes = srv.crash_lines(pos)
        if crashes:
            problems.append('%s (%s) error_log:\n%s' % (srv.name, srv.dir, '\n'.join(crashes[:20])))
    problems += sse_env.new_sanitizer_reports()
    if problems:
        pytest.fail('\n'.join(problems))
