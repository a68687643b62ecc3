#!/usr/bin/python3
"""run.py - runs the benchmark scenarios against mod_sse, Nchan and better-sse and writes bench/results/.

Each server is started fresh for each scenario on its own high loopback port, with its prefix, pid file and
logs under bench/work/, so nothing of the system's Apache or nginx is touched. The load client is
bench/work/sse_load (built by `make bench`).

Environment:
  BENCH_QUICK=1                 every scenario about 10x smaller (a smoke run)
  BENCH_ONLY=modsse,nchan       servers to run (modsse, nchan, bettersse)
  BENCH_SCENARIOS=light,idle    scenarios to run (light, saturation, tls1k, tls1k-paced, fanout, idle, fan50k,
                                idle50k, restart50k, pubrate, pubrate-event, pubstream, redis2)
  BENCH_THREAD_STACK=131072     mod_sse's ThreadStackSize
  BENCH_MPM=worker              mod_sse's MPM (worker or event; scenario pubrate-event is always event)
  BENCH_OUT=dir                 where results go; default bench/results for a full run, else bench/work/results

`run.py --report DIR` renders DIR/results.md and the plots again from DIR/results.json without running anything
(and the README block too when DIR is bench/results).

`run.py --merge DIR` puts the scenarios of a filtered run (DIR/results.json, e.g. bench/work/results after
BENCH_SCENARIOS=tls1k) into bench/results/results.json in place of theirs, renders bench/results and the README
block again, and says in both which scenarios came from which run. Quick runs and runs that left out a server
are refused.
"""
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / 'work'
CLIENT = WORK / 'sse_load'
README = REPO / 'README.md'
APACHE2 = '/usr/sbin/apache2'
APACHE_MODULES = Path('/usr/lib/apache2/modules')
NGINX = shutil.which('nginx') or '/usr/sbin/nginx'
NCHAN_SO = Path('/usr/lib/nginx/modules/ngx_nchan_module.so')
NODE = shutil.which('node') or '/usr/bin/node'
BETTER_SSE_DIR = BENCH / 'better-sse'
REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'

QUICK = os.environ.get('BENCH_QUICK', '') not in ('', '0')
THREAD_STACK = int(os.environ.get('BENCH_THREAD_STACK', '131072'))
MPM = os.environ.get('BENCH_MPM', 'worker')

# Ports well above the usual ones, one per server, so a server that lingers cannot answer for another.
PORTS = {'modsse': 18790, 'nchan': 18791, 'bettersse': 18792}
# TLS scenarios: subscribers on PORTS (HTTPS), publishes plain HTTP on this many ports higher
PUB_PORT_OFFSET = 10
# redis2: the second server of a pair listens this many ports higher; each pair has a redis-server of its own
SECOND_OFFSET = 20
REDIS_PORTS = {'modsse': 18820, 'nchan': 18821}
TLS_DIR = WORK / 'tls'
TLS_CERT, TLS_KEY = TLS_DIR / 'cert.pem', TLS_DIR / 'key.pem'
TLS_PROTOCOLS = ['TLSv1.2', 'TLSv1.3']
LABELS = {'modsse': 'mod_sse', 'nchan': 'Nchan', 'bettersse': 'better-sse'}
SERVERS = ['modsse', 'nchan', 'bettersse']
CHANNEL = 'bench'

# kind, subscribers, client worker processes, messages, rate (msg/s), drain timeout (s)
SCENARIOS = {
    'light': dict(kind='fanout', subs=100, procs=1, messages=500, rate=50, drain=20,
                  what='latency at a light load'),
    'saturation': dict(kind='fanout', subs=1000, procs=2, messages=3000, rate=1000, drain=90,
                       what='throughput and CPU per delivery with demand far above capacity'),
    # saturation again with the subscribers on HTTPS; mod_sse's TLS streams keep their worker thread
    'tls1k': dict(kind='fanout', subs=1000, procs=2, messages=3000, rate=1000, drain=90, tls=True,
                  only=['modsse', 'nchan'],
                  what='saturation with the subscribers over TLS (HTTPS, HTTP/1.1)'),
    # the same subscribers at a rate both keep up with: at saturation mod_sse's threads fall behind and write
    # many events per TLS record; here nearly every event is a wakeup and a record per stream
    'tls1k-paced': dict(kind='fanout', subs=1000, procs=2, messages=200, rate=20, drain=60, tls=True,
                        only=['modsse', 'nchan'],
                        what='1,000 subscribers over TLS at 20 msg/s, a rate both servers keep up with'),
    'fanout': dict(kind='fanout', subs=10000, procs=2, messages=200, rate=20, drain=60,
                   what='latency and CPU with many subscribers'),
    'idle': dict(kind='idle', subs=10000, procs=2, what='memory per idle subscriber'),
    # better-sse is one process, and one process holds at most 20,000 open files here
    'fan50k': dict(kind='fanout', subs=50000, procs=4, messages=20, rate=2, drain=120,
                   only=['modsse', 'nchan'], what='50,000 subscribers on one channel, 20 events at 2/s'),
    'idle50k': dict(kind='idle', subs=50000, procs=4, only=['modsse', 'nchan'],
                    what='memory per idle subscriber at 50,000'),
    'restart50k': dict(kind='lifecycle', subs=50000, procs=4, only=['modsse', 'nchan'],
                       what='graceful restart and stop with 50,000 open streams'),
    'pubrate': dict(kind='pubrate', conns=4, duration=5, what='publishes per second, no subscribers'),
    # the same under mpm_event, which hands every keep-alive request from its listener thread to a worker
    'pubrate-event': dict(kind='pubrate', conns=4, duration=5, only=['modsse'], mpm='event',
                          what='publishes per second under mpm_event (mod_sse only), no subscribers'),
    'pubstream': dict(kind='pubstream', conns=4, duration=5, only=['modsse'],
                      what='publishes per second with the streaming publish (mod_sse only), no subscribers'),
    # two servers sharing one redis-server (mod_sse SSERedis, Nchan nchan_redis_pass): subscribers split over
    # both, publishes alternating between them, so half of every subscriber's events crossed servers; then
    # the publish rate over both without subscribers
    # 200 subscribers: at 100 msg/s, 1,000 (20 k deliveries/s per server pair, as tls1k-paced) left Nchan's
    # publisher behind the schedule on the shared 2 cores (83 msg/s, p99 2 s), and the latency is meant to be
    # the path through Redis, not a queue
    'redis2': dict(kind='redis2', subs=200, procs=2, messages=1000, rate=100, drain=60, conns=4, duration=5,
                   only=['modsse', 'nchan'],
                   what='2 servers + 1 redis-server: delivery across servers, and publishes per second'),
}
QUICK_SCENARIOS = {
    'light': dict(subs=10, messages=100),
    'saturation': dict(subs=100, messages=300),
    'tls1k': dict(subs=100, messages=300),
    'tls1k-paced': dict(subs=100, messages=40),
    'fanout': dict(subs=1000, messages=40),
    'idle': dict(subs=1000),
    'fan50k': dict(subs=5000),
    'idle50k': dict(subs=5000),
    'restart50k': dict(subs=5000),
    'pubrate': dict(duration=1),
    'pubrate-event': dict(duration=1),
    'pubstream': dict(duration=1),
    'redis2': dict(subs=40, messages=100, duration=1),
}


