"""Many SSE clients in one thread: non-blocking sockets driven by a
selector, for tests that need hundreds or thousands of streams (one
thread per stream, as SseStream uses, does not scale that far).

MassSubscriber is one HTTP/1.1 stream parsed like EventSource parses it
(sse_env.SseParser). With resilient=True it behaves like EventSource after
the stream ends or the connection fails: it reconnects with Last-Event-ID
set to the last event id it saw, so a test can check that every event
arrives exactly once across reconnects.
"""
import selectors
import socket
import time

from sse_env import SseParser


class MassSubscriber:
    """One stream (and, when resilient, its successors). Collects data
    events in `events`, sse-reset events in `resets`; `ids`/`datas` are
    the data events' ids (int) and data."""

    def __init__(self, port, path, *, source=None, last_event_id=None, resilient=False,
                 reconnect_delay=0.05, accept='text/event-stream'):
        self.port, self.path, self.source = port, path, source
        self.last_id = last_event_id          # EventSource's last event id
        self.resilient = resilient
        self.reconnect_delay = reconnect_delay
        self.accept = accept
        self.events, self.resets = [], []
        self.unknown_fields = []              # field names no event may carry
        self.connections = 0                  # streams answered 200
        self.busy = 0                         # "busy, retry later" answers
        self.server_ends = 0                  # streams the server ended
        self.failures = []                    # refused/reset connections, non-200s
        self.closed = False                   # no stream open and none coming
        self.sock = None
        self.reconnect_at = None
        self.status = None

    # -- compatibility with the simple guard client ----------------------
    @property
    def ids(self):
        return [int(e.id) for e in self.events]

    @property
    def datas(self):
        return [e.data for e in self.events]

    # -- connection -----------------------------------------------------------
    def connect(self, sel):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if self.source:
            self.sock.bind((self.source, 0))
        self.sock.connect_ex(('127.0.0.1', self.port))
        lines = ['GET %s HTTP/1.1' % self.path, 'Host: 127.0.0.1']
        if self.accept:
            lines.append('Accept: %s' % self.accept)
        if self.last_id:
            lines.append('Last-Event-ID: %s' % self.last_id)
        self.request = ('\r\n'.join(lines) + '\r\n\r\n').encode()
        self.inbuf = b''
        self.head = None
        self.status = None
        self.parser = SseParser()
        self.consumed = 0
        self.closed = False
        self.reconnect_at = None
        sel.register(self.sock, selectors.EVENT_WRITE, self)

    def on_ready(self, sel, mask):
        if mask & selectors.EVENT_WRITE:
            try:
                self.sock.send(self.request)
            except OSError as e:
                self._ended(sel, failure=repr(e))
                return
            sel.modify(self.sock, selectors.EVENT_READ, self)
            return
        try:
            got = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self._ended(sel, failure=repr(e))
            return
        if not got:
            self._ended(sel, failure=None if self.head else 'closed before the response head')
            return
        self.inbuf += got
        if self.head is None:
            end = self.inbuf.find(b'\r\n\r\n')
            if end < 0:
                return
            self.head, self.inbuf = self.inbuf[:end], self.inbuf[end + 4:]
            self.status = int(self.head.split(b' ', 2)[1])
            if self.status != 200:
                self._ended(sel, failure='status %d' % self.status)
                return
            # a short answer ("busy, retry later") may come with a length
            self.chunked = b'chunked' in self.head.lower()
            self.length = None
            for line in self.head.split(b'\r\n')[1:]:
                k, _, v = line.partition(b':')
                if k.strip().lower() == b'content-length':
                    self.length = int(v)
            self.connections += 1
        if self.chunked:
            if self._dechunk():
                self._ended(sel)
            return
        self._feed(self.inbuf)
        if self.length is not None:
            self.length -= len(self.inbuf)
        self.inbuf = b''
        if self.length is not None and self.length <= 0:
            self._ended(sel)

    def _dechunk(self):
        """Feeds whole chunks to the parser; True at the terminal chunk."""
        while True:
            nl = self.inbuf.find(b'\r\n')
            if nl < 0:
                return False
            size = int(self.inbuf[:nl], 16)
            if len(self.inbuf) < nl + 2 + size + 2:
                return False
            payload = self.inbuf[nl + 2:nl + 2 + size]
            assert self.inbuf[nl + 2 + size:nl + 4 + size] == b'\r\n', self.inbuf[:80]
            self.inbuf = self.inbuf[nl + 4 + size:]
            if size == 0:
                return True
            self._feed(payload)

    def _feed(self, payload):
        p = self.parser
        p.feed(payload)
        for e in p.events[self.consumed:]:
            (self.resets if e.event == 'sse-reset' else self.events).append(e)
        self.consumed = len(p.events)
        if p.last_id:
            self.last_id = p.last_id
        if p.unknown_fields:
            self.unknown_fields += p.unknown_fields
            p.unknown_fields = []

    def _ended(self, sel, failure=None):
        try:
            sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        if failure:
            self.failures.append(failure)
        elif 'busy, retry later' in self.parser.comments:
            self.busy += 1
        elif self.head is not None:
            self.server_ends += 1
        self.closed = True
        if self.resilient:
            self.reconnect_at = time.monotonic() + self.reconnect_delay

    def close(self, sel=None):
        self.resilient = False
        if self.sock is not None and not self.closed:
            if sel is not None:
                try:
                    sel.unregister(self.sock)
                except (KeyError, ValueError):
                    pass
            self.sock.close()
        self.closed = True


class Crowd:
    """A selector and the MassSubscribers it drives."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.subs = []

    def add(self, sub):
        self.subs.append(sub)
        sub.connect(self.sel)
        return sub

    def pump(self, seconds):
        """Serves every socket for about `seconds`; reconnects resilient
        subscribers whose stream ended."""
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            for s in self.subs:
                if s.reconnect_at is not None and s.reconnect_at <= now:
                    s.connect(self.sel)
            left = end - now
            if left <= 0:
                return
            for key, mask in self.sel.select(min(left, 0.05)):
                key.data.on_ready(self.sel, mask)

    def pump_until(self, pred, timeout, step=0.1):
        """Pumps until pred() is true or timeout passes; returns pred()."""
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            self.pump(step)
        return pred()

    def close(self):
        for s in self.subs:
            s.close(self.sel)
        self.sel.close()
