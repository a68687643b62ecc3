"""Fan-out regression guard (not a timing test): 2,000 subscribers on one
channel, all served by the children's shared writers, receive 60 messages
each exactly once and in order, and leave cleanly. The timings of this path
live in bench/, never here."""
import selectors
import socket
import time

from sse_env import uniq, wait_until

SUBSCRIBERS = 2000
MESSAGES = 60

GUARD_MPM = ['StartServers 2', 'ServerLimit 2', 'ThreadLimit 1400', 'ThreadsPerChild 1400',
             'MaxRequestWorkers 2800', 'MinSpareThreads 1', 'MaxSpareThreads 2800',
             'ThreadStackSize 131072', 'ListenBacklog 4096', 'ListenCoresBucketsRatio 1']


class Subscriber:
    """A non-blocking HTTP/1.1 SSE client: de-chunks and keeps data lines."""

    def __init__(self, port, path):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(('127.0.0.1', port))
        self.request = ('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                        'Accept: text/event-stream\r\n\r\n' % path).encode()
        self.inbuf = b''
        self.body = b''
        self.head = None
        self.busy = False
        self.closed = False
        self.ids, self.datas = [], []

    def on_readable(self):
        try:
            got = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            got = b''
        if not got:
            self.closed = True
            return
        self.inbuf += got
        if self.head is None:
            end = self.inbuf.find(b'\r\n\r\n')
            if end < 0:
                return
            self.head, self.inbuf = self.inbuf[:end], self.inbuf[end + 4:]
            assert self.head.startswith(b'HTTP/1.1 200'), self.head
            assert b'chunked' in self.head.lower(), self.head
        self._dechunk()
        if b'busy, retry later' in self.body:
            self.busy = True
        *lines, self.body = self.body.split(b'\n\n')
        for block in lines:
            fields = dict(l.split(b': ', 1) for l in block.split(b'\n') if l and not l.startswith(b':'))
            if b'data' in fields:
                self.ids.append(int(fields[b'id']))
                self.datas.append(fields[b'data'].decode())

    def _dechunk(self):
        while True:
            nl = self.inbuf.find(b'\r\n')
            if nl < 0:
                return
            size = int(self.inbuf[:nl], 16)
            if len(self.inbuf) < nl + 2 + size + 2:
                return
            self.body += self.inbuf[nl + 2:nl + 2 + size]
            assert self.inbuf[nl + 2 + size:nl + 4 + size] == b'\r\n'
            self.inbuf = self.inbuf[nl + 4 + size:]
            if size == 0:
                self.closed = True
                return


def pump(sel, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, ev in sel.select(0.05):
            sub = key.data
            if ev & selectors.EVENT_WRITE:
                sub.sock.send(sub.request)
                sel.modify(sub.sock, selectors.EVENT_READ, sub)
            else:
                sub.on_readable()
                if sub.closed:
                    sel.unregister(sub.sock)


def test_2000_subscribers_lose_nothing(httpd_factory):
    srv = httpd_factory.start('guard', mpm_conf=GUARD_MPM, expect_children=2,
                              global_extra=['SSEMaxSubscribers 2600', 'SSEHistorySize 200',
                                            'SSEMaxStreamsPerClient 5000'])
    ch = uniq('guard')
    sel = selectors.DefaultSelector()
    subs = []
    try:
        deadline = time.monotonic() + 90
        while len([s for s in subs if not s.busy]) < SUBSCRIBERS and time.monotonic() < deadline:
            # connect in waves, replacing any that a full child sent away
            for s in [s for s in subs if s.busy]:
                subs.remove(s)
                if not s.closed:
                    sel.unregister(s.sock)
                s.sock.close()
            wave = min(200, SUBSCRIBERS - len(subs))
            for _ in range(wave):
                s = Subscriber(srv.port, '/quiet/%s' % ch)
                sel.register(s.sock, selectors.EVENT_WRITE, s)
                subs.append(s)
            pump(sel, 0.3)
        pump(sel, 0.5)
        assert len(subs) == SUBSCRIBERS and not any(s.busy or s.closed for s in subs)
        assert wait_until(lambda: srv.status()['subscribers'] == SUBSCRIBERS, 30, 0.2), srv.status()
        # every one of them is served by a writer, none by its own thread
        assert wait_until(lambda: srv.status()['writer_streams'] == SUBSCRIBERS, 10, 0.2), srv.status()

        sent = []
        for m in range(MESSAGES):
            r = srv.pub(ch, 'guard %d' % m)
            assert r['subscribers'] == SUBSCRIBERS, r
            sent.append(int(r['id']))
            pump(sel, 0.01)
        want = ['guard %d' % m for m in range(MESSAGES)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(len(s.datas) < MESSAGES for s in subs):
            pump(sel, 0.2)
        short = [(k, len(s.datas)) for k, s in enumerate(subs) if s.datas != want or s.ids != sent]
        assert not short, '%d subscribers differ, e.g. (index, events): %s' % (len(short), short[:5])
        assert srv.status()['delivered'] >= SUBSCRIBERS * MESSAGES
    finally:
        for s in subs:
            s.sock.close()
        sel.close()
    assert wait_until(lambda: srv.status()['subscribers'] == 0, 15, 0.2), srv.status()


# An ungraceful stop (SIGTERM) while hundreds of clients have just gone away:
# no child may crash. mpm_event closes busy workers' sockets before it runs
# child_stopping, without any lock; streams that end during that loop free
# connections it is about to touch. Before the dispatcher learnt to stand
# still during a stop, this crashed a child in about half of the rounds.
def test_sigterm_after_mass_disconnect_crashes_nothing(httpd_factory):
    for rnd in range(3):
        srv = httpd_factory.start('term%d' % rnd, mpm_conf=GUARD_MPM, expect_children=2,
                                  global_extra=['SSEMaxSubscribers 2600',
                                                'SSEMaxStreamsPerClient 5000'])
        sel = selectors.DefaultSelector()
        ch = uniq('term')
        subs = [Subscriber(srv.port, '/quiet/%s' % ch) for _ in range(400)]
        for s in subs:
            sel.register(s.sock, selectors.EVENT_WRITE, s)
        pump(sel, 1.0)
        assert wait_until(lambda: srv.status()['writer_streams'] == 400, 15, 0.1), srv.status()
        for s in subs:
            s.sock.close()
        sel.close()
        assert srv.stop(), 'round %d: httpd did not stop' % rnd
        crashes = [l for l in srv.read_log().splitlines() if 'Segmentation' in l or 'exit signal' in l]
        assert not crashes, 'round %d:\n%s' % (rnd, '\n'.join(crashes))