def log(msg):
    print('[bench %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


NOFILE = nofile()


def history_size(sc):
    # At least every message of the run, so a slow subscriber catching up is never loss by design.
    return max(100, sc.get('messages', 0))


def http_answers(port, timeout=1.0):
    """True once the port answers an HTTP request with a status line."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b'GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
            return s.recv(16).startswith(b'HTTP/1.')
    except OSError:
        return False


def proc_tree(root):
    """root and all its descendants, by walking /proc's ppid fields."""
    parent = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
            parent[int(d)] = int(st[st.rindex(')') + 2:].split()[1])
        except (OSError, ValueError):
            pass
    tree, changed = {root}, True
    while changed:
        changed = False
        for pid, pp in parent.items():
            if pp in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sorted(p for p in tree if p in parent)


def thread_count(pids):
    n = 0
    for pid in pids:
        try:
            with open('/proc/%d/status' % pid) as f:
                for line in f:
                    if line.startswith('Threads:'):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def make_cert():
    """One self-signed certificate for 127.0.0.1 per run, used by every server; the client verifies it.
    P-256, as a current browser-facing site would have: the handshakes happen before anything is measured."""
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                        '-nodes', '-days', '30', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                        '-addext', 'basicConstraints=critical,CA:FALSE',
                        '-keyout', str(TLS_KEY), '-out', str(TLS_CERT)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit('openssl could not make the bench certificate: %s' % r.stderr.strip())


class Server:
    name = ''

    def __init__(self, sc, instance=0, redis_port=None):
        self.sc = sc
        self.tls = bool(sc.get('tls'))
        # instance 1 is the second server of a pair (redis2), sharing channels through the redis-server on
        # redis_port
        self.instance = instance
        self.redis_port = redis_port
        self.port = PORTS[self.name] + SECOND_OFFSET * instance
        # with TLS, publishes go to a second, plain listener of the same server
        self.pub_port = self.port + PUB_PORT_OFFSET if self.tls else self.port
        self.dir = WORK / (self.name + ('-%d' % (instance + 1) if instance else ''))
        self.proc = None
        self.config = {}

    @property
    def label(self):
        return LABELS[self.name] + (' #%d' % (self.instance + 1) if self.instance else '')

    def prepare(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ('logs', 'run', 'tmp'):
            (self.dir / sub).mkdir(parents=True)

    def command(self):
        raise NotImplementedError

    def log_files(self):
        return [self.dir / 'logs' / 'stdout.log']

    def start(self):
        self.prepare()
        out = open(self.dir / 'logs' / 'stdout.log', 'wb')
        # its own session, so a stop reaches every process of this server and nothing else
        self.proc = subprocess.Popen(self.command(), cwd=str(self.dir), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=raise_nofile)
        out.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if http_answers(self.pub_port) and self.ready():
                return True
            time.sleep(0.2)
        log('%s did not start; look at %s' % (self.label, ', '.join(str(p) for p in self.log_files())))
        for p in self.log_files():
            try:
                tail = p.read_text(errors='replace').splitlines()[-15:]
                if tail:
                    print('--- %s (last lines)\n%s' % (p, '\n'.join(tail)), flush=True)
            except OSError:
                pass
        self.stop()
        return False

    def ready(self):
        return True

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal())
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log('%s did not stop in 20 s, killing it' % self.label)
        # whatever is left of this server's own session (children that outlived their parent)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def stop_signal(self):
        return signal.SIGTERM

    def log_issues(self):
        """Lines of the server's logs that mean trouble."""
        bad = []
        for p in self.log_files():
            try:
                for line in p.read_text(errors='replace').splitlines():
                    if any(pat in line for pat in self.bad_patterns()) and not any(
                            ok in line for ok in self.expected_lines()):
                        bad.append(line.strip()[:300])
            except OSError:
                pass
        return bad

    def bad_patterns(self):
        return ['Error', 'error']

    def expected_lines(self):
        return []


class ModSse(Server):
    name = 'modsse'
    module = REPO / '.libs' / 'mod_sse.so'
    # the sizing of conf-examples/sse.conf: streams hold no thread, so a few
    # threads a child serve pages, publishes and streams being set up
    THREADS = 64

    @property
    def children(self):
        # a child owns at most its open files less a tenth (README, "Limits
        # and sizing"): enough children for every subscriber, at least 2
        # and half as many again, since the children of one listener bucket
        # do not share its connections evenly; a multiple of the buckets (one
        # per core), which the kernel fills evenly
        subs = self.sc.get('subs', 0)
        per_child = int(NOFILE * 0.9) - 1000
        cores = os.sysconf('SC_NPROCESSORS_ONLN')
        return cores * math.ceil(max(2, math.ceil(1.5 * subs / per_child)) / cores)

    def threads_per_child(self):
        if not self.tls:
            return self.THREADS
        # TLS streams keep their worker thread. A child's share of them, a fifth again for the kernel's uneven
        # spread over the listener buckets and a few for the publisher and probes, must leave half of its
        # threads idle: with 2 buckets httpd raises MinSpareThreads to ThreadsPerChild + 2 (half a child per
        # bucket) and logs AH00287 when fewer are idle. mod_sse's own cap (nine tenths) is then far away.
        share = math.ceil(1.2 * self.sc.get('subs', 0) / self.children) + 16
        return max(self.THREADS, 2 * share + 4)

    def write_config(self):
        tpc = self.threads_per_child()
        subs = self.sc.get('subs', 0)
        hist = history_size(self.sc)
        self.config = dict(ServerLimit=self.children, ThreadsPerChild=tpc, ThreadStackSize=THREAD_STACK,
                           SSEHistorySize=hist, SSEMaxSubscribers=subs + 64,
                           SSEMaxStreamsPerClient=subs + 64)
        if self.redis_port:
            self.config['SSERedis'] = 'redis://127.0.0.1:%d' % self.redis_port
        if self.tls:
            self.config['subscribers'] = ('HTTPS on %d (mod_ssl; each stream keeps its worker thread), '
                                          'publishes plain HTTP on %d' % (self.port, self.pub_port))
        m = APACHE_MODULES
        lines = [
            '# written by bench/run.py for one scenario; not an example of a production setup',
            'ServerRoot "%s"' % self.dir,
            'ServerName 127.0.0.1',
            'Listen 127.0.0.1:%d%s' % (self.port, ' https' if self.tls else ''),
            'PidFile run/httpd.pid',
            'DefaultRuntimeDir run',
            'ErrorLog logs/error_log',
            'LogLevel warn sse:info',
            'LoadModule mpm_{0}_module {1}/mod_mpm_{0}.so'.format(self.sc.get('mpm', MPM), m),
            'LoadModule authz_core_module %s/mod_authz_core.so' % m,
            'LoadModule authz_host_module %s/mod_authz_host.so' % m,
            'LoadModule sse_module %s' % os.path.relpath(self.module, self.dir),
            'ServerLimit %d' % self.children,
            'StartServers %d' % self.children,
            'ThreadLimit %d' % tpc,
            'ThreadsPerChild %d' % tpc,
            'MaxRequestWorkers %d' % (self.children * tpc),
            # no child may be stopped for being idle while it holds streams: with children a multiple
            # of the buckets, MaxRequestWorkers is the figure mod_sse asks for (SSE00012)
            'MinSpareThreads 1',
            'MaxSpareThreads %d' % (self.children * tpc),
            'ThreadStackSize %d' % THREAD_STACK,
            'MaxConnectionsPerChild 0',
            'KeepAlive On',
            'MaxKeepAliveRequests 0',
            'KeepAliveTimeout 60',
            'ListenBacklog 4096',
            # the graceful stop at the end of a run waits at most this long for streams to end
            'GracefulShutdownTimeout 10',
            # one listening socket per child (SO_REUSEPORT): the kernel spreads connections evenly, where a
            # shared socket lets one child take most of them
            'ListenCoresBucketsRatio 1',
            'SSEHistorySize %d' % hist,
            'SSEMaxSubscribers %d' % (subs + 64),
            # the load client's subscribers come from four addresses
            'SSEMaxStreamsPerClient %d' % (subs + 64),
            'SSEKeepAlive 30',
        ] + (['SSERedis redis://127.0.0.1:%d' % self.redis_port] if self.redis_port else []) + [
            '<Location /sub>',
            '    SetHandler sse-stream',
            '</Location>',
            '<Location /sse-admin>',
            '    SetHandler sse-admin',
            '    Require all granted',
            '</Location>',
        ]
        if self.tls:
            # the same protocols as nginx (whose 1.22 leaves TLSv1.3 out by default), each server's own
            # defaults otherwise: both pick TLS_AES_256_GCM_SHA384, which the client reports
            lines += [
                'LoadModule ssl_module %s/mod_ssl.so' % m,
                'Listen 127.0.0.1:%d' % self.pub_port,
                '<VirtualHost 127.0.0.1:%d>' % self.port,
                '    ServerName 127.0.0.1',
                '    SSLEngine on',
                '    SSLProtocol -all +%s' % ' +'.join(TLS_PROTOCOLS),
                '    SSLCertificateFile %s' % TLS_CERT,
                '    SSLCertificateKeyFile %s' % TLS_KEY,
                '</VirtualHost>',
            ]
        if os.geteuid() == 0:
            lines += ['User nobody', 'Group nogroup']
        (self.dir / 'httpd.conf').write_text('\n'.join(lines) + '\n')

    def command(self):
        self.write_config()
        return [APACHE2, '-d', str(self.dir), '-f', str(self.dir / 'httpd.conf'), '-DFOREGROUND']

    def ready(self):
        # every worker thread started, or the first subscribers would wait on threads being created
        want = self.children * self.threads_per_child()
        return thread_count(proc_tree(self.pid)) >= want

    def stop_signal(self):
        return signal.SIGWINCH    # httpd's graceful-stop

    def restart_signal(self):
        return signal.SIGUSR1     # httpd's graceful restart

    def sub_path(self, channel=CHANNEL):
        return '/sub/' + channel

    def pub_path(self, channel=CHANNEL):
        return '/sse-admin/channels/' + channel

    def log_files(self):
        return [self.dir / 'logs' / 'error_log', self.dir / 'logs' / 'stdout.log']

    def bad_patterns(self):
        return ['Segmentation fault', 'AH00052', 'AH00051', 'AH00060', ':crit]', ':emerg]', ':alert]',
                ':error]', 'AH00045', 'AH00046', 'AH00484', 'AH00485']

    def expected_lines(self):
        # "within MinSpareThreads of MaxRequestWorkers": what a server full of streams looks like by design
        return ['AH10159']


class Nchan(Server):
    name = 'nchan'

    def write_config(self):
        subs = self.sc.get('subs', 0)
        hist = history_size(self.sc)
        # enough workers that each holds its share within its open files; reuseport spreads
        # connections by hash, so each gets room for a third more than its share
        workers = max(2, math.ceil(subs / int(NOFILE * 0.6)))
        conns = max(1024, min(NOFILE - 64, math.ceil(subs / workers * 1.3) + 1024))
        self.workers = workers
        self.config = dict(worker_processes=workers, worker_connections=conns,
                           nchan_message_buffer_length=hist)
        # Nchan 1.3.6 advises an upstream of nchan_redis_server and nchan_redis_pass over the older
        # nchan_redis_url + nchan_use_redis; the storage mode stays its default, distributed: every
        # publish goes through Redis, which is what lets several servers share a channel
        upstream = redis_pass = ''
        if self.redis_port:
            upstream = ('    upstream bench_redis {\n        nchan_redis_server redis://127.0.0.1:%d;\n    }\n'
                        % self.redis_port)
            redis_pass = '\n            nchan_redis_pass bench_redis;'
            self.config['nchan_redis_pass'] = 'upstream of nchan_redis_server redis://127.0.0.1:%d' % (
                self.redis_port)
        # one listening socket per worker, as for httpd's children (ListenCoresBucketsRatio)
        listen = '        listen 127.0.0.1:%d%s backlog=4096 reuseport;' % (self.port, ' ssl' if self.tls else '')
        if self.tls:
            # the same protocols as httpd, nginx's defaults otherwise
            listen += ('\n        listen 127.0.0.1:%d backlog=4096 reuseport;'
                       '\n        ssl_certificate %s;\n        ssl_certificate_key %s;'
                       '\n        ssl_protocols %s;' % (self.pub_port, TLS_CERT, TLS_KEY, ' '.join(TLS_PROTOCOLS)))
            self.config['subscribers'] = 'HTTPS on %d (listen ... ssl), publishes plain HTTP on %d' % (
                self.port, self.pub_port)
        conf = '''# written by bench/run.py for one scenario
load_module {so};
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/run/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{
    worker_connections {conns};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    nchan_message_buffer_length {hist};
    nchan_message_timeout 1h;
    nchan_max_reserved_memory 256M;
{upstream}    server {{
{listen}
        location = /ready {{
            return 204;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;{redis_pass}
        }}
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;{redis_pass}
        }}
    }}
}}
'''.format(so=NCHAN_SO, dir=self.dir, conns=conns, hist=hist, listen=listen, workers=workers,
           nofile=NOFILE, upstream=upstream, redis_pass=redis_pass)
        (self.dir / 'nginx.conf').write_text(conf)

    def command(self):
        self.write_config()
        return [NGINX, '-p', str(self.dir) + '/', '-c', str(self.dir / 'nginx.conf'),
                '-e', str(self.dir / 'logs' / 'error.log'), '-g', 'daemon off;']

    def stop_signal(self):
        return signal.SIGQUIT     # nginx's graceful shutdown

    def restart_signal(self):
        return signal.SIGHUP      # nginx's reload: new workers, the old ones shut down gracefully

    def ready(self):
        return len(proc_tree(self.pid)) >= 1 + getattr(self, 'workers', 2)

    def sub_path(self, channel=CHANNEL):
        return '/sub/' + channel

    def pub_path(self, channel=CHANNEL):
        return '/pub/' + channel

    def log_files(self):
        return [self.dir / 'logs' / 'error.log', self.dir / 'logs' / 'stdout.log']

    def bad_patterns(self):
        return ['[alert]', '[crit]', '[emerg]', '[error]', 'Missed message', 'signal 11', 'exited on signal']


class BetterSse(Server):
    name = 'bettersse'

    def command(self):
        self.config = dict(node=node_version(), history='none (better-sse keeps no history)')
        return [NODE, str(BETTER_SSE_DIR / 'server.js'), str(self.port)]

    def sub_path(self):
        return '/sub/' + CHANNEL

    def pub_path(self):
        return '/pub/' + CHANNEL

    def bad_patterns(self):
        return ['Error', 'error', 'Warning']


CLASSES = {'modsse': ModSse, 'nchan': Nchan, 'bettersse': BetterSse}


def run_client(server, sc, scenario_index, kind=None, extra=(), pids=None):
    """kind overrides sc['kind'] (redis2 runs fanout, then pubrate); extra are more client options; pids
    the processes whose trees' CPU counts (default: the server's)."""
    kind = kind or sc['kind']
    args = [str(CLIENT), kind, '--port', str(server.port),
            '--server-pid', ','.join(str(p) for p in (pids or [server.pid])),
            '--pub-path', server.pub_path(), '--sub-path', server.sub_path(),
            # a fresh source address range per scenario: no TIME_WAIT of an earlier run is in the way
            '--src-base', str(10 + 4 * scenario_index)] + list(extra)
    if server.tls:
        args += ['--tls', '--tls-ca', str(TLS_CERT), '--pub-port', str(server.pub_port)]
    if kind in ('fanout', 'idle'):
        args += ['--subs', str(sc['subs']), '--procs', str(sc['procs'])]
    if kind == 'fanout':
        args += ['--messages', str(sc['messages']), '--rate', str(sc['rate']), '--payload', '100',
                 '--drain-timeout', str(sc['drain'])]
    if kind == 'idle':
        args += ['--idle-wait', '3']
    if kind in ('pubrate', 'pubstream'):
        args += ['--pub-conns', str(sc['conns']), '--duration', str(sc['duration']), '--payload', '100']
    log('  client: %s' % ' '.join(a if ' ' not in a else repr(a) for a in args))
    t0 = time.monotonic()
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=900, preexec_fn=raise_nofile)
    except subprocess.TimeoutExpired:
        return {'error': 'client timed out'}
    for line in r.stderr.splitlines():
        print('    ' + line, flush=True)
    if r.returncode != 0:
        return {'error': 'client exited %d: %s' % (r.returncode, r.stderr.strip()[-500:])}
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {'error': 'client printed no JSON: %r' % r.stdout[-300:]}
    if res.get('server_gone'):
        res['error'] = 'the server was gone before the run ended (see its logs in %s)' % server.dir
    res['wall_s'] = round(time.monotonic() - t0, 2)
    return res


