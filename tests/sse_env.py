"""Test environment for mod_sse: private httpd instances, an SSE client over raw
sockets, admin API helpers and error-log checks.

Nothing here touches /etc/apache2: every server gets a fresh ServerRoot under a
temporary directory, its own port, PidFile and DefaultRuntimeDir.
"""
import itertools
import json
import os
import re
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional
from urllib.parse import quote

import requests
from requests.structures import CaseInsensitiveDict

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / 'tests'
# SSE_SANITIZE=1 (make asan): test mod_sse built with AddressSanitizer and
# UndefinedBehaviorSanitizer (build_variant 'asan'), run every httpd with the
# sanitizer runtime preloaded and fail a test whose servers wrote a report;
# see "Sanitizer builds" below
SANITIZE = os.environ.get('SSE_SANITIZE', '') not in ('', '0')
MOD_SSE = (REPO / 'build' / 'variants' / 'asan' / '.libs' / 'mod_sse.so' if SANITIZE
           else REPO / '.libs' / 'mod_sse.so')
TEST_MOD_DIR = TESTS / 'mod_sse_test'
TEST_MOD_SRC = TEST_MOD_DIR / 'mod_sse_test.c'
TEST_MOD_SO = TEST_MOD_DIR / '.libs' / 'mod_sse_test.so'
EXAMPLE_MOD_SO = REPO / 'examples' / '.libs' / 'mod_sse_example.so'
APACHE2 = '/usr/sbin/apache2'
APXS = shutil.which('apxs') or '/usr/bin/apxs'
MODULES = Path('/usr/lib/apache2/modules')
IS_ROOT = os.geteuid() == 0

# error_log content that means a crash or children that would not exit
CRASH_PATTERNS = [
    'Segmentation fault',
    'AH00052',          # child pid N exit signal ...
    'AH00051',          # child pid N exit signal ..., possible coredump
    'AH00060',          # seg fault or similar nasty error detected in the parent
    '[core:crit]',
    ':emerg]',
    'AH00045',          # child process N still did not exit, sending a SIGTERM
    'AH00046',          # child process N still did not exit, sending a SIGKILL
]

DEFAULT_TIMEOUT = 10.0

# How a stream without Last-Event-ID opens: a comment, and a data-less id
# that sets the client's last event id to where the stream starts.
OPENING = re.compile(rb': ok\nid: (\d+)\n\n')

_counter = itertools.count(1)


def uniq(prefix='ch'):
    """A channel name no other test uses (valid channel characters only)."""
    return '%s-%d-%s' % (prefix, next(_counter), uuid.uuid4().hex[:8])


def _ephemeral_range():
    try:
        lo, hi = open('/proc/sys/net/ipv4/ip_local_port_range').read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_port_rng = random.Random()
_ports_handed = set()     # never the same port twice in one session


