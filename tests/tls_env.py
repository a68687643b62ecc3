"""TLS and HTTP/2 for the mod_sse tests: a self-signed certificate, an httpd
with mod_ssl and mod_http2 (h2 over TLS on a second port, h2c and HTTP/1.1
on the plain one), and the clients that talk to it: curl, and a small
HTTP/2 client on python3-h2 that can reset single streams."""
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time

from sse_env import MODULES, SseParser, free_port

CURL = shutil.which('curl')
OPENSSL = shutil.which('openssl')

# the locations the TLS tests stream from: /tls-events with keepalives every
# second so a client that went away is noticed quickly, and a short retry so
# an EventSource reconnects fast after a restart; /tls-quiet writes only
# events
TLS_LOCATION = """<Location /tls-events>
    SetHandler sse-stream
    SSEKeepAlive 1
    SSERetry 300
</Location>
<Location /tls-quiet>
    SetHandler sse-stream
    SSEKeepAlive 0
</Location>"""

# what the TLS virtual host logs per request (streams: when they end): the
# client's port (requests multiplexed on one connection share it), the
# protocol, the TLS version, the Last-Event-ID a stream was opened with and
# how mod_sse resumed it
TLS_LOG_FORMAT = ('"%{remote}p %H %{SSL_PROTOCOL}x \\"%r\\" %>s '
                  'lei=%{Last-Event-ID}i resume=%{SSE-Resume}o"')


def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 and localhost, and its key
    (paths); the certificate is its own CA, so clients trust it with
    --cacert / cafile / NODE_EXTRA_CA_CERTS."""
    cert, key = directory / 'tls-cert.pem', directory / 'tls-key.pem'
    r = subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec',
                        '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                        '-days', '7', '-subj', '/CN=localhost',
                        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
                        '-keyout', str(key), '-out', str(cert)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError('openssl req failed: %s' % r.stderr)
    return cert, key


def tls_config(cert, key, tls_port, extra=()):
    """global_extra lines: mod_ssl and mod_http2, h2c on the plain port and
    a TLS virtual host on tls_port that offers h2 and http/1.1 by ALPN.
    The <Location>s of the main server apply to the virtual host too."""
    return [
        'LoadModule ssl_module %s/mod_ssl.so' % MODULES,
        'LoadModule http2_module %s/mod_http2.so' % MODULES,
        'Protocols h2 h2c http/1.1',
        'H2Direct on',
        'Listen 127.0.0.1:%d' % tls_port,
        '<VirtualHost 127.0.0.1:%d>' % tls_port,
        '    ServerName localhost',
        '    SSLEngine on',
        '    SSLCertificateFile "%s"' % cert,
        '    SSLCertificateKeyFile "%s"' % key,
        '    CustomLog logs/tls_access_log %s' % TLS_LOG_FORMAT,
        '</VirtualHost>',
        TLS_LOCATION,
    ] + list(extra)


def start_tls(factory, name, cert, key, extra=(), **kw):
    """Starts an httpd from the factory with tls_config; the server gets
    tls_port and tls_url()."""
    port = free_port()
    srv = factory.create(name, global_extra=tls_config(cert, key, port, extra), **kw)
    srv.tls_port = port
    srv.tls_url = lambda path: 'https://127.0.0.1:%d%s' % (port, path)
    srv.start()
    return srv


def tls_log(srv):
    return srv.read_file('logs/tls_access_log').splitlines()


def client_context(cert, alpn):
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(alpn)
    return ctx


class CurlStream:
    """One curl transfer whose output is parsed as it arrives, or several
    (parallel=True) written to the files in outputs. proto: 'h2' (TLS,
    ALPN), 'h2c' (prior knowledge) or 'h1-tls'. The response headers and the
    -w figures go to stderr, which close() returns."""

    ARGS = {'h2': ['--http2'], 'h2c': ['--http2-prior-knowledge'], 'h1-tls': ['--http1.1']}

    def __init__(self, urls, proto, cert=None, headers=(), parallel=False, outputs=None):
        args = [CURL, '-sS', '-N', '-D', '/dev/stderr', '-H', 'Accept: text/event-stream'] \
            + self.ARGS[proto]
        for h in headers:
            args += ['-H', h]
        if cert:
            args += ['--cacert', str(cert)]
        if parallel:
            args += ['--parallel', '--parallel-max', str(len(urls))]
        args += ['-w', '%{stderr}transfer %{url} %{http_code} http=%{http_version} '
                 'connects=%{num_connects}\\n']
        self.parser = SseParser()
        self.lock = threading.Lock()
        if outputs:
            args += [a for url, out in zip(urls, outputs) for a in (url, '-o', str(out))]
        else:
            args += list(urls)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.stderr = None

    def _run(self):
        while True:
            d = self.proc.stdout.read1(65536)
            if not d:
                break
            with self.lock:
                self.parser.feed(d)

    def events(self):
        with self.lock:
            return list(self.parser.events)

    def comments(self):
        with self.lock:
            return list(self.parser.comments)

    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            v = pred(self)
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(0.05)

    def exited(self, timeout):
        """Waits for curl to exit by itself; its exit status, or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, sig=None):
        """Ends curl (SIGTERM, or sig) unless it has exited; returns stderr."""
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
        self.proc.wait(5)
        self.thread.join(5)
        if self.stderr is None:
            self.stderr = self.proc.stderr.read().decode('utf-8', 'replace')
        return self.stderr