class RedisServer:
    """A redis-server of one server pair's own: high port, no persistence, its directory under bench/work."""

    def __init__(self, name):
        self.port = REDIS_PORTS[name]
        self.dir = WORK / ('redis-' + name)
        self.proc = None

    def answers(self):
        try:
            with socket.create_connection(('127.0.0.1', self.port), timeout=1) as s:
                s.sendall(b'PING\r\n')
                return s.recv(16).startswith(b'+PONG')
        except OSError:
            return False

    def start(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        out = open(self.dir / 'redis.log', 'wb')
        self.proc = subprocess.Popen([REDIS_SERVER, '--port', str(self.port), '--bind', '127.0.0.1',
                                      '--save', '', '--appendonly', 'no', '--dir', str(self.dir),
                                      '--daemonize', 'no'], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.answers():
                return True
            time.sleep(0.1)
        log('redis-server did not start; look at %s' % (self.dir / 'redis.log'))
        self.stop()
        return False

    def version(self):
        m = re.search(r'v=(\S+)', cmd_out([REDIS_SERVER, '--version']))
        return m.group(1) if m else '?'

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def crosses(sub_srv, pub_srv, timeout=2.0):
    """True when an event published on pub_srv reaches a subscriber of sub_srv (on a channel of its own, so
    the measured channel stays empty): both servers are up and share channels through Redis."""
    try:
        with socket.create_connection(('127.0.0.1', sub_srv.port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'
                       % sub_srv.sub_path('probe')).encode())
            got = b''
            while b'\r\n\r\n' not in got:
                d = s.recv(4096)
                if not d:
                    return False
                got += d
            if not got.startswith(b'HTTP/1.1 200'):
                return False
            req = urllib.request.Request('http://127.0.0.1:%d%s' % (pub_srv.pub_port, pub_srv.pub_path('probe')),
                                         data=b'crossed', method='POST', headers={'Content-Type': 'text/plain'})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                if not 200 <= r.status < 300:
                    return False
            while b'data: crossed' not in got:
                d = s.recv(4096)
                if not d:
                    return False
                got += d
            return True
    except OSError:
        return False


def run_redis2(name, sc, scenario_index):
    """Two servers of one kind and their redis-server: subscribers split over both and publishes alternating
    (the fanout client with --port2/--pub-port2), then the publish rate over both without subscribers. CPU is
    both servers' process trees plus redis-server's, each reported apart too."""
    redis = RedisServer(name)
    log(' redis-server: starting on 127.0.0.1:%d' % redis.port)
    if not redis.start():
        return {'error': 'redis-server did not start (log in %s)' % redis.dir}, []
    pair = [CLASSES[name](sc, i, redis.port) for i in (0, 1)]
    issues = []
    try:
        for srv in pair:
            log(' %s: starting on 127.0.0.1:%d, Redis on %d' % (srv.label, srv.port, redis.port))
            if not srv.start():
                return {'error': '%s did not start (logs in %s)' % (srv.label, srv.dir)}, []
        a, b = pair
        deadline = time.monotonic() + 60
        while not (crosses(a, b) and crosses(b, a)):
            if time.monotonic() > deadline:
                return {'error': 'events published on one server did not reach the other within 60 s'}, []
            time.sleep(0.5)
        pids = [a.pid, b.pid, redis.proc.pid]
        res = run_client(a, sc, scenario_index, 'fanout', ['--port2', str(b.port), '--pub-port2', str(b.pub_port)],
                         pids)
        if 'error' not in res:
            pub = run_client(a, sc, scenario_index, 'pubrate', ['--pub-port2', str(b.pub_port)], pids)
            res['pubrate'] = pub
            if 'error' in pub:
                res['error'] = 'publish rate: ' + pub['error']
            else:
                res['publishes_per_s'] = pub['publishes_per_s']
                res['server_cpu_us_per_publish'] = pub['server_cpu_us_per_publish']
        parts = res.get('server_cpu_parts_s')
        if parts and res.get('received'):
            res['cpu_parts_us_per_delivery'] = {k: round(v * 1e6 / res['received'], 3)
                                                for k, v in zip(('server 1', 'server 2', 'redis-server'), parts)}
        res['redis_server'] = redis.version()
    finally:
        for srv in pair:
            srv.stop()
            issues += ['%s: %s' % (srv.label, line) for line in srv.log_issues()]
        redis.stop()
    res['config'] = dict(pair[0].config, servers='2, on ports %d and %d' % (pair[0].port, pair[1].port),
                         redis_server='%s on port %d, no persistence (--save "" --appendonly no)' % (
                             res.get('redis_server', '?'), redis.port))
    return res, issues


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def hold_streams(server, sc, src_base):
    """Starts an idle client that holds sc['subs'] streams; returns it once all are connected (or None, and
    what it said, when they are not within the connect timeout)."""
    args = [str(CLIENT), 'idle', '--port', str(server.port), '--server-pid', str(server.pid),
            '--pub-path', server.pub_path(), '--sub-path', server.sub_path(), '--src-base', str(src_base),
            '--subs', str(sc['subs']), '--procs', str(sc['procs']), '--idle-wait', '60']
    log('  client: %s' % ' '.join(args))
    client = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=raise_nofile)
    said = []
    for line in client.stderr:
        said.append(line.rstrip())
        print('    ' + line.rstrip(), flush=True)
        m = re.search(r'connected (\d+)/(\d+)', line)
        if m and m.group(1) == m.group(2):
            return client, said
    client.wait()
    return None, said


def run_lifecycle(server, sc, scenario_index):
    """With every stream open: how long a graceful restart takes until the last old process is gone, then
    (streams opened again) how long a stop takes until the server has exited."""
    res = {'mode': 'lifecycle', 'subs_requested': sc['subs']}
    for step, sig in (('graceful', server.restart_signal()), ('stop', signal.SIGTERM)):
        client, said = hold_streams(server, sc, 10 + 4 * scenario_index + (4 if step == 'stop' else 0))
        if not client:
            res['error'] = '%s: not every stream connected: %s' % (step, ' | '.join(said[-3:]))
            return res
        time.sleep(2)
        old = set(proc_tree(server.pid)) - {server.pid}
        t0 = time.monotonic()
        os.kill(server.pid, sig)
        gone = (lambda: not any(alive(p) for p in old)) if step == 'graceful' \
            else (lambda: server.proc.poll() is not None)
        while not gone() and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        res[step + '_s'] = round(time.monotonic() - t0, 3) if gone() else None
        client.terminate()
        client.wait()
        if step == 'graceful':
            deadline = time.monotonic() + 30
            while not server.ready() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)
    res['subs_connected'] = sc['subs']
    return res