def free_port():
    """A port no one listens on, below the kernel's ephemeral range: a port
    from inside it could be taken as the source port of any outgoing
    connection (the suite opens thousands) between this check and httpd's
    bind. The bench uses 188xx; this stays clear of it."""
    lo, _ = _ephemeral_range()
    top = min(lo, 32768) - 1
    for _ in range(200):
        port = _port_rng.randint(20000, top)
        if 18700 <= port <= 18999 or port in _ports_handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            _ports_handed.add(port)
            return port
    raise RuntimeError('no free port between 20000 and %d' % top)


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.05):
    """Polls pred() until it returns a true value or timeout passes; returns
    the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Building

_build_lock = threading.Lock()
_examples_built = []


def build_variant(name, defines, cflags=(), ldflags=()):
    """Builds mod_sse from the repository's sources with extra -D flags
    (and compiler/linker flags) into build/variants/<name>/ (test builds
    only: other store layouts, crash hooks, the sanitizer build); returns
    the path of the .so. Rebuilt when a source is newer or the flags
    changed. Under SSE_SANITIZE every variant is also instrumented, in
    build/variants/<name>-asan/."""
    with _build_lock:
        return _build_variant_locked(name, defines, cflags, ldflags)


def _build_variant_locked(name, defines, cflags, ldflags):
    if SANITIZE and name != 'asan':
        name += '-asan'
    if SANITIZE:
        cflags = list(cflags) + SAN_FLAGS + SAN_CFLAGS
        ldflags = list(ldflags) + SAN_FLAGS
    out = REPO / 'build' / 'variants' / name
    so = out / '.libs' / 'mod_sse.so'
    stamp = out / 'build-command'
    sources = sorted(REPO.glob('*.c')) + sorted(REPO.glob('*.h'))
    cmd = [APXS, '-c', '-Wc,-Wall', '-Wc,-Wextra', '-Wc,-std=gnu99'] + \
          ['-D%s' % d for d in defines] + ['-Wc,%s' % f for f in cflags] + \
          ['-Wl,%s' % f for f in ldflags] + \
          ['-o', 'mod_sse.la'] + [p.name for p in sorted(REPO.glob('*.c'))] + \
          ['-lcrypto', '-lhiredis']
    if so.exists() and so.stat().st_mtime >= max(p.stat().st_mtime for p in sources) \
            and stamp.exists() and stamp.read_text() == ' '.join(cmd):
        return so
    out.mkdir(parents=True, exist_ok=True)
    for p in sources:
        shutil.copy2(p, out / p.name)
    r = subprocess.run(cmd, cwd=str(out), capture_output=True, text=True)
    if r.returncode != 0 or not so.exists():
        raise RuntimeError('building variant %s failed:\n%s\n%s'
                           % (name, r.stdout[-3000:], r.stderr[-3000:]))
    stamp.write_text(' '.join(cmd))
    return so


def ensure_built():
    """mod_sse.so must exist (make is run once if not); the test module is
    built with apxs when missing or out of date."""
    with _build_lock:
        if SANITIZE:
            _build_variant_locked('asan', [], (), ())
        elif not MOD_SSE.exists():
            r = subprocess.run(['make', '-C', str(REPO)], capture_output=True, text=True)
            if r.returncode != 0 or not MOD_SSE.exists():
                raise RuntimeError('mod_sse is not built and `make -C %s` failed (rc %d):\n%s\n%s'
                                   % (REPO, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        newest_src = max(TEST_MOD_SRC.stat().st_mtime, (REPO / 'mod_sse.h').stat().st_mtime)
        if not TEST_MOD_SO.exists() or TEST_MOD_SO.stat().st_mtime < newest_src:
            r = subprocess.run([APXS, '-c', '-Wc,-Wall', '-Wc,-Wextra', '-I%s' % REPO,
                                'mod_sse_test.c'],
                               cwd=str(TEST_MOD_DIR), capture_output=True, text=True)
            if r.returncode != 0 or not TEST_MOD_SO.exists():
                raise RuntimeError('building tests/mod_sse_test failed:\n%s\n%s'
                                   % (r.stdout[-3000:], r.stderr[-3000:]))
        # the stream API's example module, built as its README says (once)
        if not _examples_built:
            r = subprocess.run(['make', '-s', '-C', str(REPO), 'examples'],
                               capture_output=True, text=True)
            if r.returncode != 0 or not EXAMPLE_MOD_SO.exists():
                raise RuntimeError('make examples failed:\n%s\n%s'
                                   % (r.stdout[-3000:], r.stderr[-3000:]))
            _examples_built.append(True)


# ---------------------------------------------------------------------------
# Sanitizer builds (SSE_SANITIZE=1, make asan; README "Development")
#
# Debian's apache2 is not instrumented, so the AddressSanitizer runtime must
# be the first library of the process: every apache2 we run gets LD_PRELOAD
# of the runtime of the compiler apxs uses (libasan, then libubsan, which
# the instrumented module needs as well). ASan reports go to files, not to
# stderr (httpd points stderr at the error_log, where a child's report would
# be interleaved with other lines): <server dir>/logs/sanitizer/asan.<pid>.
# That directory is world-writable because children run as nobody when the
# tests run as root. gcc 12's UBSan ignores its log_path when it runs beside
# ASan and prints to stderr: the error_log once httpd has opened it,
# stdout.log before. After each test and when a server stops, the harness
# fails on any report, in a file or in those logs, it has not shown before.

SAN_FLAGS = ['-fsanitize=address,undefined', '-fno-sanitize-recover=undefined',
             '-fno-omit-frame-pointer']      # as in the Makefile's SAN_FLAGS
# apxs compiles with -O2 -D_FORTIFY_SOURCE=2: the fortified string functions
# (__memcpy_chk ...) are not intercepted by ASan, so they would hide
# overflows; -O1 keeps stack traces close to the source
SAN_CFLAGS = ['-U_FORTIFY_SOURCE', '-O1']
SUPPRESSIONS = TESTS / 'sanitizer'

# ASan options for httpd:
# - detect_leaks=0: httpd keeps its configuration and process pools (and
#   what OpenSSL, PCRE and the MPM allocate once) until exit, and a child
#   exits without freeing them; that is by design, not a leak, and a leak
#   check would report httpd's and APR's allocations, not ours. The pure
#   units are leak-checked by the C unit tests (make asan-unit) instead.
# - halt_on_error=1: the first error is the one to read; after a memory
#   error a child's state is corrupt and what it reports next is a
#   consequence. The child exits, the parent starts another one and the
#   test fails on the report. (UBSan checks are built with
#   -fno-sanitize-recover, so they halt at the first report too.)
# - abort_on_error=0: exit with exitcode 1 rather than SIGABRT, so no core
#   dumps are written and the report file is the one signal.
# - handle_abort=1: an abort() (a failed assert, APR out of memory) is
#   reported with its stack like a SEGV is by default.
ASAN_OPTIONS = ['detect_leaks=0', 'halt_on_error=1', 'abort_on_error=0',
                'print_stacktrace=1', 'handle_abort=1',
                'suppressions=%s' % (SUPPRESSIONS / 'asan.supp')]
UBSAN_OPTIONS = ['halt_on_error=1', 'abort_on_error=0', 'print_stacktrace=1',
                 'suppressions=%s' % (SUPPRESSIONS / 'ubsan.supp')]

_san_preload = None


def sanitizer_preload():
    """LD_PRELOAD value: the sanitizer runtimes of the compiler apxs builds
    the module with (asan first)."""
    global _san_preload
    if _san_preload is None:
        cc = subprocess.run([APXS, '-q', 'CC'], capture_output=True, text=True).stdout.strip()
        libs = []
        for lib in ('libasan.so', 'libubsan.so'):
            r = subprocess.run([cc or 'gcc', '-print-file-name=%s' % lib],
                               capture_output=True, text=True)
            path = os.path.realpath(r.stdout.strip())
            if r.returncode != 0 or not os.path.isfile(path):
                raise RuntimeError('SSE_SANITIZE: %s not found by %s (%r)' % (lib, cc, r.stdout))
            libs.append(path)
        _san_preload = ':'.join(libs)
    return _san_preload


def sanitizer_env(log_dir):
    """Environment for an apache2 process whose reports go to log_dir."""
    env = dict(os.environ)
    env['LD_PRELOAD'] = sanitizer_preload()
    env['ASAN_OPTIONS'] = ':'.join(ASAN_OPTIONS + ['log_path=%s/asan' % log_dir])
    env['UBSAN_OPTIONS'] = ':'.join(UBSAN_OPTIONS + ['log_path=%s/ubsan' % log_dir])
    return env


# the first line of a report printed on stderr: UBSan's
# "file:line:col: runtime error: ...", any "==pid==ERROR: AddressSanitizer"
# or "... Sanitizer: CHECK failed", and ASan's own "ERROR: Can't open file"
# for its log_path
SAN_STDERR = re.compile(r': runtime error: |Sanitizer|==\d+==ERROR: ')

SERVERS = []      # every HttpdServer created under SSE_SANITIZE


def new_sanitizer_reports():
    """Report files no check has shown yet, of every server so far, as
    text: the file name and its first lines."""
    out = []
    for srv in SERVERS:
        out += srv.sanitizer_reports()
    return out


# ---------------------------------------------------------------------------
# SSE parsing (WHATWG HTML "server-sent events", event stream interpretation)

@dataclass
class Event:
    id: str                 # the last event ID string at dispatch
    event: str              # event type ("message" when none was given)
    data: str
    retry: Optional[int]    # a retry field inside this event's block, if any
    id_field: Optional[str]  # the id field of this block (None if absent)

    def json(self):
        return json.loads(self.data)


_DIGITS = re.compile(r'[0-9]+')


class SseParser:
    """Incremental event-stream parser: lines end at CRLF, LF or CR; one
    leading space of a value is stripped; dispatch on a blank line."""

    def __init__(self):
        self.buf = b''
        self.started = False
        self.skip_lf = False
        self.data = []
        self.etype = ''
        self.id_buffer = ''          # the spec's "last event ID buffer"
        self.last_id = ''            # EventSource's last event ID string,
                                     # set when a block is dispatched
        self.block_id = None
        self.block_retry = None
        self.events: List[Event] = []
        self.comments: List[str] = []
        self.retries: List[int] = []
        self.unknown_fields: List[str] = []

    def feed(self, b):
        self.buf += b
        if not self.started:
            if len(self.buf) < 3 and b'\xef\xbb\xbf'.startswith(self.buf):
                return
            if self.buf.startswith(b'\xef\xbb\xbf'):
                self.buf = self.buf[3:]
            self.started = True
        if self.skip_lf and self.buf:
            if self.buf[:1] == b'\n':
                self.buf = self.buf[1:]
            self.skip_lf = False
        while self.buf:
            i_lf = self.buf.find(b'\n')
            i_cr = self.buf.find(b'\r')
            if i_lf < 0 and i_cr < 0:
                break
            if i_cr >= 0 and (i_lf < 0 or i_cr < i_lf):
                line = self.buf[:i_cr]
                if i_cr + 1 == len(self.buf):
                    self.buf = b''
                    self.skip_lf = True      # a following LF belongs to this CR
                elif self.buf[i_cr + 1:i_cr + 2] == b'\n':
                    self.buf = self.buf[i_cr + 2:]
                else:
                    self.buf = self.buf[i_cr + 1:]
            else:
                line = self.buf[:i_lf]
                self.buf = self.buf[i_lf + 1:]
            self._line(line.decode('utf-8', 'replace'))

    def _line(self, line):
        if line == '':
            self._dispatch()
            return
        if line.startswith(':'):
            v = line[1:]
            self.comments.append(v[1:] if v.startswith(' ') else v)
            return
        if ':' in line:
            name, value = line.split(':', 1)
            if value.startswith(' '):
                value = value[1:]
        else:
            name, value = line, ''
        if name == 'event':
            self.etype = value
        elif name == 'data':
            self.data.append(value)
        elif name == 'id':
            if '\0' not in value:
                self.id_buffer = value
                self.block_id = value
        elif name == 'retry':
            if _DIGITS.fullmatch(value):
                self.block_retry = int(value)
                self.retries.append(int(value))
        else:
            self.unknown_fields.append(name)

    def _dispatch(self):
        # step 1 comes before the empty-data check: an id: line in a block
        # without data still sets the last event ID string
        self.last_id = self.id_buffer
        if self.data:
            self.events.append(Event(id=self.last_id, event=self.etype or 'message',
                                     data='\n'.join(self.data), retry=self.block_retry,
                                     id_field=self.block_id))
        self.data = []
        self.etype = ''
        self.block_id = None
        self.block_retry = None


# ---------------------------------------------------------------------------
# HTTP/1.x client over a raw socket, with a reader thread

_streams_lock = threading.Lock()
OPEN_STREAMS = set()


def close_all_streams():
    with _streams_lock:
        streams = list(OPEN_STREAMS)
    for s in streams:
        s.close()


class HttpError(Exception):
    pass


class SseStream:
    """One HTTP request whose response body is read by a background thread.

    status/reason/headers are known when the constructor returns. The body is
    de-chunked into `raw` (exact bytes; `chunks` keeps the chunk payloads as
    framed by the server) and fed to an SseParser: `events`, `comments`,
    `retries`. `ended` is set at the end of the body (terminal chunk, EOF or
    Content-Length reached)."""

    def __init__(self, port, path, *, host='127.0.0.1', method='GET', headers=None,
                 last_event_id=None, accept='text/event-stream', http10=False, body=None,
                 connection_close=False, timeout=DEFAULT_TIMEOUT, rcvbuf=None, reading=True,
                 source=None, ssl_context=None):
        self.port = port
        self.path = path
        self.method = method
        self.cond = threading.Condition()
        self.parser = SseParser()
        self.raw = bytearray()
        self.chunks: List[bytes] = []
        self.ended = False
        self.clean_end = False     # terminal chunk / Content-Length / EOF in close mode
        self.eof = False
        self._closing = False
        self._tbuf = b''
        self._cur_chunk = bytearray()
        self.thread = None
        if rcvbuf or source:
            # a small receive window, set before connecting (slow-client
            # tests), or another loopback source address (per-client limits)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source:
                self.sock.bind((source, 0))
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            # HTTPS (tests/tls_env.py); close() then sends no close_notify
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        with _streams_lock:
            OPEN_STREAMS.add(self)
        try:
            lines = ['%s %s HTTP/%s' % (method, path, '1.0' if http10 else '1.1'),
                     'Host: %s:%d' % (host, port)]
            if accept:
                lines.append('Accept: %s' % accept)
            if last_event_id is not None:
                lines.append('Last-Event-ID: %s' % last_event_id)
            for k, v in (headers or {}).items():
                lines.append('%s: %s' % (k, v))
            if body is not None:
                lines.append('Content-Length: %d' % len(body))
            if connection_close:
                lines.append('Connection: close')
            req = ('\r\n'.join(lines) + '\r\n\r\n').encode('utf-8') + (body or b'')
            self.sock.sendall(req)
            self._read_head(timeout)
        except BaseException:
            self.close()
            raise
        if self.mode == 'none':
            self.ended = True
            self.clean_end = True
        elif reading:
            self.start_reading()

    def start_reading(self):
        """Starts the reader thread (done by the constructor unless reading=False)."""
        if self.thread is None and self.mode != 'none':
            self.sock.settimeout(0.25)
            self.thread = threading.Thread(target=self._run, daemon=True,
                                           name='sse %s' % self.path)
            self.thread.start()

    # -- response head ----------------------------------------------------
    def _read_head(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b''
        while b'\r\n\r\n' not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HttpError('no response head within %.0fs for %s %s (got %r)'
                                % (timeout, self.method, self.path, buf[:200]))
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise HttpError('connection closed before the response head for %s %s (got %r)'
                                % (self.method, self.path, buf[:200]))
            buf += d
        head, rest = buf.split(b'\r\n\r\n', 1)
        self.head_bytes = head + b'\r\n\r\n'
        lines = head.decode('latin-1').split('\r\n')
        m = re.match(r'HTTP/(\d\.\d) (\d{3}) ?(.*)', lines[0])
        if not m:
            raise HttpError('bad status line %r' % lines[0])
        self.http_version = m.group(1)
        self.status = int(m.group(2))
        self.reason = m.group(3)
        self.header_list = []
        self.headers = CaseInsensitiveDict()
        for line in lines[1:]:
            k, _, v = line.partition(':')
            k, v = k.strip(), v.strip()
            self.header_list.append((k, v))
            self.headers[k] = (self.headers[k] + ', ' + v) if k in self.headers else v
        te = self.headers.get('Transfer-Encoding', '').lower()
        if self.method == 'HEAD' or self.status in (204, 304) or self.status < 200:
            self.mode = 'none'
        elif 'chunked' in te:
            self.mode = 'chunked'
            self._cstate = 'size'
        elif 'Content-Length' in self.headers:
            self.mode = 'length'
            self._remaining = int(self.headers['Content-Length'])
        else:
            self.mode = 'eof'
        self._tbuf = rest
        if self.mode == 'none':
            self.extra_after_head = rest
        elif rest:
            with self.cond:
                self._transport()

    # -- body -------------------------------------------------------------
    def _run(self):
        try:
            while not self._closing and not self.ended:
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    d = b''
                with self.cond:
                    if not d:
                        self.eof = True
                        if self.mode == 'eof':
                            self.clean_end = True
                        self.ended = True
                    else:
                        self._tbuf += d
                        self._transport()
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def _payload(self, b):
        if not b:
            return
        self.raw += b
        self.parser.feed(b)

    def _transport(self):
        """Caller holds self.cond; consumes self._tbuf."""
        if self.mode == 'eof':
            self.chunks.append(self._tbuf)
            self._payload(self._tbuf)
            self._tbuf = b''
            return
        if self.mode == 'length':
            take = self._tbuf[:self._remaining]
            self._tbuf = self._tbuf[len(take):]
            self._remaining -= len(take)
            self._payload(take)
            if self._remaining == 0:
                self.ended = self.clean_end = True
            return
        while True:
            if self._cstate == 'size':
                i = self._tbuf.find(b'\r\n')
                if i < 0:
                    return
                line = self._tbuf[:i].split(b';')[0].strip()
                self._tbuf = self._tbuf[i + 2:]
                n = int(line, 16)
                if n == 0:
                    self._cstate = 'trailer'
                else:
                    self._cleft = n
                    self._cstate = 'data'
            elif self._cstate == 'data':
                if not self._tbuf:
                    return
                take = self._tbuf[:self._cleft]
                self._tbuf = self._tbuf[len(take):]
                self._cleft -= len(take)
                self._cur_chunk += take
                self._payload(take)
                if self._cleft == 0:
                    self.chunks.append(bytes(self._cur_chunk))
                    self._cur_chunk = bytearray()
                    self._cstate = 'crlf'
            elif self._cstate == 'crlf':
                if len(self._tbuf) < 2:
                    return
                if self._tbuf[:2] != b'\r\n':
                    raise HttpError('bad chunk framing: %r' % self._tbuf[:20])
                self._tbuf = self._tbuf[2:]
                self._cstate = 'size'
            elif self._cstate == 'trailer':
                i = self._tbuf.find(b'\r\n')
                if i < 0:
                    return
                line = self._tbuf[:i]
                self._tbuf = self._tbuf[i + 2:]
                if line == b'':
                    self.ended = self.clean_end = True
                    self._cstate = 'done'
                    return
            else:
                return

    # -- accessors ----------------------------------------------------------
    @property
    def events(self) -> List[Event]:
        with self.cond:
            return list(self.parser.events)

    @property
    def comments(self) -> List[str]:
        with self.cond:
            return list(self.parser.comments)

    @property
    def retries(self) -> List[int]:
        with self.cond:
            return list(self.parser.retries)

    @property
    def body(self) -> bytes:
        with self.cond:
            return bytes(self.raw)

    @property
    def text(self):
        return self.body.decode('utf-8', 'replace')

    def json(self):
        return json.loads(self.body.decode('utf-8'))

    def data_events(self):
        """Events other than sse-reset."""
        return [e for e in self.events if e.event != 'sse-reset']

    # -- waiting --------------------------------------------------------------
    def wait_until(self, pred, timeout=DEFAULT_TIMEOUT):
        """Waits until pred(self) is true (evaluated under the lock); returns
        its last value. Also returns when the body has ended."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    return pred(self)
                self.cond.wait(min(left, 0.2))

    def wait_for(self, n, timeout=DEFAULT_TIMEOUT):
        """Waits for at least n events (or the end of the body); returns them."""
        self.wait_until(lambda s: len(s.parser.events) >= n, timeout)
        return self.events

    def wait_comment(self, text, timeout=DEFAULT_TIMEOUT):
        return self.wait_until(lambda s: text in s.parser.comments, timeout)

    def wait_bytes(self, n, timeout=DEFAULT_TIMEOUT):
        self.wait_until(lambda s: len(s.raw) >= n, timeout)
        return self.body

    def wait_ended(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.2))
            return self.ended

    def read_all(self, timeout=DEFAULT_TIMEOUT):
        """For finite responses: waits for the end and returns the body."""
        if not self.wait_ended(timeout):
            raise HttpError('%s %s: body did not end within %.0fs (status %d, got %r)'
                            % (self.method, self.path, timeout, self.status, self.body[:300]))
        return self.body

    def wait_open(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the ': ok' comment (the stream is live)."""
        return self.wait_comment('ok', timeout)

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(5)
        with _streams_lock:
            OPEN_STREAMS.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __repr__(self):
        return '<SseStream %s %s status=%s events=%d ended=%s>' % (
            self.method, self.path, getattr(self, 'status', None),
            len(self.parser.events), self.ended)


def raw_request(port, request_bytes, timeout=DEFAULT_TIMEOUT):
    """Sends exact bytes, reads until EOF (the request should ask for
    Connection: close); returns everything received."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        s.sendall(request_bytes)
        out = b''
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            out += d
        return out


# ---------------------------------------------------------------------------
# Subscriber that reconnects with Last-Event-ID, like EventSource

class ResilientSubscriber(threading.Thread):
    """Keeps a subscription alive: when a stream ends (or after max_per_conn
    events, voluntarily) it reconnects with Last-Event-ID = the last id seen.
    Collects the data events of all connections in `events`."""

    def __init__(self, server, path, last_event_id=None, max_per_conn=None, rng=None):
        super().__init__(daemon=True, name='resilient %s' % path)
        self.server = server
        self.path = path
        self.last_id = last_event_id
        self.max_per_conn = max_per_conn
        self.rng = rng
        self.events: List[Event] = []
        self.resets: List[Event] = []
        self.resume_headers = []
        self.connections = 0
        self.server_ends = 0         # streams ended by the server
        self.voluntary = 0           # streams we closed ourselves
        self.busy = 0
        self.failures = []           # connect errors / non-200 answers
        self.stop_flag = threading.Event()
        self.current = None

    def run(self):
        while not self.stop_flag.is_set():
            try:
                s = SseStream(self.server.port, self.path, last_event_id=self.last_id, timeout=10)
            except (OSError, HttpError) as e:
                self.failures.append(repr(e))
                time.sleep(0.1)
                continue
            self.current = s
            if s.status != 200:
                self.failures.append('status %d' % s.status)
                s.close()
                time.sleep(0.2)
                continue
            self.connections += 1
            self.resume_headers.append(s.headers.get('SSE-Resume'))
            limit = None
            if self.max_per_conn:
                limit = self.rng.randint(1, self.max_per_conn) if self.rng else self.max_per_conn
            consumed = 0
            got = 0
            voluntary = False
            while not self.stop_flag.is_set():
                s.wait_until(lambda st, c=consumed: len(st.parser.events) > c, 0.3)
                evs = s.events[consumed:]
                consumed += len(evs)
                for e in evs:
                    self.last_id = e.id
                    if e.event == 'sse-reset':
                        self.resets.append(e)
                    else:
                        self.events.append(e)
                        got += 1
                with s.cond:
                    # EventSource's last event id: a data-less id: line
                    # (the stream's opening) counts too
                    if s.parser.last_id and consumed == len(s.parser.events):
                        self.last_id = s.parser.last_id
                if limit is not None and got >= limit:
                    voluntary = True
                    break
                if s.ended and consumed == len(s.events):
                    break
            if 'busy, retry later' in s.comments:
                self.busy += 1
            if voluntary:
                self.voluntary += 1
            elif not self.stop_flag.is_set():
                self.server_ends += 1
            s.close()
        if self.current is not None:
            self.current.close()

    def stop(self):
        self.stop_flag.set()
        self.join(15)


# ---------------------------------------------------------------------------
# httpd instances

MAIN_MPM = {
    'event': ['StartServers 2', 'ServerLimit 2', 'ThreadsPerChild 32', 'MaxRequestWorkers 64',
              'MinSpareThreads 1', 'MaxSpareThreads 64', 'ListenCoresBucketsRatio 1'],
    'worker': ['StartServers 2', 'ServerLimit 2', 'ThreadsPerChild 16', 'MaxRequestWorkers 32',
               'MinSpareThreads 1', 'MaxSpareThreads 32', 'ListenCoresBucketsRatio 1'],
    'prefork': ['StartServers 2', 'MinSpareServers 2', 'MaxSpareServers 16', 'ServerLimit 16',
                'MaxRequestWorkers 16'],
}

DEFAULT_LOCATIONS = """
<Location /events>
    SetHandler sse-stream
    SSEKeepAlive 1
</Location>
<Location /events-retry>
    SetHandler sse-stream
    SSERetry 2500
</Location>
<Location /threaded>
    SetHandler sse-stream
    SSEHandOff Off
    SSEKeepAlive 1
</Location>
<Location /quiet>
    SetHandler sse-stream
    SSEKeepAlive 0
</Location>
<Location /pinned>
    SetHandler sse-stream
    SSEChannel pinned-a
    SSEChannel pinned-b
</Location>
<Location /strict>
    SetHandler sse-stream
    SSEAutoCreate Off
</Location>
<Location /gz>
    SetHandler sse-stream
    SetOutputFilter DEFLATE
</Location>
<Location /br>
    SetHandler sse-stream
    SetOutputFilter BROTLI_COMPRESS
</Location>
<Location /sse-admin>
    SetHandler sse-admin
    Require ip 127.0.0.1 ::1
</Location>
<Location /sse-admin-denied>
    SetHandler sse-admin
    Require ip 10.255.255.1
</Location>
<Location /test-publish>
    SetHandler sse-test-publish
</Location>
"""

RUNNING = []      # HttpdServer objects currently running


class HttpdServer:
    def __init__(self, name, base_dir, *, mpm='event', mpm_conf=None, global_extra=(),
                 locations=DEFAULT_LOCATIONS, graceful_shutdown_timeout=5):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix='%s-' % name, dir=str(base_dir)))
        self.port = free_port()
        self.mpm = mpm
        self.mpm_conf = list(mpm_conf if mpm_conf is not None else MAIN_MPM[mpm])
        self.global_extra = list(global_extra)
        self.locations = locations
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.module_so = MOD_SSE
        self.preexec = None         # run in the parent before exec (limits)
        self.proc = None
        self.log_ignore = []      # regexes of error_log lines a test expects
        self._local = threading.local()
        self._san_seen = set()    # report files already shown
        self._san_log_pos = {}    # how far each stderr log was searched
        self._san_stderr = []     # reports found in apache2 commands' output
        for d in ('conf', 'logs', 'run', 'htdocs'):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        if SANITIZE:
            # children (nobody when run as root) write their reports here
            self.san_dir.mkdir()
            os.chmod(self.san_dir, 0o1777)
            SERVERS.append(self)
        (self.dir / 'htdocs' / 'index.html').write_text('<html>mod_sse tests</html>\n')
        self.write_config()
        if IS_ROOT:
            for p in [self.dir.parent, self.dir] + [self.dir / d for d in ('conf', 'logs', 'run', 'htdocs')]:
                os.chmod(p, 0o755)

    @property
    def conf_path(self):
        return self.dir / 'conf' / 'httpd.conf'

    @property
    def san_dir(self):
        return self.dir / 'logs' / 'sanitizer'

    def env(self):
        """Environment of the apache2 processes we run: ours, plus the
        sanitizer runtime and options under SSE_SANITIZE."""
        return sanitizer_env(self.san_dir) if SANITIZE else None

    @property
    def error_log(self):
        return self.dir / 'logs' / 'error_log'

    @property
    def pid_file(self):
        return self.dir / 'run' / 'httpd.pid'

    def write_config(self):
        lines = [
            '# generated by tests/sse_env.py for the mod_sse test suite',
            'ServerRoot "%s"' % self.dir,
            'ServerName 127.0.0.1',
            'Listen 127.0.0.1:%d' % self.port,
            'PidFile run/httpd.pid',
            'DefaultRuntimeDir run',
            'ErrorLog logs/error_log',
            'LogLevel info sse:debug',
        ]
        if IS_ROOT:
            lines += ['User nobody', 'Group nogroup']
        lines += [
            'LoadModule mpm_%s_module %s/mod_mpm_%s.so' % (self.mpm, MODULES, self.mpm),
            'LoadModule authz_core_module %s/mod_authz_core.so' % MODULES,
            'LoadModule authz_host_module %s/mod_authz_host.so' % MODULES,
            'LoadModule filter_module %s/mod_filter.so' % MODULES,
            'LoadModule deflate_module %s/mod_deflate.so' % MODULES,
            'LoadModule brotli_module %s/mod_brotli.so' % MODULES,
            'LoadModule sse_module %s' % self.module_so,
            'LoadModule sse_test_module %s' % TEST_MOD_SO,
            'LogFormat "%h \\"%r\\" %>s %b %D pid=%P" tests',
            'CustomLog logs/access_log tests',
            'DocumentRoot "%s/htdocs"' % self.dir,
            'Timeout 30',
            'KeepAlive On',
            'GracefulShutdownTimeout %d' % self.graceful_shutdown_timeout,
        ]
        lines += self.mpm_conf
        if SANITIZE:
            # makes the children dumpable again after they switch to nobody
            # (httpd calls prctl(PR_SET_DUMPABLE) when this is set): else the
            # sanitizers cannot read /proc/self/maps there and UBSan prints
            # no stack. ASan's disable_coredump keeps cores from being written.
            lines += ['CoreDumpDirectory "%s"' % self.san_dir]
        lines += self.global_extra
        text = '\n'.join(lines) + '\n' + self.locations
        self.conf_path.write_text(text)

    # -- lifecycle --------------------------------------------------------------
    def start(self, timeout=20, expect_children=None, ready_status=200):
        ensure_built()
        out = open(self.dir / 'logs' / 'stdout.log', 'ab')
        self.proc = subprocess.Popen([APACHE2, '-f', str(self.conf_path), '-DFOREGROUND'],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.dir),
                                     env=self.env(),
                                     # prefork signals its whole process group at shutdown
                                     start_new_session=True, preexec_fn=self.preexec)
        out.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('httpd %s exited with %s at start:\n%s\n%s' % (
                    self.name, self.proc.returncode, self.read_file('logs/stdout.log'),
                    self.read_log()[-4000:]))
            try:
                r = requests.get(self.url('/sse-admin/status'), timeout=2)
                last = r.status_code
                if r.status_code in (200, ready_status):
                    break
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        else:
            self.kill()
            raise RuntimeError('httpd %s did not answer /sse-admin/status with 200 within %ds '
                               '(last: %s)\n%s' % (self.name, timeout, last, self.read_log()[-4000:]))
        RUNNING.append(self)
        if expect_children:
            ok = wait_until(lambda: len(self.status().get('children', [])) >= expect_children,
                            timeout)
            if not ok:
                raise RuntimeError('httpd %s: status never listed %d children: %s'
                                   % (self.name, expect_children, self.status()))
        return self

    def main_pid(self):
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return self.proc.pid if self.proc else None

    def child_pids(self):
        """Live processes whose parent is the httpd parent."""
        ppid = self.main_pid()
        out = []
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                stat = open('/proc/%s/stat' % d).read()
            except OSError:
                continue
            fields = stat.rsplit(')', 1)[1].split()
            if int(fields[1]) == ppid and fields[0] != 'Z':
                out.append(int(d))
        return out

    def half_closed_connections(self, port=None):
        """Server-side sockets on our port (or another of ours) whose client
        has closed but httpd has not yet (TCP CLOSE_WAIT): connections still
        winding down."""
        port = port or self.port
        n = 0
        for table in ('/proc/net/tcp', '/proc/net/tcp6'):
            try:
                lines = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if int(f[1].rsplit(':', 1)[1], 16) == port and f[3] == '08':
                    n += 1
        return n

    def quiesce(self, timeout=5):
        """Waits until every connection whose client went away is closed by
        httpd. mpm_event's ungraceful stop (close_worker_sockets) races with
        workers that are closing connections at that moment and can crash a
        child; that race is httpd's own, so a harness stop that is not itself
        under test waits for the workers to finish first."""
        wait_until(lambda: self.half_closed_connections() == 0, timeout, 0.05)
        time.sleep(0.2)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM to the pid in the PidFile; True if the server exited within
        timeout (otherwise it is killed and False returned)."""
        if self.proc is None:
            return True
        if self.proc.poll() is None:
            pid = self.main_pid()
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout)
            ok = True
        except subprocess.TimeoutExpired:
            ok = False
            self.kill()
        if self in RUNNING:
            RUNNING.remove(self)
        return ok

    def kill(self):
        """Last resort: SIGKILL the parent and its children (by pid)."""
        if self.proc is None:
            return
        kids = self.child_pids() if self.proc.poll() is None else []
        for pid in [self.proc.pid] + kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self in RUNNING:
            RUNNING.remove(self)

    def apachectl(self, action, timeout=30):
        """Runs `apache2 -f conf -k action` (as the user running the tests)."""
        r = subprocess.run([APACHE2, '-f', str(self.conf_path), '-k', action],
                           capture_output=True, text=True, timeout=timeout, cwd=str(self.dir),
                           env=self.env())
        if SANITIZE:
            self._note_sanitizer_output('apache2 -k %s' % action, r.stderr + r.stdout)
        return r

    def configtest(self):
        """`apache2 -t -f conf`: returns the CompletedProcess."""
        ensure_built()
        r = subprocess.run([APACHE2, '-t', '-f', str(self.conf_path)], capture_output=True,
                           text=True, timeout=30, cwd=str(self.dir), env=self.env())
        if SANITIZE:
            self._note_sanitizer_output('apache2 -t', r.stderr + r.stdout)
        return r

    def wait_exit(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if self in RUNNING:
            RUNNING.remove(self)
        return True

    # -- logs -------------------------------------------------------------------
    def read_file(self, rel):
        try:
            return (self.dir / rel).read_text(errors='replace')
        except OSError:
            return ''

    def log_size(self):
        try:
            return self.error_log.stat().st_size
        except OSError:
            return 0

    def read_log(self, since=0):
        try:
            with open(self.error_log, 'rb') as f:
                f.seek(since)
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def crash_lines(self, since=0):
        return [line for line in self.read_log(since).splitlines()
                if any(p in line for p in CRASH_PATTERNS)
                and not any(re.search(rx, line) for rx in self.log_ignore)]

    def sanitizer_reports(self, lines=30):
        """Sanitizer reports of this server not shown before, each as where
        it was found and its first lines: report files, and reports on
        stderr (see _stderr_reports). Each is returned once. None unless
        SSE_SANITIZE."""
        out = []
        if not SANITIZE:
            return out
        try:
            names = sorted(os.listdir(self.san_dir))
        except OSError:
            names = []
        for n in names:
            if n in self._san_seen:
                continue
            self._san_seen.add(n)
            head = '\n'.join(self.read_file('logs/sanitizer/' + n).splitlines()[:lines])
            out.append('%s (%s) sanitizer report %s:\n%s'
                       % (self.name, self.dir, n, head))
        for rel in ('logs/error_log', 'logs/stdout.log'):
            out += self._stderr_reports(rel, lines)
        out += self._san_stderr
        self._san_stderr = []
        return out

    def _stderr_reports(self, rel, lines):
        """Reports in a log that gets httpd's stderr, after the offset read
        last time: gcc's UBSan prints there even with log_path when it runs
        beside ASan, and a sanitizer that cannot open its log file says so
        there. A report is its first line and the stack lines after it."""
        pos = self._san_log_pos.get(rel, 0)
        try:
            with open(self.dir / rel, 'rb') as f:
                f.seek(pos)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b'\n') + 1          # whole lines only
        self._san_log_pos[rel] = pos + end
        out, cur = [], None
        for line in data[:end].decode('utf-8', 'replace').splitlines():
            if SAN_STDERR.search(line):
                cur = [line]
                out.append(cur)
            elif cur is not None and re.match(r'\s+#\d+ ', line) and len(cur) < lines:
                cur.append(line)
            else:
                cur = None
        return ['%s (%s) sanitizer report in %s:\n%s' % (self.name, self.dir, rel, '\n'.join(r))
                for r in out]

    def _note_sanitizer_output(self, what, text):
        """Keeps sanitizer reports from the output of an apache2 command
        (apachectl, configtest) for the next sanitizer_reports()."""
        found = [line for line in (text or '').splitlines() if SAN_STDERR.search(line)]
        if found:
            self._san_stderr.append('%s (%s) sanitizer report in the output of %s:\n%s'
                                    % (self.name, self.dir, what, text[-4000:]))

    def count_log(self, pattern, since=0):
        return len(re.findall(pattern, self.read_log(since)))

    def sse_log_lines(self, since=0, limit=40):
        lines = [line for line in self.read_log(since).splitlines()
                 if ':error]' in line or ':warn]' in line or ':crit]' in line or 'SSE' in line]
        return '\n'.join(lines[-limit:])

    # -- HTTP helpers -------------------------------------------------------------
    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    # httpd closes an idle keep-alive connection after KeepAliveTimeout (5 s by
    # default); a request sent on it at that moment gets "closed without
    # response" (seen in CI after a 5 s sleep). A connection idle for longer
    # than this is dropped here before the next request instead.
    POOLED_IDLE_LIMIT = 2.0

    def session(self):
        s = getattr(self._local, 's', None)
        now = time.monotonic()
        if s is not None and now - self._local.used > self.POOLED_IDLE_LIMIT:
            s.close()
            s = None
        if s is None:
            s = requests.Session()
            self._local.s = s
        self._local.used = now
        return s

    def request(self, method, path, **kw):
        kw.setdefault('timeout', DEFAULT_TIMEOUT)
        return self.session().request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.request('GET', path, **kw)

    def channel_path(self, channel):
        return '/sse-admin/channels/%s' % quote(channel, safe='')

    def publish(self, channel, data=b'', *, event=None, retry=None, params=None, headers=None,
                json_body=None, raw_path=None, fresh=False):
        """POST to the admin API; returns the requests.Response."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        params = dict(params or {})
        if event is not None:
            params['event'] = event
        if retry is not None:
            params['retry'] = retry
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, separators=(',', ':')).encode('utf-8')
            headers.setdefault('Content-Type', 'application/json')
        path = raw_path or self.channel_path(channel)
        if fresh:
            headers['Connection'] = 'close'
            return requests.post(self.url(path), data=data, params=params, headers=headers,
                                 timeout=DEFAULT_TIMEOUT)
        return self.request('POST', path, data=data, params=params, headers=headers)

    def pub(self, channel, data=b'', **kw):
        """Publishes and asserts 201; returns the JSON reply."""
        r = self.publish(channel, data, **kw)
        assert r.status_code == 201, 'publish to %r: %d %s' % (channel, r.status_code, r.text)
        return r.json()

    def channel(self, channel):
        """Channel info JSON, or None on 404."""
        r = self.get(self.channel_path(channel))
        if r.status_code == 404:
            return None
        assert r.status_code == 200, 'channel %r: %d %s' % (channel, r.status_code, r.text)
        return r.json()

    def status_after_restart(self):
        """The status once the server answers again after a restart, or None:
        a connection that was queued on a listener the restart replaced is
        reset by the kernel (httpd's behaviour), so a refused or reset
        connection means "not yet", not a failure."""
        try:
            r = requests.get(self.url('/sse-admin/status'), timeout=DEFAULT_TIMEOUT,
                             headers={'Connection': 'close'})
        except requests.ConnectionError:
            return None
        return r.json() if r.status_code == 200 else None

    def status(self):
        r = self.get('/sse-admin/status')
        assert r.status_code == 200, 'status: %d %s' % (r.status_code, r.text)
        return r.json()

    def delete(self, channel):
        return self.request('DELETE', self.channel_path(channel))

    def subscribe(self, path, **kw):
        return SseStream(self.port, path, **kw)

    def sub(self, path, **kw):
        """Subscribes, asserts 200 and waits for ': ok'."""
        s = SseStream(self.port, path, **kw)
        if s.status != 200:
            try:
                body = s.read_all(5)
            except HttpError as e:
                body = repr(e)
            raise AssertionError('%s: status %d %r' % (path, s.status, body[:300]))
        assert s.wait_open(), '%s: no ": ok" comment; got %r' % (path, s.body[:200])
        return s

    def wait_channel_subscribers(self, channel, n, timeout=DEFAULT_TIMEOUT):
        def check():
            info = self.channel(channel)
            return info is not None and info['subscribers'] == n
        return wait_until(check, timeout, 0.1)

    def wait_total_subscribers(self, n, timeout=DEFAULT_TIMEOUT):
        return wait_until(lambda: self.status()['subscribers'] == n, timeout, 0.1)

    def __repr__(self):
        return '<HttpdServer %s port=%d dir=%s>' % (self.name, self.port, self.dir)


class ServerFactory:
    """Starts extra servers; stop_all() stops them and reports problems."""

    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.servers = []

    def create(self, name, **kw):
        srv = HttpdServer(name, self.base_dir, **kw)
        self.servers.append(srv)
        return srv

    def start(self, name, expect_children=None, **kw):
        return self.create(name, **kw).start(expect_children=expect_children)

    def stop_all(self):
        problems = []
        close_all_streams()
        for srv in self.servers:
            if srv.is_running():
                # let the closed streams leave first: stopping with open streams
                # has tests of its own
                try:
                    wait_until(lambda: srv.status()['subscribers'] == 0, 5, 0.1)
                except (AssertionError, requests.RequestException):
                    pass
                srv.quiesce()
                if not srv.stop():
                    problems.append('%s did not exit within 10s of SIGTERM' % srv.name)
            crashes = srv.crash_lines()
            if crashes:
                problems.append('%s error_log:\n%s' % (srv.name, '\n'.join(crashes[:20])))
            problems += srv.sanitizer_reports()
        self.servers = []
        return problems
