"""Real-browser clients for the mod_sse tests: tests/browser/eventsource.mjs
(playwright-core driving Debian's headless Chromium) opens pages and reports
what their EventSources saw. tests/browser/README.md says what it needs.

    browser = Browser()                      # one Chromium (`--serve`)
    with browser.open(page_url, stream_url, with_credentials=True,
                      cookies=['sess=ok@http://127.0.0.1:8080/']) as run:
        run.wait(lambda r: len(r.events()) >= 2, what='two events')
        shown = run.evaluate('document.title')   # any JSON value of the page
        run.screenshot('/tmp/page.png')
    result = run.result                      # the driver's result line
    browser.close()

Each run has a browser context of its own (cookies, cache, connections)."""
import itertools
import json
import os
import shutil
import subprocess
import threading
import time

from sse_env import TESTS

BROWSER_DIR = TESTS / 'browser'
DRIVER = BROWSER_DIR / 'eventsource.mjs'
CHROMIUM = os.environ.get('SSE_CHROMIUM', '/usr/bin/chromium')


# Node 20 from the npm registry, where scripts/install-deps.sh put it because
# the system's node was older (Debian bookworm's is 18)
LOCAL_NODES = sorted((BROWSER_DIR / '.node' / 'node_modules').glob('node-linux-*/bin/node'))


def node_path():
    """The node that runs the pinned npm packages: the local one when there
    is one, else the first on PATH (None when there is none)."""
    return str(LOCAL_NODES[0]) if LOCAL_NODES else shutil.which('node')


def node_problem():
    """Why node cannot run tests/browser's packages (they need Node 20 or
    later), or None."""
    node = node_path()
    if not node:
        return 'node is missing (Debian packages nodejs and npm)'
    version = subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip('v').split('.')[0] or 0) < 20:
        return '%s is %s; the pinned npm packages need Node 20 or later' % (node, version)
    return None


def missing():
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return '%s is missing (Debian package chromium)' % CHROMIUM
    problem = node_problem()
    if problem:
        return problem
    if not (BROWSER_DIR / 'node_modules' / 'playwright-core' / 'package.json').exists():
        return 'playwright-core is not installed in %s (npm ci)' % BROWSER_DIR
    return None


class BrowserError(AssertionError):
    pass