def short(res):
    if 'error' in res:
        return 'ERROR ' + res['error']
    if res['mode'] == 'fanout' and 'pubrate' in res:
        return ('subs %d/%d (%d on the second server)  recv %d/%d (%d crossed servers)  loss %d  dup %d  ooo %d  '
                'p99 %.2f ms  cpu %.2f us/deliv (servers + redis)  pub %.0f/s;  publishes over both %.0f/s  '
                'errors %d  cpu %.1f us/publish' % (
                    res['subs_connected'], res['subs_requested'], res['subs_connected_port2'], res['received'],
                    res['expected'], res['cross_server_received'], res['loss'], res['duplicates'],
                    res['out_of_order'], res['latency_p99_ms'], res['server_cpu_us_per_delivery'],
                    res['rate_achieved'], res['publishes_per_s'], res['pubrate']['publish_errors'],
                    res['server_cpu_us_per_publish']))
    if res['mode'] == 'fanout':
        return ('subs %d/%d  recv %d/%d  loss %d  dup %d  ooo %d  p50 %.2f ms  p99 %.2f ms  %.0f deliv/s  '
                'cpu %.2f us/deliv  pub %.0f/s' % (
                    res['subs_connected'], res['subs_requested'], res['received'], res['expected'], res['loss'],
                    res['duplicates'], res['out_of_order'], res['latency_p50_ms'], res['latency_p99_ms'],
                    res['deliveries_per_s'], res['server_cpu_us_per_delivery'], res['rate_achieved']))
    if res['mode'] == 'idle':
        return 'subs %d/%d  PSS %.0f -> %.0f KB  %.1f KB/sub (all-in)  %.1f KB/sub (added)' % (
            res['subs_connected'], res['subs_requested'], res['pss_before_kb'], res['pss_after_kb'],
            res['kb_per_sub_pss_total'], res['kb_per_sub_pss_delta'])
    if res['mode'] == 'lifecycle':
        return 'graceful restart %s s, stop %s s with %d open streams' % (
            fmt(res['graceful_s']), fmt(res['stop_s']), res['subs_connected'])
    if res['mode'] == 'pubstream':
        return '%.0f publishes/s  (%d lines sent, %d published)  cpu %.2f us/publish' % (
            res['publishes_per_s'], res['lines_sent'], res['published'], res['server_cpu_us_per_publish'])
    return '%.0f publishes/s  errors %d  p99 %.2f ms  cpu %.1f us/publish' % (
        res['publishes_per_s'], res['publish_errors'], res['publish_p99_ms'], res['server_cpu_us_per_publish'])


