"""Checks that mean something only against the sanitizer build
(SSE_SANITIZE=1, make asan): every test there already fails on a report,
these cover paths the rest of the suite passes through only by chance."""
import pytest

import sse_env
from sse_env import uniq

pytestmark = pytest.mark.skipif(not sse_env.SANITIZE,
                                reason='needs the sanitizer build (SSE_SANITIZE=1, make asan)')


# a child's stop ends its notify dispatcher thread without a report: the
# thread used to end in apr_thread_exit(), whose pthread_exit() skipped the
# frame's epilogue and left its stack poisoned, and ASan then reported its
# own thread teardown (stack-buffer-underflow in sigaltstack)
def test_child_stop_ends_dispatcher_without_report(httpd_factory):
    srv = httpd_factory.start('dispatcher', expect_children=2)
    ch = uniq('disp')
    s = srv.sub('/events/%s' % ch)
    srv.pub(ch, 'x')
    assert [e.data for e in s.wait_for(1)] == ['x']
    s.close()
    srv.quiesce()
    assert srv.stop()
    reports = srv.sanitizer_reports()
    assert not reports, '\n'.join(reports)