class Browser:
    """The driver in --serve mode: one Chromium for many runs."""

    def __init__(self, launch_timeout=60):
        problem = missing()
        if problem:
            raise BrowserError('the browser tests need Chromium, node and playwright-core: %s; '
                               'run `sh scripts/install-deps.sh` as root' % problem)
        self.cond = threading.Condition()
        self.lines = []              # every line the driver printed, parsed
        self.stderr = ''
        self._ids = itertools.count(1)
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD='1')
        self.proc = subprocess.Popen([node_path(), str(DRIVER), '--serve'], cwd=str(BROWSER_DIR),
                                     env=env, text=True, bufsize=1, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()
        self.wait(lambda: any(o.get('kind') == 'launched' for o in self.lines),
                  launch_timeout, 'Chromium launch')

    def _read_stdout(self):
        for raw in self.proc.stdout:
            try:
                o = json.loads(raw)
            except ValueError:
                o = {'kind': 'unparsed', 'text': raw.rstrip('\n')}
            with self.cond:
                self.lines.append(o)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self.cond:
                self.stderr += raw

    def alive(self):
        return self.proc.poll() is None or self._out.is_alive()

    def describe(self, run_id=None, skip=()):
        with self.cond:
            lines = [o for o in self.lines if (run_id is None or o.get('run') == run_id)
                     and o.get('kind') not in skip]
            err = self.stderr
        return 'last driver lines:\n%s\ndriver stderr:\n%s' % (
            '\n'.join(json.dumps(o, ensure_ascii=False) for o in lines[-25:]), err[-3000:])

    def wait(self, pred, timeout, what, run_id=None):
        """Waits until pred() holds (called with the lock held); raises
        BrowserError with the driver's last lines when it does not."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    if pred():
                        break
                    raise BrowserError('browser: no %s within %.0fs%s\n%s' % (
                        what, timeout, '' if self.alive() else ' (the driver ended)',
                        self.describe(run_id)))
                self.cond.wait(min(left, 0.2))

    def _send(self, cmd):
        try:
            self.proc.stdin.write(json.dumps(cmd) + '\n')
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise BrowserError('the driver is gone (%r)\n%s' % (e, self.describe()))

    def open(self, page, source=None, *, with_credentials=False, cookies=(), types=(),
             viewport=None, timeout=30):
        """Opens page in a new context and, with source, runs
        new EventSource(source, {withCredentials}) there. cookies are
        'NAME=VALUE@URL' strings; viewport is (width, height). Returns the
        Run once the page is ready."""
        run = Run(self, 'r%d' % next(self._ids))
        cmd = {'open': run.id, 'page': page, 'withCredentials': with_credentials,
               'types': list(types), 'cookies': []}
        if source:
            cmd['source'] = source
        if viewport:
            cmd['viewport'] = {'width': viewport[0], 'height': viewport[1]}
        for c in cookies:
            nv, _, url = c.partition('@')
            name, _, value = nv.partition('=')
            cmd['cookies'].append({'name': name, 'value': value, 'url': url})
        self._send(cmd)
        self.wait(lambda: run.kinds('ready', None) or run.kinds('failed', None), timeout,
                  'page ready', run.id)
        failed = run.kinds('failed', None)
        if failed:
            raise BrowserError('browser: %s: %s' % (page, failed[0].get('error')))
        return run

    def close(self, timeout=30):
        """Ends every run and Chromium; returns problems (a list of strings)."""
        problems = []
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout)
            if rc != 0:
                problems.append('eventsource.mjs --serve exited with %d\n%s' % (rc, self.describe()))
        except subprocess.TimeoutExpired:
            self.proc.terminate()           # playwright closes Chromium on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            problems.append('eventsource.mjs --serve did not end within %ds' % timeout)
        self._out.join(5)
        self._err.join(5)
        return problems


class Run:
    """One page of a Browser; a context manager that closes it on the way out."""

    def __init__(self, browser, run_id):
        self.browser = browser
        self.id = run_id
        self.result = None           # the driver's result line, after close()

    def kinds(self, kind, source=0):
        """This run's lines of one kind (for one source; None: any)."""
        with self.browser.cond:
            return [o for o in self.browser.lines if o.get('run') == self.id
                    and o.get('kind') == kind
                    and (source is None or o.get('source', source) == source)]

    def events(self, source=0):
        return self.kinds('event', source)

    def count(self, kind, source=0):
        return len(self.kinds(kind, source))

    def console(self):
        return [o['text'] for o in self.kinds('console', None)]

    def wait(self, pred, timeout=15, what='condition'):
        """Waits until pred(self) holds."""
        self.browser.wait(lambda: pred(self), timeout, what, self.id)

    def _command(self, cmd, done_kind, timeout):
        """Sends cmd; waits for one more line of done_kind (or 'failed')."""
        done, failed = self.count(done_kind, None), self.count('failed', None)
        self.browser._send(cmd)
        self.browser.wait(lambda: self.count(done_kind, None) > done
                          or self.count('failed', None) > failed, timeout, done_kind, self.id)
        if self.count('failed', None) > failed:
            raise BrowserError('browser: %r failed: %s' % (cmd, self.kinds('failed', None)[-1]))

    def hold(self, match, timeout=15):
        """From now on the browser holds this page's requests whose URL
        contains match (they are reported as 'held' lines and have not
        reached the server) until release()."""
        self._command({'hold': self.id, 'match': match}, 'holding', timeout)

    def release(self, timeout=15):
        """Lets the held requests go on; holds no more."""
        self._command({'release': self.id}, 'released', timeout)

    def evaluate(self, js, timeout=15):
        """Evaluates the JavaScript expression js in the page (awaiting a
        promise); returns its value, which must be JSON."""
        n = self.count('evaluated', None)
        self._command({'eval': self.id, 'js': js}, 'evaluated', timeout)
        return self.kinds('evaluated', None)[n]['value']

    def wait_js(self, js, pred=bool, timeout=15, what=None):
        """Evaluates js in the page until pred(its value) holds; returns
        that value, or raises BrowserError with the last one."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(js, timeout)
            if pred(value):
                return value
            if time.monotonic() >= deadline:
                raise BrowserError('browser: no %s within %.0fs (last value %r)\n%s' % (
                    what or js, timeout, value, self.browser.describe(self.id, ('evaluated',))))
            time.sleep(0.1)

    def screenshot(self, path, timeout=30):
        """Writes a PNG of the page's viewport to path."""
        self._command({'screenshot': self.id, 'path': str(path)}, 'screenshot', timeout)

    def close(self, timeout=15):
        """Closes the page and its context; returns the result line."""
        if self.result is None:
            self.browser._send({'close': self.id})
            self.browser.wait(lambda: self.kinds('result', None), timeout, 'result', self.id)
            self.result = self.kinds('result', None)[-1]
        return self.result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.result is None:
            try:
                self.close()
            except BrowserError:
                if exc[0] is None:
                    raise