# ---------------------------------------------------------------------------
# header: what ran where

def cmd_out(args):
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ''


def node_version():
    return cmd_out([NODE, '-v'])


def header():
    cpu = ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    apache = cmd_out([APACHE2, '-v'])
    m = re.search(r'Server version:\s*Apache/(\S+)', apache)
    nginx = cmd_out([NGINX, '-v'])
    m2 = re.search(r'nginx/(\S+)', nginx)
    try:
        bsse = json.loads((BETTER_SSE_DIR / 'node_modules' / 'better-sse' / 'package.json').read_text())['version']
    except (OSError, ValueError, KeyError):
        bsse = '?'
    head = cmd_out(['git', '-C', str(REPO), 'rev-parse', '--short=12', 'HEAD'])
    # the module is built from the work tree: say so when its sources differ from HEAD
    dirty = cmd_out(['git', '-C', str(REPO), 'status', '--porcelain', '--untracked-files=no', '--',
                     ':(top,glob)*.c', ':(top,glob)*.h'])
    return {
        'date': datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'),
        'nproc': os.cpu_count(),
        'cpu': cpu,
        'kernel': platform.release(),
        'memory_gb': round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1),
        'apache': m.group(1) if m else apache,
        'nginx': m2.group(1) if m2 else nginx,
        'nchan': cmd_out(['dpkg-query', '-W', '-f', '${Version}', 'libnginx-mod-nchan']),
        'node': node_version(),
        'better_sse': bsse,
        'mod_sse_git': head + (' (C sources modified)' if dirty else ''),
        'quick': QUICK,
    }


# ---------------------------------------------------------------------------
# report

def fmt(v, nd=2):
    if v is None:
        return '–'
    if isinstance(v, float):
        if abs(v) >= 1000:
            return '{:,.0f}'.format(v)
        if abs(v) >= 100:
            return '%.0f' % v
        if abs(v) >= 10:
            return '%.1f' % v
        return ('%.' + str(nd) + 'f') % v
    if isinstance(v, int):
        return '{:,}'.format(v)
    return str(v)


def table(cols, rows):
    out = ['| ' + ' | '.join(c for c in cols) + ' |', '|' + '|'.join('---' for _ in cols) + '|']
    for r in rows:
        out.append('| ' + ' | '.join(r) + ' |')
    return '\n'.join(out)


def scenario_table(name, sc, results):
    kind = sc['kind']
    rows = []
    for srv in SERVERS:
        res = results.get(srv)
        if res is None:
            continue
        if 'error' in res:
            rows.append([LABELS[srv], 'error: ' + res['error'].replace('|', '/')[:200]])
            continue
        if kind in ('fanout', 'redis2'):
            rows.append([LABELS[srv], '%s/%s' % (fmt(res['subs_connected']), fmt(res['subs_requested'])),
                         '%s (%s/s)' % (fmt(res['published']), fmt(res['rate_achieved'])),
                         fmt(res['publish_errors']),
                         '%s/%s' % (fmt(res['received']), fmt(res['expected'])), fmt(res['loss']),
                         fmt(res['duplicates']), fmt(res['out_of_order']),
                         fmt(res['disconnects'] + res['busy'] + res['non200']),
                         fmt(res['latency_p50_ms']), fmt(res['latency_p90_ms']), fmt(res['latency_p99_ms']),
                         fmt(res['latency_p999_ms']), fmt(res['latency_max_ms']),
                         fmt(res['deliveries_per_s']), fmt(res.get('events_per_read')), fmt(res['server_cpu_s']),
                         fmt(res['server_cpu_us_per_delivery']), fmt(res['client_cpu_s'])])
        elif kind == 'idle':
            rows.append([LABELS[srv], '%s/%s' % (fmt(res['subs_connected']), fmt(res['subs_requested'])),
                         fmt(res['connect_s']), fmt(res['server_procs']),
                         fmt(res['rss_before_kb'] / 1024), fmt(res['rss_after_kb'] / 1024),
                         fmt(res['pss_before_kb'] / 1024), fmt(res['pss_after_kb'] / 1024),
                         fmt(res['kb_per_sub_pss_total']), fmt(res['kb_per_sub_pss_delta']),
                         fmt(res['disconnects'])])
        elif kind == 'lifecycle':
            rows.append([LABELS[srv], fmt(res['subs_connected']), fmt(res['graceful_s']), fmt(res['stop_s'])])
        elif kind == 'pubstream':
            rows.append([LABELS[srv], fmt(res['publishes_per_s']), fmt(res['published']),
                         fmt(res['lines_sent']), fmt(res['failed_connections']),
                         fmt(res['server_cpu_us_per_publish']), fmt(res['client_cpu_s'])])
        else:
            rows.append([LABELS[srv], fmt(res['publishes_per_s']), fmt(res['published']),
                         fmt(res['publish_errors']), fmt(res['publish_p50_ms']), fmt(res['publish_p99_ms']),
                         fmt(res['publish_max_ms']), fmt(res['server_cpu_us_per_publish']),
                         fmt(res['client_cpu_s'])])
    if kind in ('fanout', 'redis2'):
        cols = ['server', 'subs', 'published (rate)', 'pub errors', 'received/expected', 'loss', 'dups',
                'out of order', 'dropped subs', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms',
                'deliveries/s', 'events/read', 'server CPU s', 'CPU µs/delivery', 'client CPU s']
        desc = '%s subscribers, %s messages of 100 bytes at %s/s' % (
            fmt(sc['subs']), fmt(sc['messages']), fmt(sc['rate']))
        if sc.get('tls'):
            agreed = ', '.join('%s %s%s' % (LABELS[srv], res.get('tls', '?'),
                                            '' if not res.get('tls_errors') else ' (%s TLS errors)'
                                            % fmt(res['tls_errors']))
                               for srv, res in results.items() if 'error' not in res)
            desc += ('; subscribers over HTTPS (HTTP/1.1, the certificate verified by the client; negotiated: '
                     '%s), publishes plain HTTP to a second listener of the same server' % agreed)
    elif kind == 'idle':
        cols = ['server', 'subs', 'connect s', 'processes', 'RSS before MB', 'RSS after MB', 'PSS before MB',
                'PSS after MB', 'KB/sub all-in', 'KB/sub added', 'dropped']
        desc = '%s idle subscribers, memory sampled 3 s after the last connected' % fmt(sc['subs'])
    elif kind == 'lifecycle':
        cols = ['server', 'open streams', 'graceful restart s', 'stop s']
        desc = ('%s idle streams held open; graceful restart (httpd SIGUSR1, nginx SIGHUP) timed until the '
                'last old process is gone, then, with the streams opened again, stop (SIGTERM) until the server '
                'has exited' % fmt(sc['subs']))
    elif kind == 'pubstream':
        cols = ['server', 'publishes/s', 'published', 'lines sent', 'failed connections', 'CPU µs/publish',
                'client CPU s']
        desc = ('%d connections, each one POST of application/x-ndjson streaming 100-byte messages for %s s '
                '(mod_sse only: the other servers have no streaming publish)' % (sc['conns'], fmt(sc['duration'])))
    else:
        cols = ['server', 'publishes/s', 'published', 'errors', 'p50 ms', 'p99 ms', 'max ms',
                'CPU µs/publish', 'client CPU s']
        desc = '%d keep-alive connections publishing 100-byte messages as fast as answered for %s s' % (
            sc['conns'], fmt(sc['duration']))
    if kind == 'redis2':
        desc = ('2 servers and 1 redis-server per server kind; %s subscribers split over both servers, %s '
                'messages of 100 bytes at %s/s, published alternately on the one and the other, one keep-alive '
                'connection to each; server CPU is both servers\' process trees plus redis-server\'s' % (
                    fmt(sc['subs']), fmt(sc['messages']), fmt(sc['rate'])))
    text = '### %s — %s\n\n%s.\n\n%s\n' % (name, sc['what'], desc, table(cols, rows))
    if kind == 'redis2':
        text += '\n' + redis2_table(sc, results) + '\n'
    return text + NOTES.get('fanout' if kind == 'redis2' else kind, '')