class H2Stream:
    """One request of an H2Client: its answer as the I/O thread saw it."""

    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = {}
        self.parser = SseParser()
        self.ended = False           # END_STREAM from the server
        self.reset_by = None         # 'client', or the server's error code


class H2Client:
    """One HTTP/2 connection (over TLS with ALPN h2 when cert is given,
    else h2c with prior knowledge) carrying any number of GET streams.
    An I/O thread feeds each stream's DATA to its own SseParser."""

    def __init__(self, port, cert=None, timeout=10):
        try:
            import h2.config
            import h2.connection
        except ImportError:
            raise AssertionError('python3-h2 is missing: run `sh scripts/install-deps.sh` as root')
        raw = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cert is not None:
            self.sock = client_context(cert, ['h2']).wrap_socket(raw, server_hostname='127.0.0.1')
            if self.sock.selected_alpn_protocol() != 'h2':
                raise AssertionError('ALPN chose %r, not h2' % self.sock.selected_alpn_protocol())
        else:
            self.sock = raw
        self.port = port
        self.authority = '127.0.0.1:%d' % port
        self.scheme = 'https' if cert is not None else 'http'
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        self.cond = threading.Condition()
        self.streams = {}
        self.pings = 0               # PING ACKs received
        self.terminated = None       # GOAWAY error code
        self.closed = False          # the server closed the connection
        self._closing = False
        # an OpenSSL connection must not be read and written by two threads
        # at once: all socket I/O happens on the I/O thread, which the other
        # methods wake through this pair when they have frames to send
        self._wake_r, self._wake_w = socket.socketpair()
        with self.cond:
            self.conn.initiate_connection()
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True, name='h2 %d' % port)
        self.thread.start()

    def _wake(self):
        self._wake_w.send(b'x')

    def get(self, path, headers=()):
        """Opens a stream; returns its H2Stream (answered later)."""
        with self.cond:
            sid = self.conn.get_next_available_stream_id()
            st = self.streams[sid] = H2Stream(sid)
            self.conn.send_headers(sid, [(':method', 'GET'), (':scheme', self.scheme),
                                         (':authority', self.authority), (':path', path),
                                         ('accept', 'text/event-stream')] + list(headers),
                                   end_stream=True)
        self._wake()
        return st

    def reset(self, st):
        """RST_STREAM (CANCEL) on one stream; the connection stays open."""
        from h2.errors import ErrorCodes
        with self.cond:
            self.conn.reset_stream(st.id, ErrorCodes.CANCEL)
            st.reset_by = 'client'
        self._wake()

    def ping(self):
        """A PING whose ACK proves the server has read every frame sent
        before it; True once acknowledged."""
        with self.cond:
            n = self.pings
            self.conn.ping(b'sse-ping')
        self._wake()
        return self.wait(lambda: self.pings > n)

    def _run(self):
        try:
            while not self._closing and not self.closed:
                with self.cond:
                    out = self.conn.data_to_send()
                if out:
                    self.sock.sendall(out)
                if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                    ready = select.select([self.sock, self._wake_r], [], [], 0.25)[0]
                    if self._wake_r in ready:
                        self._wake_r.recv(4096)
                    if self.sock not in ready:
                        continue
                try:
                    d = self.sock.recv(65536)
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
                self._received(d)
        except OSError:
            self._received(b'')

    def _received(self, d):
        import h2.events as ev
        with self.cond:
            if not d:
                self.closed = True
                self.cond.notify_all()
                return
            for e in self.conn.receive_data(d):
                st = self.streams.get(getattr(e, 'stream_id', None))
                if isinstance(e, ev.ResponseReceived):
                    st.headers = dict(e.headers)
                    st.status = int(st.headers[':status'])
                elif isinstance(e, ev.DataReceived):
                    st.parser.feed(e.data)
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                elif isinstance(e, ev.StreamEnded):
                    st.ended = True
                elif isinstance(e, ev.StreamReset) and st is not None:
                    st.reset_by = st.reset_by or e.error_code
                elif isinstance(e, ev.PingAckReceived):
                    self.pings += 1
                elif isinstance(e, ev.ConnectionTerminated):
                    self.terminated = e.error_code
            self.cond.notify_all()

    def wait(self, pred, timeout=10):
        """Waits until pred() (evaluated under the lock) holds; its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                left = deadline - time.monotonic()
                if v or left <= 0:
                    return v
                self.cond.wait(min(left, 0.2))

    def events(self, st):
        with self.cond:
            return list(st.parser.events)

    def comments(self, st):
        with self.cond:
            return list(st.parser.comments)

    def close(self):
        """Drops the connection: no GOAWAY, no TLS close_notify (Python's ssl
        sends one only on unwrap())."""
        self._closing = True
        self._wake()
        self.thread.join(5)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()