def redis2_table(sc, results):
    """What redis2 adds to a fan-out table: the split over the servers, where the CPU went, the publish rate."""
    rows = []
    for srv in SERVERS:
        res = results.get(srv)
        if not res or 'error' in res:
            continue
        parts = res.get('cpu_parts_us_per_delivery', {})
        pub = res['pubrate']
        pparts = pub.get('server_cpu_parts_s') or []
        rows.append([LABELS[srv], '%s + %s' % (fmt(res['subs_connected'] - res['subs_connected_port2']),
                                               fmt(res['subs_connected_port2'])),
                     '%s of %s' % (fmt(res['cross_server_received']), fmt(res['received'])),
                     ' + '.join(fmt(parts.get(k)) for k in ('server 1', 'server 2', 'redis-server')),
                     fmt(pub['publishes_per_s']), fmt(pub['publish_errors']), fmt(pub['publish_p99_ms']),
                     fmt(pub['server_cpu_us_per_publish']),
                     fmt(100.0 * pparts[2] / pub['server_cpu_s']) if len(pparts) == 3 and pub['server_cpu_s'] > 0
                     else '–'])
    return ('Subscribers per server, deliveries of events published on the other server, and CPU µs per delivery '
            'split into server 1 + server 2 + redis-server; then %d keep-alive connections publishing as fast as '
            'answered for %s s, alternating between the two servers, **no subscribers attached**, CPU again '
            'both servers and redis-server.\n\n' % (sc['conns'], fmt(sc['duration'])) +
            table(['server', 'subs (1 + 2)', 'crossed servers', 'CPU µs/delivery (1 + 2 + redis)',
                   'publishes/s', 'pub errors', 'publish p99 ms', 'CPU µs/publish', 'redis share of publish CPU %'],
                  rows))


NOTES = {
    'fanout': '\n"published (rate)" is the publish rate achieved against the schedule; "dropped subs" counts '
              'disconnects, over-capacity answers and non-200 answers; "events/read" is how many events the '
              'client found per read() (above 1 when a server writes several queued events at once); '
              'server CPU covers the publishing and delivery phase, client CPU the whole run.\n',
    'idle': '\nPSS splits pages shared between processes (httpd children, nginx workers), so its sum over the '
            'server\'s processes is its real footprint; "all-in" is PSS after connecting divided by the '
            'subscribers, "added" the growth from connecting.\n',
}


def val(results, scen, srv, key):
    res = results.get(scen, {}).get(srv)
    if not res or 'error' in res or key not in res:
        return None
    v = res[key]
    return v if v is not None and v >= 0 else None


HEADLINE = [
    # label, scenario, key, better
    ('CPU µs per delivery, saturation', 'saturation', 'server_cpu_us_per_delivery', 'lower'),
    ('CPU µs per delivery, fanout', 'fanout', 'server_cpu_us_per_delivery', 'lower'),
    ('p99 latency ms, light', 'light', 'latency_p99_ms', 'lower'),
    ('p99 latency ms, fanout', 'fanout', 'latency_p99_ms', 'lower'),
    ('deliveries per second, saturation', 'saturation', 'deliveries_per_s', 'higher'),
    ('CPU µs per delivery, tls1k (HTTPS)', 'tls1k', 'server_cpu_us_per_delivery', 'lower'),
    ('p99 latency ms, tls1k (HTTPS)', 'tls1k', 'latency_p99_ms', 'lower'),
    ('deliveries per second, tls1k (HTTPS)', 'tls1k', 'deliveries_per_s', 'higher'),
    ('CPU µs per delivery, tls1k-paced (HTTPS, 20 msg/s)', 'tls1k-paced', 'server_cpu_us_per_delivery', 'lower'),
    ('p99 latency ms, tls1k-paced (HTTPS, 20 msg/s)', 'tls1k-paced', 'latency_p99_ms', 'lower'),
    ('KB per idle subscriber (all-in PSS)', 'idle', 'kb_per_sub_pss_total', 'lower'),
    ('CPU µs per delivery, fan50k', 'fan50k', 'server_cpu_us_per_delivery', 'lower'),
    ('p99 latency ms, fan50k', 'fan50k', 'latency_p99_ms', 'lower'),
    ('KB per idle subscriber (all-in PSS)', 'idle50k', 'kb_per_sub_pss_total', 'lower'),
    ('graceful restart s, open streams', 'restart50k', 'graceful_s', 'lower'),
    ('stop s, open streams', 'restart50k', 'stop_s', 'lower'),
    ('publishes per second', 'pubrate', 'publishes_per_s', 'higher'),
    ('publishes per second, mod_sse under mpm_event', ('pubrate-event', 'pubrate'), 'publishes_per_s', 'higher'),
    # mod_sse's streaming publish against the others' best, one request per message
    ('publishes per second, mod_sse streaming', ('pubstream', 'pubrate'), 'publishes_per_s', 'higher'),
    # two servers on one redis-server each; CPU includes redis-server's
    ('p99 latency ms, redis2 (2 servers via Redis, 100 msg/s)', 'redis2', 'latency_p99_ms', 'lower'),
    ('CPU µs per delivery, redis2 (2 servers + redis-server, 100 msg/s)', 'redis2', 'server_cpu_us_per_delivery',
     'lower'),
    ('publishes per second, redis2 (alternating over 2 servers via Redis, no subscribers)', 'redis2',
     'publishes_per_s', 'higher'),
]


def headline_table(results, scenarios):
    rows = []
    for label, scen, key, better in HEADLINE:
        own, others = scen if isinstance(scen, tuple) else (scen, scen)
        sc = scenarios.get(own, {})
        if sc.get('subs') and 'no subscribers' not in label:
            label += ' (%s subs)' % fmt(sc['subs'])
        m = val(results, own, 'modsse', key)
        n, b = (val(results, others, s, key) for s in ('nchan', 'bettersse'))
        if m is None and n is None and b is None:
            continue

        def ratio(x, y):
            return ('%.2f×' % (x / y)) if x is not None and y else '–'
        rows.append([label, fmt(m), fmt(n), fmt(b), ratio(m, n), ratio(m, b), better + ' is better'])
    return table(['metric', 'mod_sse', 'Nchan', 'better-sse', 'mod_sse / Nchan', 'mod_sse / better-sse', ''],
                 rows)


def header_md(h, took):
    return ('Run %s on %d × %s, %.0f GB, Linux %s, in %.1f min%s. Versions: Apache %s with mod_sse (git %s); '
            'nginx %s with Nchan %s; better-sse %s on Node %s.' % (
                h['date'], h['nproc'], h['cpu'], h['memory_gb'], h['kernel'], took / 60,
                ' (BENCH_QUICK: scenarios 10× smaller)' if h['quick'] else '',
                h['apache'], h['mod_sse_git'], h['nginx'], h['nchan'], h['better_sse'], h['node']))


def anomalies(results):
    notes = []
    for scen, per in results.items():
        for srv, res in per.items():
            if 'error' in res:
                notes.append('%s / %s: %s' % (scen, LABELS[srv], res['error']))
                continue
            if res.get('mode') == 'fanout':
                bits = []
                for key in ('loss', 'duplicates', 'out_of_order', 'disconnects', 'busy', 'busy_gave_up', 'non200',
                            'publish_errors', 'connect_failed', 'protocol_errors', 'foreign_events', 'bad_seq'):
                    if res.get(key):
                        bits.append('%s %s' % (key.replace('_', ' '), fmt(res[key])))
                if res['subs_connected'] < res['subs_requested']:
                    bits.append('only %s of %s subscribers connected' % (
                        fmt(res['subs_connected']), fmt(res['subs_requested'])))
                if res.get('drain_timed_out'):
                    bits.append('deliveries still missing when the drain timeout passed')
                # machine CPU while publishing less server and client (the client's for the whole run, so
                # this is a lower bound): what other processes took; ticks make short runs too coarse to say
                m, srv_cpu, cli = res.get('machine_cpu_s'), res.get('server_cpu_s'), res.get('client_cpu_s')
                if m is not None and m >= 5 and srv_cpu is not None and srv_cpu >= 0 and cli is not None \
                        and m - srv_cpu - cli > 0.1 * m:
                    bits.append('other processes took at least %.0f %% of the machine\'s busy CPU while '
                                'publishing (%s of %s CPU s): latency and deliveries/s suffer, CPU per delivery '
                                'less so' % (
                                    100 * (m - srv_cpu - cli) / m, fmt(m - srv_cpu - cli), fmt(m)))
                if res.get('rate_requested') and res['rate_achieved'] < 0.95 * res['rate_requested']:
                    bits.append('the publisher fell behind the schedule (%s of %s messages/s): the server was '
                                'saturated, and latency includes the wait' % (
                                    fmt(res['rate_achieved']), fmt(float(res['rate_requested']))))
                pub = res.get('pubrate') or {}
                if pub.get('publish_errors'):
                    bits.append('publish rate run: %s publish errors' % fmt(pub['publish_errors']))
                pm, ps, pc = pub.get('machine_cpu_s'), pub.get('server_cpu_s'), pub.get('client_cpu_s')
                if pm is not None and pm >= 2 and ps is not None and ps >= 0 and pc is not None \
                        and pm - ps - pc > 0.1 * pm:
                    bits.append('publish rate run: other processes took at least %.0f %% of the machine\'s busy '
                                'CPU (%s of %s CPU s)' % (100 * (pm - ps - pc) / pm, fmt(pm - ps - pc), fmt(pm)))
                if 'cross_server_received' in res and res['cross_server_received'] * 2 != res['expected']:
                    bits.append('%s deliveries crossed servers, expected half of %s' % (
                        fmt(res['cross_server_received']), fmt(res['expected'])))
                if bits:
                    notes.append('%s / %s: %s' % (scen, LABELS[srv], ', '.join(bits)))
            elif res.get('mode') == 'lifecycle':
                late = [k for k in ('graceful_s', 'stop_s') if res.get(k) is None]
                if late:
                    notes.append('%s / %s: %s not done within 60 s' % (scen, LABELS[srv], ', '.join(late)))
            elif res.get('mode') in ('idle', 'pubrate', 'pubstream'):
                bits = []
                for key in ('connect_failed', 'busy', 'busy_gave_up', 'disconnects', 'publish_errors'):
                    if res.get(key):
                        bits.append('%s %s' % (key.replace('_', ' '), fmt(res[key])))
                if res.get('subs_connected', 0) < res.get('subs_requested', 0):
                    bits.append('only %s of %s subscribers connected' % (
                        fmt(res['subs_connected']), fmt(res['subs_requested'])))
                if bits:
                    notes.append('%s / %s: %s' % (scen, LABELS[srv], ', '.join(bits)))
            if res.get('log_issues'):
                notes.append('%s / %s: %d troubling server log line(s), e.g. `%s`' % (
                    scen, LABELS[srv], len(res['log_issues']), res['log_issues'][0][:200].replace('|', '/')))
    return notes


def merged_md(merged):
    """Which scenarios came from a later filtered run (run.py --merge), and from what."""
    lines = []
    for scen, m in (merged or {}).items():
        h = m['header']
        lines.append('`%s` comes from a separate run on %s (mod_sse git %s, Apache %s, nginx %s with Nchan %s), '
                     'merged in with `run.py --merge`.' % (scen, h['date'], h['mod_sse_git'], h['apache'],
                                                            h['nginx'], h['nchan']))
    return ' '.join(lines)


def write_markdown(out, h, scenarios, results, plots, took, merged=None):
    parts = ['# mod_sse benchmark results', '',
             '<!-- written by bench/run.py; bench/README.md explains the method -->', '',
             header_md(h, took) + (' ' + merged_md(merged) if merged else ''), '',
             'Client and servers share the same cores, so compare the ratios, not the absolute numbers. '
             'Latency runs from the *intended* send time of a message to its arrival at a subscriber.', '',
             '## Headline', '', headline_table(results, scenarios), '']
    notes = anomalies(results)
    parts += ['## Anomalies', '']
    parts += ['- ' + n for n in notes] if notes else ['None: no loss, duplicates, reordering, errors or dropped '
                                                      'subscribers.']
    parts += ['', '## Scenarios', '']
    for name, sc in scenarios.items():
        if name in results:
            parts.append(scenario_table(name, sc, results[name]))
    parts += ['## Server settings per scenario', '']
    for name in scenarios:
        for srv in SERVERS:
            cfg = results.get(name, {}).get(srv, {}).get('config')
            if cfg:
                parts.append('- %s / %s: %s' % (name, LABELS[srv], ', '.join('%s %s' % kv for kv in cfg.items())))
    parts += ['', '## Plots', '']
    parts += ['![%s](%s)' % (p.stem, p.name) for p in plots]
    (out / 'results.md').write_text('\n'.join(parts) + '\n')


def update_readme(h, scenarios, results, plots, took, merged=None):
    text = README.read_text()
    begin, end = '<!-- bench:begin -->', '<!-- bench:end -->'
    if begin not in text or end not in text:
        log('README.md has no bench markers; left alone')
        return
    block = [begin, '', header_md(h, took) + (' ' + merged_md(merged) if merged else ''), '',
             headline_table(results, scenarios), '',
             'Ratios are mod_sse divided by the other server. Full tables: '
             '[bench/results/results.md](bench/results/results.md); plots: ' +
             ', '.join('[%s](bench/results/%s)' % (p.stem.replace('_', ' '), p.name) for p in plots) + '.']
    notes = anomalies(results)
    if notes:
        block += ['', 'Seen in this run:', ''] + ['- ' + n for n in notes]
    block += ['', end]
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    README.write_text(pre + '\n'.join(block) + post)


def plot(out, results):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        log('matplotlib missing (Debian: python3-matplotlib); no plots')
        return []
    colors = {'modsse': '#c0392b', 'nchan': '#2c7fb8', 'bettersse': '#7fbc41'}
    files = []

    def bars(ax, groups, values, ylabel, title, log_scale=False):
        n = len(SERVERS)
        width = 0.8 / n
        for i, srv in enumerate(SERVERS):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
            ys = [values[srv][j] if values[srv][j] is not None else 0 for j in range(len(groups))]
            b = ax.bar(xs, ys, width, label=LABELS[srv], color=colors[srv])
            for rect, y, raw in zip(b, ys, values[srv]):
                if raw is not None:
                    ax.annotate(fmt(float(raw)), (rect.get_x() + rect.get_width() / 2, y), ha='center',
                                va='bottom', fontsize=7, xytext=(0, 1), textcoords='offset points')
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if log_scale:
            ax.set_yscale('log')
            ax.yaxis.set_minor_formatter(NullFormatter())
        # plain numbers on the axis: no 6×10⁰ or 1e6 offsets
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: '{:,.0f}'.format(v) if v >= 10 else '%g' % v))
        ax.grid(axis='y', alpha=0.3)

    lat_scen = [s for s in ('light', 'saturation', 'tls1k', 'tls1k-paced', 'fanout') if s in results]
    if lat_scen:
        fig, axes = plt.subplots(1, len(lat_scen), figsize=(5 * len(lat_scen), 4.2), squeeze=False)
        pct = [('p50', 'latency_p50_ms'), ('p90', 'latency_p90_ms'), ('p99', 'latency_p99_ms'),
               ('p99.9', 'latency_p999_ms')]
        for ax, scen in zip(axes[0], lat_scen):
            vals = {srv: [val(results, scen, srv, k) for _, k in pct] for srv in SERVERS}
            bars(ax, [p for p, _ in pct], vals, 'ms (log scale)', 'latency, %s' % scen, log_scale=True)
        axes[0][0].legend(fontsize=8)
        fig.suptitle('Delivery latency from intended send time (lower is better)')
        fig.tight_layout()
        p = out / 'latency.png'
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)

    singles = [
        ('cpu_per_delivery.png', 'server CPU µs per delivery (lower is better)', 'µs',
         [(s, s, 'server_cpu_us_per_delivery') for s in ('light', 'saturation', 'tls1k', 'tls1k-paced',
                                                            'fanout')]),
        ('throughput.png', 'deliveries/s at saturation and publishes/s without subscribers (higher is better)',
         'per second', [('deliveries/s, saturation', 'saturation', 'deliveries_per_s'),
                        ('deliveries/s, tls1k (HTTPS)', 'tls1k', 'deliveries_per_s'),
                        ('publishes/s', 'pubrate', 'publishes_per_s')]),
        ('memory_per_idle_subscriber.png', 'memory per idle subscriber, PSS (lower is better)', 'KB',
         [('all-in', 'idle', 'kb_per_sub_pss_total'), ('added by subscribers', 'idle', 'kb_per_sub_pss_delta')]),
    ]
    for fname, title, ylabel, items in singles:
        items = [it for it in items if it[1] in results]
        if not items:
            continue
        if fname == 'throughput.png':
            fig, axes = plt.subplots(1, len(items), figsize=(5 * len(items), 4.2), squeeze=False)
            for ax, (lab, scen, key) in zip(axes[0], items):
                bars(ax, [lab], {srv: [val(results, scen, srv, key)] for srv in SERVERS}, ylabel, lab)
            axes[0][0].legend(fontsize=8)
        else:
            fig, ax = plt.subplots(figsize=(max(5, 2.6 * len(items)), 4.2))
            bars(ax, [lab for lab, _, _ in items],
                 {srv: [val(results, scen, srv, key) for _, scen, key in items] for srv in SERVERS}, ylabel, '')
            ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        p = out / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


# ---------------------------------------------------------------------------

def report_only(out):
    data = json.loads((out / 'results.json').read_text())
    h, results, scenarios, took = data['header'], data['results'], data['scenarios'], data['took_s']
    merged = data.get('merged')
    plots = plot(out, results)
    write_markdown(out, h, scenarios, results, plots, took, merged)
    if out.resolve() == (BENCH / 'results').resolve():
        update_readme(h, scenarios, results, plots, took, merged)
    log('rendered %s from %s' % (out / 'results.md', out / 'results.json'))
    return 0


def merge(src):
    """Puts the scenarios of a filtered run into the committed results, each with the header of its run."""
    dest = BENCH / 'results'
    part = json.loads((src / 'results.json').read_text())
    data = json.loads((dest / 'results.json').read_text())
    if part['header'].get('quick'):
        sys.exit('--merge: %s is a quick run (BENCH_QUICK); only full-size scenarios go into bench/results' % src)
    for scen, per in part['results'].items():
        sc = SCENARIOS.get(scen)
        if sc is None:
            sys.exit('--merge: unknown scenario %r' % scen)
        want = [s for s in SERVERS if not sc.get('only') or s in sc['only']]
        missing = [LABELS[s] for s in want if s not in per]
        if missing:
            sys.exit('--merge: %s of %s ran without %s (BENCH_ONLY?); run it with every server' % (
                scen, src, ', '.join(missing)))
        failed = ['%s: %s' % (LABELS[s], r['error']) for s, r in per.items() if 'error' in r]
        if failed:
            sys.exit('--merge: %s failed in %s (%s)' % (scen, src, '; '.join(failed)))
    for scen in part['results']:
        data['results'][scen] = part['results'][scen]
        data['scenarios'][scen] = part['scenarios'][scen]
        data.setdefault('merged', {})[scen] = {'header': part['header'], 'took_s': part['took_s']}
    # the order of SCENARIOS, so a merged scenario sits where a full run would put it
    order = list(SCENARIOS)
    key = lambda kv: order.index(kv[0]) if kv[0] in order else len(order)
    data['scenarios'] = dict(sorted(data['scenarios'].items(), key=key))
    data['results'] = dict(sorted(data['results'].items(), key=key))
    data['merged'] = dict(sorted(data['merged'].items(), key=key))
    (dest / 'results.json').write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')
    log('merged %s from %s into %s' % (', '.join(part['results']), src, dest))
    return report_only(dest)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--report':
        return report_only(Path(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == '--merge':
        return merge(Path(sys.argv[2]))
    if len(sys.argv) > 1:
        sys.exit('usage: run.py [--report DIR | --merge DIR]  (configured by BENCH_* environment variables, '
                 'see the top of run.py)')
    t_start = time.monotonic()
    raise_nofile()
    if not CLIENT.exists():
        sys.exit('%s is missing: run `make bench` (it builds the client)' % CLIENT)
    if not ModSse.module.exists():
        sys.exit('%s is missing: run `make` first' % ModSse.module)
    only = [s.strip().replace('-', '').replace('_', '') for s in os.environ.get('BENCH_ONLY', '').split(',')
            if s.strip()]
    for s in only:
        if s not in SERVERS:
            sys.exit('BENCH_ONLY: unknown server %r (modsse, nchan, bettersse)' % s)
    servers = [s for s in SERVERS if not only or s in only]
    wanted = [s.strip() for s in os.environ.get('BENCH_SCENARIOS', '').split(',') if s.strip()]
    for s in wanted:
        if s not in SCENARIOS:
            sys.exit('BENCH_SCENARIOS: unknown scenario %r (%s)' % (s, ', '.join(SCENARIOS)))
    scenarios = {}
    for name, sc in SCENARIOS.items():
        if wanted and name not in wanted:
            continue
        sc = dict(sc)
        if QUICK:
            sc.update(QUICK_SCENARIOS[name])
        scenarios[name] = sc
    full = not QUICK and not wanted and not only
    out = Path(os.environ['BENCH_OUT']) if os.environ.get('BENCH_OUT') else (
        BENCH / 'results' if full else WORK / 'results')
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(exist_ok=True)

    h = header()
    if any(sc.get('tls') for sc in scenarios.values()):
        make_cert()
    log('servers: %s; scenarios: %s%s; results go to %s' % (
        ', '.join(LABELS[s] for s in servers), ', '.join(scenarios), ' (quick)' if QUICK else '', out))
    results = {}
    failed_start = []
    for idx, (name, sc) in enumerate(scenarios.items()):
        log('scenario %s: %s' % (name, sc['what']))
        results[name] = {}
        for srv_name in servers:
            if sc.get('only') and srv_name not in sc['only']:
                continue
            if sc['kind'] == 'redis2':
                res, issues = run_redis2(srv_name, sc, idx)
                if 'error' in res and 'did not start' in res['error']:
                    failed_start.append('%s/%s' % (name, srv_name))
                if issues:
                    res['log_issues'] = issues[:20]
                    res['log_issue_count'] = len(issues)
                    log(' %s: %d troubling log line(s), e.g. %s' % (LABELS[srv_name], len(issues), issues[0][:160]))
                results[name][srv_name] = res
                log(' %s: %s' % (LABELS[srv_name], short(res)))
                continue
            srv = CLASSES[srv_name](sc)
            log(' %s: starting on 127.0.0.1:%d' % (srv.label, srv.port))
            t0 = time.monotonic()
            if not srv.start():
                results[name][srv_name] = {'error': 'server did not start (logs in %s)' % srv.dir}
                failed_start.append('%s/%s' % (name, srv_name))
                continue
            log(' %s: up in %.1f s (pid %d)' % (srv.label, time.monotonic() - t0, srv.pid))
            try:
                res = (run_lifecycle if sc['kind'] == 'lifecycle' else run_client)(srv, sc, idx)
            finally:
                srv.stop()
            res['config'] = srv.config
            issues = srv.log_issues()
            if issues:
                res['log_issues'] = issues[:20]
                res['log_issue_count'] = len(issues)
                log(' %s: %d troubling log line(s) in %s, e.g. %s' % (srv.label, len(issues), srv.dir / 'logs',
                                                                     issues[0][:160]))
            results[name][srv_name] = res
            log(' %s: %s' % (srv.label, short(res)))
    took = time.monotonic() - t_start
    data = {'header': h, 'took_s': round(took, 1), 'scenarios': {n: dict(sc) for n, sc in scenarios.items()},
            'results': results}
    (out / 'results.json').write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')
    plots = plot(out, results)
    write_markdown(out, h, scenarios, results, plots, took)
    if full and out == BENCH / 'results':
        update_readme(h, scenarios, results, plots, took)
        log('README.md benchmark block updated')
    log('done in %.1f min: %s' % ((time.monotonic() - t_start) / 60, out / 'results.md'))
    print(headline_table(results, scenarios))
    if failed_start:
        log('servers that did not start: %s' % ', '.join(failed_start))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
