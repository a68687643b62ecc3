/* sse_load.c - SSE load client for the benchmark: fan-out, idle-memory and publish-rate modes, one JSON line out.
 *
 * Subscribers live in forked worker processes, each one epoll loop bound to
 * its own source address (127.0.0.(10+k)) so ephemeral ports and the per
 * process fd limit never cap the subscriber count. With --tls they speak
 * HTTPS (OpenSSL, non-blocking, in the same loop); publishes stay plain
 * HTTP, to --pub-port, so only delivery pays for TLS. The parent talks to the
 * workers over pipes, samples the server's CPU and memory from /proc, and
 * publishes on a fixed schedule: every payload carries its *intended* send
 * time, so a publisher that falls behind shows up as latency instead of
 * silently thinning the load (coordinated omission).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_PROCS 32
#define MAX_PUB_CONNS 64
#define READ_BUF (64 * 1024)
#define MAX_LINE (1024 * 1024)
#define MAX_HEADERS (16 * 1024)

/* ------------------------------------------------------------------ */
/* options */

enum mode { MODE_FANOUT, MODE_IDLE, MODE_PUBRATE, MODE_PUBSTREAM };

static struct {
    enum mode mode;
    const char *host;
    int port;
    const char *sub_path;
    const char *pub_path;
    int subs;
    int procs;
    double rate;
    int messages;
    int payload;
    double drain_timeout;
    double connect_timeout;     /* whole connect phase */
    double conn_timeout;        /* one connection attempt */
    int connect_batch;          /* connects in flight per worker */
    int pub_conns;
    double duration;            /* pubrate */
    double idle_wait;
    double deadline;            /* whole run, then give up */
    int src_base;               /* workers bind 127.0.0.(src_base+k) */
    int tls;                    /* subscribers over TLS */
    const char *tls_ca;         /* verify the server against this; none: no verification */
    int pub_port;               /* publishes go here (plain HTTP); 0: --port */
    int port2;                  /* a second server: odd subscribers of each worker connect here */
    int pub_port2;              /* a second server: every second publish (even seq) goes here */
    pid_t server_pids[8];       /* --server-pid A,B,...: CPU and memory summed over these trees */
    int n_server_pids;
} opt = {
    .mode = MODE_FANOUT, .host = "127.0.0.1", .port = 0, .sub_path = "/sub/bench",
    .pub_path = "/pub/bench", .subs = 100, .procs = 1, .rate = 100, .messages = 100,
    .payload = 100, .drain_timeout = 30, .connect_timeout = 120,
    .conn_timeout = 15, .connect_batch = 256, .pub_conns = 1, .duration = 5,
    .idle_wait = 3, .deadline = 0, .src_base = 10,
};

static struct sockaddr_in server_addr, pub_addr, server_addr2, pub_addr2;

static void vnote(const char *fmt, va_list ap)
{
    fprintf(stderr, "sse_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
    exit(1);
}

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
    struct timespec ts = { .tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int64_t sec_ns(double s) { return (int64_t)(s * 1e9); }

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ------------------------------------------------------------------ */
/* log-linear histogram of microseconds: exact below 128 us, then 64
 * buckets per power of two, i.e. within 1.6 % (two significant digits) */

#define H_LINEAR 128
#define H_SHIFTS 34
#define H_BUCKETS (H_LINEAR + H_SHIFTS * 64)

struct hist {
    uint64_t n[H_BUCKETS];
    uint64_t count;
    uint64_t max;
    uint64_t sum;
};

static int h_index(uint64_t v)
{
    if (v < H_LINEAR) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    if (shift > H_SHIFTS) return H_BUCKETS - 1;
    return H_LINEAR + (shift - 1) * 64 + (int)((v >> shift) - 64);
}

static uint64_t h_value(int i)
{
    if (i < H_LINEAR) return (uint64_t)i;
    int shift = (i - H_LINEAR) / 64 + 1;
    uint64_t top = (uint64_t)((i - H_LINEAR) % 64 + 64);
    return (top << shift) + ((1ULL << shift) >> 1);
}

static void h_add(struct hist *h, uint64_t us)
{
    h->n[h_index(us)]++;
    h->count++;
    h->sum += us;
    if (us > h->max) h->max = us;
}

static void h_merge(struct hist *into, const struct hist *from)
{
    for (int i = 0; i < H_BUCKETS; i++) into->n[i] += from->n[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
}

static double h_pct_ms(const struct hist *h, double pct)
{
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)h->count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            uint64_t v = h_value(i);
            /* the bucket midpoint may overshoot the exact maximum */
            return (double)(v > h->max ? h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------------ */
/* server CPU and memory, summed over the server pid and all descendants */

static int descendants(pid_t root, pid_t *out, int max)
{
    /* one pass collects (pid, ppid); then a fixed point adds children of known members */
    static pid_t pids[65536], ppids[65536];
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 65536) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0) continue;
        buf[r] = 0;
        char *p = strrchr(buf, ')');
        if (!p) continue;
        char state;
        int ppid;
        if (sscanf(p + 2, "%c %d", &state, &ppid) != 2) continue;
        pids[n] = (pid_t)atoi(e->d_name);
        ppids[n] = (pid_t)ppid;
        n++;
    }
    closedir(d);
    int m = 0;
    out[m++] = root;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            int member = 0, parent_in = 0;
            for (int j = 0; j < m; j++) {
                if (out[j] == pids[i]) member = 1;
                if (out[j] == ppids[i]) parent_in = 1;
            }
            if (!member && parent_in && m < max) {
                out[m++] = pids[i];
                changed = 1;
            }
        }
    }
    return m;
}

/* seconds of user+system CPU of the server tree; -1 when the server is gone */
static double server_cpu(pid_t root)
{
    if (root <= 0) return -1;
    pid_t set[4096];
    int n = descendants(root, set, 4096);
    double ticks = 0;
    int found = 0;
    for (int i = 0; i < n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)set[i]);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0) continue;
        buf[r] = 0;
        char *p = strrchr(buf, ')');
        if (!p) continue;
        /* after ") " : state(3) ... utime(14) stime(15) */
        unsigned long long ut = 0, st = 0;
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
            ticks += (double)(ut + st);
            found++;
        }
    }
    if (!found) return -1;
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* busy CPU seconds of the whole machine: tells how much of it neither side accounts for */
static double machine_cpu(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = { 0 };
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* every --server-pid tree (two servers and their Redis, say); parts[i] gets tree i's share; -1 when one is gone */
static double server_cpu_all(double *parts)
{
    double sum = 0;
    int gone = 0;
    for (int i = 0; i < opt.n_server_pids; i++) {
        double c = server_cpu(opt.server_pids[i]);
        if (parts) parts[i] = c;
        if (c < 0) gone = 1;
        sum += c;
    }
    return gone || !opt.n_server_pids ? -1 : sum;
}

struct mem { double rss_kb, pss_kb; int procs; };

/* RSS double-counts pages the processes share (httpd children, nginx
 * workers); PSS splits them, so the PSS sum is the tree's real footprint */
static struct mem server_mem(pid_t root)
{
    struct mem m = { 0, 0, 0 };
    if (root <= 0) return m;
    pid_t set[4096];
    int n = descendants(root, set, 4096);
    long page_kb = sysconf(_SC_PAGESIZE) / 1024;
    for (int i = 0; i < n; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/statm", (int)set[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long size = 0, res = 0;
        if (fscanf(f, "%lu %lu", &size, &res) == 2) {
            m.rss_kb += (double)res * (double)page_kb;
            m.procs++;
        }
        fclose(f);
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)set[i]);
        f = fopen(path, "r");
        if (!f) continue;
        while (fgets(buf, sizeof buf, f)) {
            unsigned long kb;
            if (sscanf(buf, "Pss: %lu kB", &kb) == 1) {
                m.pss_kb += (double)kb;
                break;
            }
        }
        fclose(f);
    }
    return m;
}

static struct mem server_mem_all(void)
{
    struct mem m = { 0, 0, 0 };
    for (int i = 0; i < opt.n_server_pids; i++) {
        struct mem one = server_mem(opt.server_pids[i]);
        m.rss_kb += one.rss_kb;
        m.pss_kb += one.pss_kb;
        m.procs += one.procs;
    }
    return m;
}

/* ------------------------------------------------------------------ */
/* pipes between parent and workers: [u32 type][u32 len][payload] */

enum { MSG_PROGRESS = 1, MSG_STARTED, MSG_RESULT };
enum { CMD_START = 1, CMD_DRAIN, CMD_STOP };

struct progress {
    uint64_t connected, failed, busy, non200, inflight, pending;
};

struct cmd {
    uint32_t type;
    int64_t arg;
};

struct wresult {
    uint64_t subs, counted, connected_now, connect_failed, connect_retries, busy, non200;
    uint64_t disconnects, proto_errors, late_subs, busy_gave_up;
    uint64_t received, dups, ooo, foreign, bad_seq, complete_subs;
    uint64_t counted2, cross;   /* --port2: subscribers counted there; deliveries published on the other server */
    int64_t first_delivery, last_delivery;
    uint64_t bytes, reads;
    uint64_t tls_errors;
    int drained_by_timeout, deadline_hit;
    char tls_version[16], tls_cipher[64];   /* of the first handshake, to show both servers agreed alike */
    struct hist lat;
};

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_msg(int fd, uint32_t type, const void *p, uint32_t len)
{
    uint32_t h[2] = { type, len };
    if (write_all(fd, h, sizeof h) < 0) return -1;
    return len ? write_all(fd, p, len) : 0;
}

/* ------------------------------------------------------------------ */
/* one subscriber connection */

enum sstate { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_SENDING, S_HEADERS, S_BODY, S_CLOSED, S_FAILED, S_BACKOFF };
enum cstate { C_NONE, C_SIZE, C_EXT, C_DATA, C_CRLF, C_END };

struct sub {
    int fd;
    uint32_t events;            /* what epoll waits for on fd */
    SSL *ssl;                   /* --tls only */
    uint8_t state;
    uint8_t chunk_state;
    uint8_t counted;            /* connected when publishing began */
    uint8_t complete;
    uint8_t have_data;
    uint8_t busy;
    uint8_t tries;
    uint8_t busy_tries;
    uint8_t was_connected;
    uint32_t sent;              /* request bytes written */
    uint64_t chunk_left;
    int64_t body_left;          /* -1: until close */
    int64_t started;            /* this connect attempt began; in S_BACKOFF, when to try again */
    uint32_t last_seq;
    uint32_t received;
    int64_t ev_seq, ev_t;
    char *buf;                  /* partial header block or partial line */
    uint32_t len, cap;
    uint8_t *seen;              /* bitmap of seqs received */
};

struct worker {
    int index;
    struct sub *subs;
    int n;
    struct sockaddr_in src;
    char request[1024];
    int request_len;
    int ep;
    SSL_CTX *tls;
    int cmd_fd, rep_fd;
    int next_to_start;
    int inflight;
    int connect_open;           /* new attempts allowed */
    int64_t connect_until;
    int started;                /* START seen */
    int draining;
    int64_t drain_until;
    int stop;
    uint64_t open_incomplete;   /* counted, open, not yet all messages */
    int64_t *comp;              /* per message, the slowest subscriber's latency (ns) */
    struct wresult r;
    struct progress last_sent;
    int64_t last_progress;
    char rbuf[READ_BUF];
};

static int M;   /* messages expected per subscriber */

/* what epoll should wait for on a subscriber's socket; TLS changes its mind
 * (a read may have to wait for writable, a write for readable) */
static void sub_watch(struct worker *w, struct sub *s, uint32_t events)
{
    if (s->events == events) return;
    struct epoll_event ev = { .events = events, .data.u64 = (uint64_t)(s - w->subs) };
    epoll_ctl(w->ep, EPOLL_CTL_MOD, s->fd, &ev);
    s->events = events;
}

static void sub_close(struct worker *w, struct sub *s, int failed)
{
    if (s->ssl) {
        /* no close_notify: the server sees the TCP close, as when a browser tab goes away */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
    if (s->state == S_CONNECTING || s->state == S_HANDSHAKE || s->state == S_SENDING || s->state == S_HEADERS)
        w->inflight--;
    int backoff = 0;
    if (s->state == S_BODY) {
        if (s->busy) {
            /* as EventSource would, come back later; sooner than the 5-10 s asked, to keep the run short */
            w->r.busy++;
            if (++s->busy_tries <= 8 && w->connect_open) backoff = 1;
            else w->r.busy_gave_up++;
        } else {
            w->r.disconnects++;
        }
        if (s->counted && !s->complete) w->open_incomplete--;
    }
    s->state = backoff ? S_BACKOFF : failed ? S_FAILED : S_CLOSED;
    if (backoff) s->started = now_ns() + 200000000LL + (int64_t)(rand() % 300) * 1000000LL;
    s->busy = 0;
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

static int buf_append(struct sub *s, const char *p, size_t n, size_t limit)
{
    if (s->len + n > limit) return -1;
    if (s->len + n > s->cap) {
        uint32_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return -1;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += (uint32_t)n;
    return 0;
}

static void start_connect(struct worker *w, struct sub *s, int64_t now)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note("worker %d: socket: %s", w->index, strerror(errno));
        s->state = S_FAILED;
        w->r.connect_failed++;
        return;
    }
    int one = 1;
    /* the port is picked at connect time per destination, not per source address */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&w->src, sizeof w->src) < 0) {
        note("worker %d: bind %s: %s", w->index, inet_ntoa(w->src.sin_addr), strerror(errno));
        close(fd);
        s->state = S_FAILED;
        w->r.connect_failed++;
        return;
    }
    s->fd = fd;
    s->started = now;
    s->sent = 0;
    s->state = S_CONNECTING;
    s->events = EPOLLOUT;
    w->inflight++;
    struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = (uint64_t)(s - w->subs) };
    const struct sockaddr_in *to = opt.port2 && ((s - w->subs) & 1) ? &server_addr2 : &server_addr;
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
        ev.events = EPOLLOUT;   /* the error is read back through SO_ERROR below */
    }
    epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
}

/* an attempt that got no answer: retried a few times, else it failed */
static void attempt_failed(struct worker *w, struct sub *s, int64_t now)
{
    sub_close(w, s, 1);
    if (++s->tries < 3 && w->connect_open) {
        w->r.connect_retries++;
        start_connect(w, s, now);
    } else {
        w->r.connect_failed++;
    }
}

static void deliver(struct worker *w, struct sub *s, int64_t now)
{
    if (!s->counted) return;
    int64_t seq = s->ev_seq;
    if (seq < 1 || seq > M) {
        w->r.bad_seq++;
        return;
    }
    uint32_t i = (uint32_t)(seq - 1);
    if (s->seen[i >> 3] & (1u << (i & 7))) {
        w->r.dups++;
        return;
    }
    s->seen[i >> 3] |= (uint8_t)(1u << (i & 7));
    s->received++;
    w->r.received++;
    /* publish seq goes to the second server when even; the subscriber sits there when its index is odd */
    if (opt.port2 && opt.pub_port2 && (((s - w->subs) & 1) != (seq - 1) % 2)) w->r.cross++;
    if ((uint32_t)seq < s->last_seq) w->r.ooo++;
    else s->last_seq = (uint32_t)seq;
    int64_t lat = now - s->ev_t;
    if (lat < 1) lat = 1;
    h_add(&w->r.lat, (uint64_t)(lat / 1000));
    if (lat > w->comp[i]) w->comp[i] = lat;
    if (!w->r.first_delivery || now < w->r.first_delivery) w->r.first_delivery = now;
    if (now > w->r.last_delivery) w->r.last_delivery = now;
    if (s->received == (uint32_t)M) {
        s->complete = 1;
        w->r.complete_subs++;
        w->open_incomplete--;
    }
}

static int64_t parse_num_after(const char *p, size_t n, const char *key)
{
    const char *k = memmem(p, n, key, 2);
    if (!k) return -1;
    k += 2;
    const char *end = p + n;
    if (k >= end || !isdigit((unsigned char)*k)) return -1;
    int64_t v = 0;
    while (k < end && isdigit((unsigned char)*k)) v = v * 10 + (*k++ - '0');
    return v;
}

/* one line of the event stream, without its line end */
static void sse_line(struct worker *w, struct sub *s, const char *p, size_t n, int64_t now)
{
    if (n && p[n - 1] == '\r') n--;
    if (n == 0) {
        if (s->have_data) deliver(w, s, now);
        s->have_data = 0;
        return;
    }
    if (p[0] == ':') {
        /* mod_sse's over-capacity answer: 200, "retry:", ": busy, retry later", end */
        if (n >= 6 && memmem(p, n, "busy", 4)) s->busy = 1;
        return;
    }
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        /* s= and t= are found anywhere in the line, so a JSON-quoted payload parses too */
        int64_t seq = parse_num_after(p + 5, n - 5, "s=");
        int64_t t = parse_num_after(p + 5, n - 5, "t=");
        if (seq < 0 || t < 0) {
            w->r.foreign++;
            return;
        }
        s->ev_seq = seq;
        s->ev_t = t;
        s->have_data = 1;
    }
    /* id:, event:, retry: change nothing that is measured */
}

static int sse_feed(struct worker *w, struct sub *s, const char *p, size_t n, int64_t now)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) return buf_append(s, p, n, MAX_LINE);
        size_t seg = (size_t)(nl - p);
        if (s->len) {
            if (buf_append(s, p, seg, MAX_LINE) < 0) return -1;
            sse_line(w, s, s->buf, s->len, now);
            s->len = 0;
        } else {
            sse_line(w, s, p, seg, now);
        }
        p = nl + 1;
        n -= seg + 1;
    }
    return 0;
}

/* undoes chunked transfer coding; returns -1 on a protocol error, 1 at the last chunk */
static int body_feed(struct worker *w, struct sub *s, const char *p, size_t n, int64_t now)
{
    if (s->chunk_state == C_NONE) {
        if (s->body_left >= 0) {
            if ((int64_t)n > s->body_left) n = (size_t)s->body_left;
            s->body_left -= (int64_t)n;
        }
        if (sse_feed(w, s, p, n, now) < 0) return -1;
        return s->body_left == 0 ? 1 : 0;
    }
    while (n) {
        switch (s->chunk_state) {
        case C_SIZE: {
            char c = *p;
            int d = isdigit((unsigned char)c) ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (d >= 0) {
                if (s->chunk_left > (1ULL << 40)) return -1;
                s->chunk_left = s->chunk_left * 16 + (uint64_t)d;
            } else if (c == ';' || c == ' ' || c == '\t') {
                s->chunk_state = C_EXT;
            } else if (c == '\n') {
                if (s->chunk_left == 0) {
                    s->chunk_state = C_END;
                    return 1;
                }
                s->chunk_state = C_DATA;
            } else if (c != '\r') {
                return -1;
            }
            p++;
            n--;
            break;
        }
        case C_EXT:
            if (*p == '\n') {
                if (s->chunk_left == 0) {
                    s->chunk_state = C_END;
                    return 1;
                }
                s->chunk_state = C_DATA;
            }
            p++;
            n--;
            break;
        case C_DATA: {
            size_t take = n < s->chunk_left ? n : (size_t)s->chunk_left;
            if (sse_feed(w, s, p, take, now) < 0) return -1;
            p += take;
            n -= take;
            s->chunk_left -= take;
            if (!s->chunk_left) s->chunk_state = C_CRLF;
            break;
        }
        case C_CRLF:
            if (*p == '\n') {
                s->chunk_state = C_SIZE;
                s->chunk_left = 0;
            } else if (*p != '\r') {
                return -1;
            }
            p++;
            n--;
            break;
        default:
            return 1;
        }
    }
    return 0;
}

static int header_has(const char *hdrs, size_t n, const char *name, const char *value)
{
    size_t nl = strlen(name);
    const char *p = hdrs, *end = hdrs + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            if (!value) return 1;
            size_t vl = strlen(value);
            for (const char *q = p + nl + 1; q + vl <= eol; q++)
                if (strncasecmp(q, value, vl) == 0) return 1;
        }
        p = eol + 1;
    }
    return 0;
}

static int64_t header_num(const char *hdrs, size_t n, const char *name)
{
    size_t nl = strlen(name);
    const char *p = hdrs, *end = hdrs + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return strtoll(p + nl + 1, NULL, 10);
        p = eol + 1;
    }
    return -1;
}

/* the response head is complete in s->buf[0..hlen); rest follows it */
static void got_headers(struct worker *w, struct sub *s, size_t hlen, int64_t now)
{
    int status = 0;
    if (hlen < 12 || strncmp(s->buf, "HTTP/1.", 7) != 0 || sscanf(s->buf + 9, "%3d", &status) != 1) {
        w->r.proto_errors++;
        sub_close(w, s, 1);
        w->r.connect_failed++;
        return;
    }
    if (status != 200) {
        w->r.non200++;
        sub_close(w, s, 1);
        return;
    }
    w->inflight--;
    s->state = S_BODY;
    s->was_connected = 1;
    s->chunk_state = header_has(s->buf, hlen, "transfer-encoding", "chunked") ? C_SIZE : C_NONE;
    s->chunk_left = 0;
    s->body_left = s->chunk_state == C_NONE ? header_num(s->buf, hlen, "content-length") : -1;
    size_t rest = s->len - hlen;
    char tmp[MAX_HEADERS];
    memcpy(tmp, s->buf + hlen, rest);
    s->len = 0;
    if (rest) {
        int r = body_feed(w, s, tmp, rest, now);
        if (r != 0) {
            if (r < 0) w->r.proto_errors++;
            sub_close(w, s, 0);
        }
    }
}

/* r bytes of response (plain, or decrypted) from the server */
static void got_bytes(struct worker *w, struct sub *s, ssize_t r, int64_t now)
{
    w->r.bytes += (uint64_t)r;
    if (s->state == S_HEADERS) {
        if (buf_append(s, w->rbuf, (size_t)r, MAX_HEADERS) < 0) {
            w->r.proto_errors++;
            sub_close(w, s, 1);
            w->r.connect_failed++;
            return;
        }
        char *e = memmem(s->buf, s->len, "\r\n\r\n", 4);
        size_t hlen;
        if (e) {
            hlen = (size_t)(e - s->buf) + 4;
        } else if ((e = memmem(s->buf, s->len, "\n\n", 2))) {
            hlen = (size_t)(e - s->buf) + 2;
        } else {
            return;
        }
        got_headers(w, s, hlen, now);
        return;
    }
    if (s->counted) w->r.reads++;
    int rc = body_feed(w, s, w->rbuf, (size_t)r, now);
    if (rc != 0) {
        if (rc < 0) w->r.proto_errors++;
        sub_close(w, s, 0);
    }
}

static void tls_error(struct worker *w, const char *what)
{
    /* the first few say why; the count says how often */
    if (w->r.tls_errors++ < 3) {
        char msg[256];
        unsigned long e = ERR_peek_last_error();
        ERR_error_string_n(e, msg, sizeof msg);
        note("worker %d: TLS %s: %s", w->index, what, e ? msg : strerror(errno));
    }
    ERR_clear_error();
}

/* decrypts what arrived; with read-ahead OpenSSL may hold whole records
 * that epoll cannot know about, so read until it has none left */
static void on_tls_readable(struct worker *w, struct sub *s, int64_t now)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(s->ssl, w->rbuf, sizeof w->rbuf);
        if (r > 0) {
            sub_watch(w, s, EPOLLIN | EPOLLRDHUP);
            got_bytes(w, s, r, now);
            if (!s->ssl || !SSL_has_pending(s->ssl)) return;
            continue;
        }
        switch (SSL_get_error(s->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            sub_watch(w, s, EPOLLIN | EPOLLRDHUP);
            return;
        case SSL_ERROR_WANT_WRITE:
            sub_watch(w, s, EPOLLOUT);
            return;
        case SSL_ERROR_ZERO_RETURN:
            break;              /* close_notify: the end of the stream */
        case SSL_ERROR_SSL:
            /* a stream ended by a TCP close without close_notify is an ordinary end, not a TLS fault */
            if (ERR_GET_REASON(ERR_peek_last_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING)
                tls_error(w, "read");
            ERR_clear_error();
            break;
        default:
            break;              /* the connection failed (reset), as a plain read() would report */
        }
        if (s->state == S_HEADERS) attempt_failed(w, s, now);
        else sub_close(w, s, 0);
        return;
    }
}

static void on_readable(struct worker *w, struct sub *s, int64_t now)
{
    if (s->ssl) {
        on_tls_readable(w, s, now);
        return;
    }
    ssize_t r = read(s->fd, w->rbuf, sizeof w->rbuf);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        if (s->state == S_HEADERS) attempt_failed(w, s, now);
        else sub_close(w, s, 0);
        return;
    }
    if (r == 0) {
        if (s->state == S_HEADERS) attempt_failed(w, s, now);
        else sub_close(w, s, 0);
        return;
    }
    got_bytes(w, s, r, now);
}

/* an SSL call that could not finish: wait for what it needs, or give the attempt up */
static void tls_wait(struct worker *w, struct sub *s, int r, const char *what, int64_t now)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        sub_watch(w, s, EPOLLIN);
        return;
    case SSL_ERROR_WANT_WRITE:
        sub_watch(w, s, EPOLLOUT);
        return;
    default:
        tls_error(w, what);
        attempt_failed(w, s, now);
    }
}

static void on_writable(struct worker *w, struct sub *s, int64_t now);

static void on_handshake(struct worker *w, struct sub *s, int64_t now)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r != 1) {
        tls_wait(w, s, r, "handshake", now);
        return;
    }
    if (!w->r.tls_version[0]) {
        snprintf(w->r.tls_version, sizeof w->r.tls_version, "%s", SSL_get_version(s->ssl));
        snprintf(w->r.tls_cipher, sizeof w->r.tls_cipher, "%s", SSL_get_cipher_name(s->ssl));
    }
    s->state = S_SENDING;
    on_writable(w, s, now);
}

static int tls_begin(struct worker *w, struct sub *s)
{
    s->ssl = SSL_new(w->tls);
    if (!s->ssl || !SSL_set_fd(s->ssl, s->fd)) return -1;
    SSL_set_connect_state(s->ssl);
    /* the bench certificate names the address, not a host name */
    if (opt.tls_ca && !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), opt.host)) return -1;
    s->state = S_HANDSHAKE;
    return 0;
}

static void on_writable(struct worker *w, struct sub *s, int64_t now)
{
    if (s->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            attempt_failed(w, s, now);
            return;
        }
        if (w->tls) {
            if (tls_begin(w, s) < 0) {
                tls_error(w, "setup");
                attempt_failed(w, s, now);
                return;
            }
            on_handshake(w, s, now);
            return;
        }
        s->state = S_SENDING;
    }
    ssize_t n;
    if (s->ssl) {
        /* a retry after WANT_* repeats the same buffer and length, as OpenSSL requires */
        ERR_clear_error();
        int r = SSL_write(s->ssl, w->request + s->sent, w->request_len - (int)s->sent);
        if (r <= 0) {
            tls_wait(w, s, r, "write", now);
            return;
        }
        n = r;
    } else {
        n = write(s->fd, w->request + s->sent, (size_t)w->request_len - s->sent);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            attempt_failed(w, s, now);
            return;
        }
    }
    s->sent += (uint32_t)n;
    if ((int)s->sent == w->request_len) {
        s->state = S_HEADERS;
        sub_watch(w, s, EPOLLIN | EPOLLRDHUP);
        /* the answer may already sit decrypted in OpenSSL's buffers, where epoll cannot see it */
        if (s->ssl && SSL_has_pending(s->ssl)) on_tls_readable(w, s, now);
    }
}

static struct progress worker_progress(struct worker *w)
{
    struct progress p = { 0, 0, 0, 0, 0, 0 };
    for (int i = 0; i < w->n; i++) {
        struct sub *s = &w->subs[i];
        if (s->state == S_BODY && !s->busy) p.connected++;
        else if (s->state == S_IDLE || s->state == S_BACKOFF || (s->state == S_BODY && s->busy)) p.pending++;
    }
    p.failed = w->r.connect_failed + w->r.non200 + w->r.busy_gave_up + w->r.disconnects;
    p.busy = w->r.busy;
    p.non200 = w->r.non200;
    p.inflight = (uint64_t)w->inflight;
    return p;
}

static void worker_start(struct worker *w)
{
    w->started = 1;
    w->connect_open = 0;    /* late connections would receive a partial stream */
    size_t bytes = ((size_t)M + 7) / 8;
    for (int i = 0; i < w->n; i++) {
        struct sub *s = &w->subs[i];
        if (s->state == S_BODY && !s->busy) {
            s->counted = 1;
            if (opt.port2 && (i & 1)) w->r.counted2++;
            s->seen = calloc(1, bytes);
            if (!s->seen) die("out of memory");
            w->r.counted++;
            w->open_incomplete++;
        } else if (s->state != S_FAILED && s->state != S_CLOSED && s->state != S_IDLE) {
            w->r.late_subs++;
        }
    }
    send_msg(w->rep_fd, MSG_STARTED, &w->r.counted, sizeof w->r.counted);
}

static void worker_report(struct worker *w)
{
    w->r.subs = (uint64_t)w->n;
    for (int i = 0; i < w->n; i++)
        if (w->subs[i].state == S_BODY && !w->subs[i].busy) w->r.connected_now++;
    size_t total = sizeof w->r + sizeof(int64_t) * (size_t)M;
    char *msg = malloc(total);
    if (!msg) die("out of memory");
    memcpy(msg, &w->r, sizeof w->r);
    memcpy(msg + sizeof w->r, w->comp, sizeof(int64_t) * (size_t)M);
    send_msg(w->rep_fd, MSG_RESULT, msg, (uint32_t)total);
    free(msg);
}

static void on_command(struct worker *w)
{
    struct cmd c;
    ssize_t r = read(w->cmd_fd, &c, sizeof c);
    if (r == 0) _exit(0);       /* the parent is gone */
    if (r != (ssize_t)sizeof c) return;
    if (c.type == CMD_START) worker_start(w);
    else if (c.type == CMD_DRAIN) {
        w->draining = 1;
        w->drain_until = c.arg;
    } else if (c.type == CMD_STOP) w->stop = 1;
}

static void worker_main(int index, int n, int cmd_fd, int rep_fd, int64_t deadline)
{
    static struct worker w;
    srand((unsigned)getpid());
    w.index = index;
    w.n = n;
    w.cmd_fd = cmd_fd;
    w.rep_fd = rep_fd;
    w.connect_open = 1;
    w.connect_until = now_ns() + sec_ns(opt.connect_timeout);
    w.subs = calloc((size_t)(n ? n : 1), sizeof *w.subs);
    w.comp = calloc((size_t)(M ? M : 1), sizeof *w.comp);
    if (!w.subs || !w.comp) die("out of memory");
    for (int i = 0; i < n; i++) w.subs[i].fd = -1;
    w.src.sin_family = AF_INET;
    w.src.sin_port = 0;
    w.src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(opt.src_base + index));
    w.request_len = snprintf(w.request, sizeof w.request,
                             "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\nUser-Agent: sse_load\r\n\r\n",
                             opt.sub_path, opt.host, opt.port);
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    if (w.ep < 0) die("epoll_create1: %s", strerror(errno));
    if (opt.tls) {
        /* one context per worker, made after the fork */
        w.tls = SSL_CTX_new(TLS_client_method());
        if (!w.tls) die("SSL_CTX_new failed");
        /* read whole records at once instead of header, then body: half the read() calls */
        SSL_CTX_set_read_ahead(w.tls, 1);
        if (opt.tls_ca) {
            if (SSL_CTX_load_verify_locations(w.tls, opt.tls_ca, NULL) != 1) die("cannot load %s", opt.tls_ca);
            SSL_CTX_set_verify(w.tls, SSL_VERIFY_PEER, NULL);
        } else {
            SSL_CTX_set_verify(w.tls, SSL_VERIFY_NONE, NULL);
        }
    }
    struct epoll_event cev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
    epoll_ctl(w.ep, EPOLL_CTL_ADD, cmd_fd, &cev);

    struct epoll_event evs[512];
    int64_t last_scan = 0;
    for (;;) {
        int64_t now = now_ns();
        if (w.connect_open && now > w.connect_until) w.connect_open = 0;
        while (w.connect_open && w.inflight < opt.connect_batch && w.next_to_start < n)
            start_connect(&w, &w.subs[w.next_to_start++], now);

        if (now - last_scan > 100000000LL) {
            /* attempts that hang: no answer within the per-connection timeout */
            last_scan = now;
            for (int i = 0; i < n; i++) {
                struct sub *s = &w.subs[i];
                if ((s->state == S_CONNECTING || s->state == S_HANDSHAKE || s->state == S_SENDING
                     || s->state == S_HEADERS)
                    && (now - s->started > sec_ns(opt.conn_timeout) || !w.connect_open)) {
                    sub_close(&w, s, 1);
                    w.r.connect_failed++;
                }
            }
            for (int i = 0; i < n; i++) {
                struct sub *s = &w.subs[i];
                if (s->state != S_BACKOFF) continue;
                if (!w.connect_open) {
                    s->state = S_FAILED;
                    w.r.busy_gave_up++;
                } else if (now >= s->started && w.inflight < opt.connect_batch) {
                    s->tries = 0;
                    start_connect(&w, s, now);
                }
            }
            if (!w.connect_open) {
                for (int i = w.next_to_start; i < n; i++)
                    if (w.subs[i].state == S_IDLE) {
                        w.subs[i].state = S_FAILED;
                        w.r.connect_failed++;
                    }
                w.next_to_start = n;
            }
        }

        if (!w.started) {
            struct progress p = worker_progress(&w);
            if (memcmp(&p, &w.last_sent, sizeof p) != 0 && (now - w.last_progress > 50000000LL
                                                           || (!p.inflight && !p.pending))) {
                send_msg(rep_fd, MSG_PROGRESS, &p, sizeof p);
                w.last_sent = p;
                w.last_progress = now;
            }
        }
        if (w.stop) break;
        if (w.draining && (w.open_incomplete == 0 || now >= w.drain_until)) {
            w.r.drained_by_timeout = w.open_incomplete != 0;
            break;
        }
        if (now >= deadline) {
            w.r.deadline_hit = 1;
            break;
        }

        int nev = epoll_wait(w.ep, evs, 512, 20);
        if (nev < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        now = now_ns();
        for (int i = 0; i < nev; i++) {
            if (evs[i].data.u64 == UINT64_MAX) {
                on_command(&w);
                continue;
            }
            struct sub *s = &w.subs[evs[i].data.u64];
            if (s->fd < 0) continue;
            if (s->state == S_CONNECTING || s->state == S_SENDING) {
                on_writable(&w, s, now);
            } else if (s->state == S_HANDSHAKE) {
                on_handshake(&w, s, now);
            } else if (s->ssl || (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
                /* a TLS read may have waited for writable */
                on_readable(&w, s, now);
            }
        }
    }
    worker_report(&w);
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* parent: workers */

struct wproc {
    pid_t pid;
    int cmd_fd, rep_fd;
    struct progress prog;
    int started;
    uint64_t counted;
    int have_result;
    struct wresult res;
    int64_t *comp;
    char *acc;              /* bytes read from the worker, not yet a whole message */
    size_t len, cap;
    int eof;
};

static struct wproc wp[MAX_PROCS];
static int nwp;

static void kill_workers(void)
{
    for (int i = 0; i < nwp; i++)
        if (wp[i].pid > 0) kill(wp[i].pid, SIGKILL);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "sse_load: overall deadline passed, giving up\n";
    ssize_t r = write(2, m, sizeof m - 1);
    (void)r;
    kill_workers();
    _exit(3);
}

static void spawn_workers(int64_t deadline)
{
    nwp = opt.procs;
    for (int k = 0; k < nwp; k++) {
        int cmd[2], rep[2];
        if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
        int n = opt.subs / nwp + (k < opt.subs % nwp ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            alarm(0);
            signal(SIGALRM, SIG_DFL);
            for (int j = 0; j < k; j++) {
                close(wp[j].cmd_fd);
                close(wp[j].rep_fd);
            }
            close(cmd[1]);
            close(rep[0]);
            worker_main(k, n, cmd[0], rep[1], deadline);
        }
        close(cmd[0]);
        close(rep[1]);
        wp[k].pid = pid;
        wp[k].cmd_fd = cmd[1];
        wp[k].rep_fd = rep[0];
        fcntl(rep[0], F_SETFL, O_NONBLOCK);
    }
}

static void send_cmd_all(uint32_t type, int64_t arg)
{
    struct cmd c = { type, arg };
    for (int k = 0; k < nwp; k++)
        if (write_all(wp[k].cmd_fd, &c, sizeof c) < 0) note("worker %d: command pipe: %s", k, strerror(errno));
}

static void handle_msg(int k, uint32_t type, char *body, uint32_t len)
{
    if (type == MSG_PROGRESS && len == sizeof(struct progress)) {
        memcpy(&wp[k].prog, body, len);
    } else if (type == MSG_STARTED && len == sizeof(uint64_t)) {
        memcpy(&wp[k].counted, body, len);
        wp[k].started = 1;
    } else if (type == MSG_RESULT && len == sizeof(struct wresult) + sizeof(int64_t) * (size_t)M) {
        memcpy(&wp[k].res, body, sizeof(struct wresult));
        wp[k].comp = malloc(sizeof(int64_t) * (size_t)(M ? M : 1));
        if (!wp[k].comp) die("out of memory");
        memcpy(wp[k].comp, body + sizeof(struct wresult), sizeof(int64_t) * (size_t)M);
        wp[k].have_result = 1;
    } else {
        die("worker %d sent a bad message (type %u, %u bytes)", k, type, len);
    }
}

/* reads whatever the workers sent, for at most timeout_ms */
static void pump(int timeout_ms)
{
    struct pollfd pf[MAX_PROCS];
    for (int k = 0; k < nwp; k++) {
        pf[k].fd = wp[k].eof ? -1 : wp[k].rep_fd;
        pf[k].events = POLLIN;
        pf[k].revents = 0;
    }
    if (poll(pf, (nfds_t)nwp, timeout_ms) <= 0) return;
    for (int k = 0; k < nwp; k++) {
        struct wproc *p = &wp[k];
        if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        for (;;) {
            if (p->cap - p->len < 65536) {
                size_t cap = p->cap ? p->cap * 2 : 131072;
                char *b = realloc(p->acc, cap);
                if (!b) die("out of memory");
                p->acc = b;
                p->cap = cap;
            }
            ssize_t n = read(p->rep_fd, p->acc + p->len, p->cap - p->len);
            if (n > 0) {
                p->len += (size_t)n;
                continue;
            }
            if (n == 0) p->eof = 1;     /* the worker exited */
            break;
        }
        uint32_t h[2];
        while (p->len >= sizeof h) {
            memcpy(h, p->acc, sizeof h);
            if (p->len < sizeof h + h[1]) break;
            handle_msg(k, h[0], p->acc + sizeof h, h[1]);
            memmove(p->acc, p->acc + sizeof h + h[1], p->len - sizeof h - h[1]);
            p->len -= sizeof h + h[1];
        }
    }
}

static int all(int what)
{
    for (int k = 0; k < nwp; k++) {
        if (what == 0 && !wp[k].started) return 0;
        if (what == 1 && !wp[k].have_result) return 0;
    }
    return 1;
}

static void sum_progress(uint64_t *connected, uint64_t *resolved)
{
    *connected = *resolved = 0;
    for (int k = 0; k < nwp; k++) {
        *connected += wp[k].prog.connected;
        *resolved += wp[k].prog.connected + wp[k].prog.failed;
    }
}

/* true once every subscriber is connected or has given up */
static uint64_t wait_connected(void)
{
    int64_t until = now_ns() + sec_ns(opt.connect_timeout) + sec_ns(2);
    int64_t last_note = now_ns();
    uint64_t connected = 0, resolved = 0;
    while (now_ns() < until) {
        pump(100);
        sum_progress(&connected, &resolved);
        if (resolved >= (uint64_t)opt.subs) break;
        if (now_ns() - last_note > sec_ns(2)) {
            note("connected %" PRIu64 "/%d", connected, opt.subs);
            last_note = now_ns();
        }
    }
    /* a short settle lets an over-capacity answer ("busy") arrive before the count is fixed */
    int64_t settle = now_ns() + 300000000LL;
    while (now_ns() < settle) pump(50);
    sum_progress(&connected, &resolved);
    note("connected %" PRIu64 "/%d", connected, opt.subs);
    return connected;
}

static void reap_workers(void)
{
    for (int k = 0; k < nwp; k++) {
        close(wp[k].cmd_fd);
        int st;
        int64_t until = now_ns() + sec_ns(5);
        while (waitpid(wp[k].pid, &st, WNOHANG) == 0) {
            if (now_ns() > until) {
                kill(wp[k].pid, SIGKILL);
                waitpid(wp[k].pid, &st, 0);
                break;
            }
            usleep(10000);
        }
        wp[k].pid = 0;
    }
}

/* ------------------------------------------------------------------ */
/* HTTP/1.1 keep-alive publisher connection (blocking, with timeouts) */

struct pconn {
    int fd;
    char buf[8192];
    size_t len;
};

static int pconn_open(struct pconn *c, const struct sockaddr_in *to)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = { .tv_sec = 10, .tv_usec = 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (const struct sockaddr *)to, sizeof *to) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void pconn_close(struct pconn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static int pconn_fill(struct pconn *c)
{
    if (c->len == sizeof c->buf) return -1;
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (n <= 0) return -1;
    c->len += (size_t)n;
    return 0;
}

static void pconn_consume(struct pconn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* reads one response; returns its status, -1 on a transport error (nothing
 * read yet: *fresh stays 1, so a resend is safe) */
static int pconn_response(struct pconn *c, int *fresh)
{
    char *e;
    *fresh = c->len == 0;
    while (!(e = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (pconn_fill(c) < 0) return -1;
        *fresh = 0;
    }
    size_t hlen = (size_t)(e - c->buf) + 4;
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    int close_after = header_has(c->buf, hlen, "connection", "close");
    int chunked = header_has(c->buf, hlen, "transfer-encoding", "chunked");
    int64_t clen = header_num(c->buf, hlen, "content-length");
    pconn_consume(c, hlen);
    if (chunked) {
        for (;;) {
            char *nl;
            while (!(nl = memchr(c->buf, '\n', c->len)))
                if (pconn_fill(c) < 0) return -1;
            uint64_t size = strtoull(c->buf, NULL, 16);
            pconn_consume(c, (size_t)(nl - c->buf) + 1);
            if (size == 0) {
                /* trailers end at an empty line */
                for (;;) {
                    while (!(nl = memchr(c->buf, '\n', c->len)))
                        if (pconn_fill(c) < 0) return -1;
                    size_t l = (size_t)(nl - c->buf) + 1;
                    int empty = l <= 2;
                    pconn_consume(c, l);
                    if (empty) break;
                }
                break;
            }
            while (c->len < size + 2)
                if (pconn_fill(c) < 0) return -1;
            pconn_consume(c, (size_t)size + 2);
        }
    } else if (clen > 0) {
        while ((int64_t)c->len < clen)
            if (pconn_fill(c) < 0) return -1;
        pconn_consume(c, (size_t)clen);
    } else if (clen < 0 && status >= 200 && status != 204 && status != 304) {
        while (pconn_fill(c) == 0)
            ;
        close_after = 1;
    }
    if (close_after) pconn_close(c);
    return status;
}

struct pubstate {
    atomic_int next;
    int total;              /* messages (fanout) or INT_MAX (pubrate) */
    int64_t t0;
    int64_t stop_at;        /* pubrate: end of the run */
    int64_t deadline;
    double rate;
    atomic_llong sent, ok, errors, retries;
    atomic_llong first_send, last_done;
};

struct pubthread {
    pthread_t th;
    struct pubstate *ps;
    struct hist lat;        /* response time from the intended send time */
};

static void *pub_main(void *arg)
{
    struct pubthread *pt = arg;
    struct pubstate *ps = pt->ps;
    /* with --pub-port2 publishes alternate between the two servers, one keep-alive connection to each */
    struct pconn conns[2] = { { .fd = -1, .len = 0 }, { .fd = -1, .len = 0 } };
    int plen = opt.payload;
    size_t hlen_max = 512;
    char *req = malloc(hlen_max + (size_t)plen + 64);
    if (!req) die("out of memory");
    for (;;) {
        int i = atomic_fetch_add(&ps->next, 1);
        if (i >= ps->total) break;
        int64_t intended;
        if (ps->rate > 0) {
            intended = ps->t0 + (int64_t)((double)i * 1e9 / ps->rate);
            if (intended > ps->deadline) break;
            sleep_until(intended);
        } else {
            intended = now_ns();
        }
        if (intended >= ps->stop_at || now_ns() > ps->deadline) break;
        char body[128];
        int second = opt.pub_port2 && (i & 1);
        struct pconn *cp = &conns[second];
        int bl = snprintf(body, sizeof body, "s=%d t=%" PRId64 " ", i + 1, intended);
        int blen = plen > bl ? plen : bl;
        int hl = snprintf(req, hlen_max,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\n"
                          "Content-Length: %d\r\nUser-Agent: sse_load\r\n\r\n",
                          opt.pub_path, opt.host, second ? opt.pub_port2 : opt.pub_port, blen);
        memcpy(req + hl, body, (size_t)bl);
        memset(req + hl + bl, 'x', (size_t)(blen - bl));
        size_t total = (size_t)hl + (size_t)blen;
        long long zero = 0;
        atomic_compare_exchange_strong(&ps->first_send, &zero, (long long)now_ns());
        int status = -1;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (cp->fd < 0 && pconn_open(cp, second ? &pub_addr2 : &pub_addr) < 0) {
                status = -1;
                break;
            }
            int fresh = 1;
            if (write_all(cp->fd, req, total) < 0) {
                pconn_close(cp);
                if (attempt == 0) atomic_fetch_add(&ps->retries, 1);
                continue;
            }
            status = pconn_response(cp, &fresh);
            if (status < 0) {
                pconn_close(cp);
                /* a keep-alive connection the server closed before reading: resend once */
                if (fresh && attempt == 0) {
                    atomic_fetch_add(&ps->retries, 1);
                    continue;
                }
            }
            break;
        }
        int64_t done = now_ns();
        atomic_fetch_add(&ps->sent, 1);
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&ps->ok, 1);
            h_add(&pt->lat, (uint64_t)((done - intended) / 1000));
        } else {
            atomic_fetch_add(&ps->errors, 1);
            if (atomic_load(&ps->errors) <= 3) note("publish %d: status %d", i + 1, status);
        }
        long long prev = atomic_load(&ps->last_done);
        while (done > prev && !atomic_compare_exchange_weak(&ps->last_done, &prev, done))
            ;
    }
    pconn_close(&conns[0]);
    pconn_close(&conns[1]);
    free(req);
    return NULL;
}

static void run_publishers(struct pubstate *ps, int conns, struct hist *lat)
{
    struct pubthread *pt = calloc((size_t)conns, sizeof *pt);
    if (!pt) die("out of memory");
    for (int i = 0; i < conns; i++) {
        pt[i].ps = ps;
        if (pthread_create(&pt[i].th, NULL, pub_main, &pt[i]) != 0) die("pthread_create");
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(pt[i].th, NULL);
        h_merge(lat, &pt[i].lat);
    }
    free(pt);
}

/* ------------------------------------------------------------------ */
/* modes */

static void print_hist(const char *prefix, const struct hist *h)
{
    printf("\"%sp50_ms\": %.3f, \"%sp90_ms\": %.3f, \"%sp99_ms\": %.3f, \"%sp999_ms\": %.3f, "
           "\"%smax_ms\": %.3f, \"%smean_ms\": %.3f",
           prefix, h_pct_ms(h, 50), prefix, h_pct_ms(h, 90), prefix, h_pct_ms(h, 99),
           prefix, h_pct_ms(h, 99.9), prefix, (double)h->max / 1000.0,
           prefix, h->count ? (double)h->sum / (double)h->count / 1000.0 : 0.0);
}

/* the client shares the cores with the server: its own CPU tells whether it was the bottleneck */
static double client_cpu(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec)
         + (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) / 1e6;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_fanout(void)
{
    int64_t deadline = now_ns() + sec_ns(opt.deadline);
    spawn_workers(deadline);
    uint64_t connected = wait_connected();

    send_cmd_all(CMD_START, 0);
    int64_t until = now_ns() + sec_ns(10);
    while (!all(0) && now_ns() < until) pump(50);
    if (!all(0)) {
        kill_workers();
        die("workers did not acknowledge the start");
    }
    uint64_t counted = 0;
    for (int k = 0; k < nwp; k++) counted += wp[k].counted;
    if (counted != connected) note("%" PRIu64 " subscribers counted at start (progress said %" PRIu64 ")",
                                   counted, connected);

    double parts0[8], parts1[8];
    double cpu0 = server_cpu_all(parts0), mcpu0 = machine_cpu();
    struct pubstate ps = { .total = opt.messages, .rate = opt.rate };
    atomic_init(&ps.next, 0);
    ps.t0 = now_ns() + 20000000LL;
    ps.stop_at = INT64_MAX;
    ps.deadline = deadline;
    struct hist *publat = calloc(1, sizeof *publat);
    if (!publat) die("out of memory");
    note("publishing %d messages at %g/s to %d subscribers", opt.messages, opt.rate, (int)counted);
    run_publishers(&ps, opt.pub_conns, publat);
    int64_t pub_end = now_ns();

    send_cmd_all(CMD_DRAIN, pub_end + sec_ns(opt.drain_timeout));
    until = pub_end + sec_ns(opt.drain_timeout) + sec_ns(15);
    while (!all(1) && now_ns() < until && now_ns() < deadline + sec_ns(5)) pump(100);
    double cpu1 = server_cpu_all(parts1), mcpu1 = machine_cpu();
    int complete = all(1);
    if (!complete) kill_workers();
    reap_workers();
    if (!complete) die("not every worker reported its results");

    struct wresult t;
    memset(&t, 0, sizeof t);
    int64_t *comp = calloc((size_t)(M ? M : 1), sizeof *comp);
    if (!comp) die("out of memory");
    for (int k = 0; k < nwp; k++) {
        struct wresult *r = &wp[k].res;
        t.subs += r->subs;
        t.counted += r->counted;
        t.connected_now += r->connected_now;
        t.connect_failed += r->connect_failed;
        t.connect_retries += r->connect_retries;
        t.busy += r->busy;
        t.busy_gave_up += r->busy_gave_up;
        t.non200 += r->non200;
        t.disconnects += r->disconnects;
        t.proto_errors += r->proto_errors;
        t.late_subs += r->late_subs;
        t.received += r->received;
        t.dups += r->dups;
        t.ooo += r->ooo;
        t.foreign += r->foreign;
        t.bad_seq += r->bad_seq;
        t.complete_subs += r->complete_subs;
        t.counted2 += r->counted2;
        t.cross += r->cross;
        t.bytes += r->bytes;
        t.reads += r->reads;
        t.tls_errors += r->tls_errors;
        if (!t.tls_version[0] && r->tls_version[0]) {
            memcpy(t.tls_version, r->tls_version, sizeof t.tls_version);
            memcpy(t.tls_cipher, r->tls_cipher, sizeof t.tls_cipher);
        }
        t.drained_by_timeout |= r->drained_by_timeout;
        t.deadline_hit |= r->deadline_hit;
        if (r->first_delivery && (!t.first_delivery || r->first_delivery < t.first_delivery))
            t.first_delivery = r->first_delivery;
        if (r->last_delivery > t.last_delivery) t.last_delivery = r->last_delivery;
        h_merge(&t.lat, &r->lat);
        for (int i = 0; i < M; i++)
            if (wp[k].comp[i] > comp[i]) comp[i] = wp[k].comp[i];
    }
    /* fan-out completion: from a message's intended send time until its last subscriber had it */
    int64_t *fan = calloc((size_t)(M ? M : 1), sizeof *fan);
    int nfan = 0;
    if (!fan) die("out of memory");
    for (int i = 0; i < M; i++)
        if (comp[i]) fan[nfan++] = comp[i];
    qsort(fan, (size_t)nfan, sizeof *fan, cmp_i64);

    uint64_t expected = t.counted * (uint64_t)M;
    int64_t first = (int64_t)atomic_load(&ps.first_send);
    int64_t last = t.last_delivery > 0 ? t.last_delivery : pub_end;
    double duration = first ? (double)(last - first) / 1e9 : 0;
    long long sent = atomic_load(&ps.sent), ok = atomic_load(&ps.ok);
    double pub_span = first ? (double)((int64_t)atomic_load(&ps.last_done) - first) / 1e9 : 0;
    double cpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;

    printf("{\"mode\": \"fanout\", \"subs_requested\": %d, \"subs_connected\": %" PRIu64
           ", \"subs_connected_at_end\": %" PRIu64 ", \"connect_failed\": %" PRIu64
           ", \"connect_retries\": %" PRIu64 ", \"busy\": %" PRIu64 ", \"busy_gave_up\": %" PRIu64 ", \"non200\": %" PRIu64
           ", \"disconnects\": %" PRIu64 ", \"protocol_errors\": %" PRIu64 ", \"late_subs\": %" PRIu64 ", ",
           opt.subs, t.counted, t.connected_now, t.connect_failed, t.connect_retries, t.busy, t.busy_gave_up,
           t.non200,
           t.disconnects, t.proto_errors, t.late_subs);
    if (opt.tls)
        printf("\"tls\": \"%s %s\", \"tls_verified\": %s, \"tls_errors\": %" PRIu64 ", ",
               t.tls_version[0] ? t.tls_version : "none", t.tls_cipher, opt.tls_ca ? "true" : "false", t.tls_errors);
    printf("\"messages\": %d, \"published\": %lld, \"publish_ok\": %lld, \"publish_errors\": %lld, "
           "\"publish_retries\": %lld, \"rate_requested\": %g, \"rate_achieved\": %.1f, ",
           opt.messages, sent, ok, (long long)atomic_load(&ps.errors), (long long)atomic_load(&ps.retries),
           opt.rate, pub_span > 0 ? (double)sent / pub_span : 0.0);
    printf("\"expected\": %" PRIu64 ", \"received\": %" PRIu64 ", \"loss\": %" PRIu64
           ", \"duplicates\": %" PRIu64 ", \"out_of_order\": %" PRIu64 ", \"foreign_events\": %" PRIu64
           ", \"bad_seq\": %" PRIu64 ", \"complete_subs\": %" PRIu64 ", \"drain_timed_out\": %s, ",
           expected, t.received, expected - t.received, t.dups, t.ooo, t.foreign, t.bad_seq,
           t.complete_subs, t.drained_by_timeout || t.deadline_hit ? "true" : "false");
    if (opt.port2)
        printf("\"subs_connected_port2\": %" PRIu64 ", \"cross_server_received\": %" PRIu64 ", ", t.counted2, t.cross);
    if (opt.n_server_pids > 1) {
        printf("\"server_cpu_parts_s\": [");
        for (int i = 0; i < opt.n_server_pids; i++)
            printf("%s%.3f", i ? ", " : "", parts0[i] >= 0 && parts1[i] >= 0 ? parts1[i] - parts0[i] : -1.0);
        printf("], ");
    }
    printf("\"latency_count\": %" PRIu64 ", ", t.lat.count);
    print_hist("latency_", &t.lat);
    printf(", \"fanout_complete_p50_ms\": %.3f, \"fanout_complete_p99_ms\": %.3f, \"fanout_complete_max_ms\": %.3f",
           nfan ? (double)fan[nfan / 2] / 1e6 : 0.0,
           nfan ? (double)fan[(size_t)((nfan - 1) * 0.99)] / 1e6 : 0.0,
           nfan ? (double)fan[nfan - 1] / 1e6 : 0.0);
    printf(", ");
    print_hist("publish_", publat);
    printf(", \"duration_s\": %.3f, \"deliveries_per_s\": %.1f, \"bytes_read\": %" PRIu64
           ", \"events_per_read\": %.2f, \"server_cpu_s\": %.3f, \"server_cpu_us_per_delivery\": %.3f"
           ", \"client_cpu_s\": %.3f, \"machine_cpu_s\": %.3f, \"server_gone\": %s}\n",
           duration, duration > 0 ? (double)t.received / duration : 0.0, t.bytes,
           t.reads ? (double)t.received / (double)t.reads : 0.0, cpu,
           (cpu >= 0 && t.received) ? cpu * 1e6 / (double)t.received : -1.0, client_cpu(),
           (mcpu0 >= 0 && mcpu1 >= 0) ? mcpu1 - mcpu0 : -1.0, cpu1 < 0 ? "true" : "false");
    fflush(stdout);
    free(comp);
    free(fan);
    free(publat);
    return 0;
}

static int run_idle(void)
{
    int64_t deadline = now_ns() + sec_ns(opt.deadline);
    struct mem before = server_mem_all();
    double cpu0 = server_cpu_all(NULL);
    int64_t t0 = now_ns();
    spawn_workers(deadline);
    uint64_t connected = wait_connected();
    double connect_s = (double)(now_ns() - t0) / 1e9;
    sleep_until(now_ns() + sec_ns(opt.idle_wait));
    pump(0);
    struct mem after = server_mem_all();
    double cpu1 = server_cpu_all(NULL);
    send_cmd_all(CMD_STOP, 0);
    int64_t until = now_ns() + sec_ns(15);
    while (!all(1) && now_ns() < until) pump(100);
    int complete = all(1);
    if (!complete) kill_workers();
    reap_workers();
    if (!complete) die("not every worker reported its results");
    uint64_t still = 0, disc = 0, failed = 0, busy = 0, gave_up = 0;
    for (int k = 0; k < nwp; k++) {
        still += wp[k].res.connected_now;
        disc += wp[k].res.disconnects;
        failed += wp[k].res.connect_failed + wp[k].res.non200;
        busy += wp[k].res.busy;
        gave_up += wp[k].res.busy_gave_up;
    }
    double n = connected ? (double)connected : 1;
    printf("{\"mode\": \"idle\", \"subs_requested\": %d, \"subs_connected\": %" PRIu64
           ", \"subs_connected_at_end\": %" PRIu64 ", \"connect_failed\": %" PRIu64 ", \"busy\": %" PRIu64
           ", \"busy_gave_up\": %" PRIu64 ", \"disconnects\": %" PRIu64 ", \"connect_s\": %.3f, \"server_procs\": %d, "
           "\"rss_before_kb\": %.0f, \"rss_after_kb\": %.0f, \"pss_before_kb\": %.0f, \"pss_after_kb\": %.0f, "
           "\"kb_per_sub_rss_delta\": %.3f, \"kb_per_sub_pss_delta\": %.3f, \"kb_per_sub_pss_total\": %.3f, "
           "\"server_cpu_connect_s\": %.3f, \"server_gone\": %s}\n",
           opt.subs, connected, still, failed, busy, gave_up, disc, connect_s, after.procs,
           before.rss_kb, after.rss_kb, before.pss_kb, after.pss_kb,
           (after.rss_kb - before.rss_kb) / n, (after.pss_kb - before.pss_kb) / n, after.pss_kb / n,
           (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1.0, after.procs ? "false" : "true");
    fflush(stdout);
    return 0;
}

static int run_pubrate(void)
{
    int64_t deadline = now_ns() + sec_ns(opt.deadline);
    struct pubstate ps = { .total = INT32_MAX, .rate = 0 };
    atomic_init(&ps.next, 0);
    ps.t0 = now_ns();
    ps.stop_at = ps.t0 + sec_ns(opt.duration);
    ps.deadline = deadline;
    struct hist *lat = calloc(1, sizeof *lat);
    if (!lat) die("out of memory");
    double parts0[8], parts1[8];
    double cpu0 = server_cpu_all(parts0), mcpu0 = machine_cpu();
    run_publishers(&ps, opt.pub_conns, lat);
    double cpu1 = server_cpu_all(parts1), mcpu1 = machine_cpu();
    int64_t first = (int64_t)atomic_load(&ps.first_send);
    double span = first ? (double)((int64_t)atomic_load(&ps.last_done) - first) / 1e9 : 0;
    long long ok = atomic_load(&ps.ok), errors = atomic_load(&ps.errors);
    double cpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;
    printf("{\"mode\": \"pubrate\", \"connections\": %d, \"duration_s\": %.3f, \"published\": %lld, "
           "\"publish_ok\": %lld, \"publish_errors\": %lld, \"publish_retries\": %lld, "
           "\"publishes_per_s\": %.1f, ",
           opt.pub_conns, span, (long long)atomic_load(&ps.sent), ok, errors,
           (long long)atomic_load(&ps.retries), span > 0 ? (double)ok / span : 0.0);
    print_hist("publish_", lat);
    if (opt.n_server_pids > 1) {
        printf(", \"server_cpu_parts_s\": [");
        for (int i = 0; i < opt.n_server_pids; i++)
            printf("%s%.3f", i ? ", " : "", parts0[i] >= 0 && parts1[i] >= 0 ? parts1[i] - parts0[i] : -1.0);
        printf("]");
    }
    printf(", \"server_cpu_s\": %.3f, \"server_cpu_us_per_publish\": %.3f, \"client_cpu_s\": %.3f"
           ", \"machine_cpu_s\": %.3f, \"server_gone\": %s}\n",
           cpu, (cpu >= 0 && ok) ? cpu * 1e6 / (double)ok : -1.0, client_cpu(),
           (mcpu0 >= 0 && mcpu1 >= 0) ? mcpu1 - mcpu0 : -1.0, cpu1 < 0 ? "true" : "false");
    fflush(stdout);
    free(lat);
    return 0;
}

/* ------------------------------------------------------------------ */
/* pubstream: mod_sse's streaming publish, one chunked POST of
 * application/x-ndjson per connection, as fast as the socket takes it */

struct streamer {
    pthread_t th;
    long long lines_sent, published;
    int status;
    char error[160];
};

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *streamer_main(void *arg)
{
    struct streamer *st = arg;
    int64_t stop_at = now_ns() + sec_ns(opt.duration);
    size_t line_len = (size_t)opt.payload + 12, per_chunk = 65536 / line_len + 1, i;
    size_t body_len = per_chunk * line_len;
    char *chunk = malloc(body_len + 32), head[512], reply[65536];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n, size_len;
    size_t got = 0, whole;
    const char *p;
    if (!chunk || fd < 0 || connect(fd, (struct sockaddr *)&pub_addr, sizeof pub_addr) != 0) {
        snprintf(st->error, sizeof st->error, "connect: %s", strerror(errno));
        free(chunk);
        if (fd >= 0) close(fd);
        return NULL;
    }
    /* one chunk of per_chunk lines {"data":"xxx...x"}, sent again and again */
    size_len = snprintf(chunk, 32, "%zx\r\n", body_len);
    for (i = 0; i < per_chunk; i++) {
        char *l = chunk + size_len + i * line_len;
        memcpy(l, "{\"data\":\"", 9);
        memset(l + 9, 'x', (size_t)opt.payload);
        memcpy(l + 9 + opt.payload, "\"}\n", 3);
    }
    memcpy(chunk + size_len + body_len, "\r\n", 2);
    whole = (size_t)size_len + body_len + 2;
    n = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-ndjson"
                 "\r\nTransfer-Encoding: chunked\r\n\r\n", opt.pub_path, opt.host);
    if (send_all(fd, head, (size_t)n) != 0) goto broken;
    while (now_ns() < stop_at) {
        if (send_all(fd, chunk, whole) != 0) goto broken;
        st->lines_sent += (long long)per_chunk;
    }
    if (send_all(fd, "0\r\n\r\n", 5) != 0) goto broken;
    for (;;) {
        ssize_t r = recv(fd, reply + got, sizeof reply - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
        reply[got] = 0;
        if ((p = strstr(reply, "\"failed\"")) && strchr(p, '}')) break;
    }
    reply[got] = 0;
    st->status = atoi(reply + 9);
    if ((p = strstr(reply, "\"published\":"))) st->published = atoll(p + 12);
    close(fd);
    free(chunk);
    return NULL;
broken:
    snprintf(st->error, sizeof st->error, "send: %s", strerror(errno));
    close(fd);
    free(chunk);
    return NULL;
}

static int run_pubstream(void)
{
    struct streamer *st = calloc((size_t)opt.pub_conns, sizeof *st);
    long long sent = 0, published = 0;
    int k, failed = 0;
    double cpu0, cpu1, span;
    int64_t t0;
    if (!st) die("out of memory");
    cpu0 = server_cpu_all(NULL);
    t0 = now_ns();
    for (k = 0; k < opt.pub_conns; k++) pthread_create(&st[k].th, NULL, streamer_main, &st[k]);
    for (k = 0; k < opt.pub_conns; k++) {
        pthread_join(st[k].th, NULL);
        sent += st[k].lines_sent;
        published += st[k].published;
        if (st[k].error[0] || st[k].status != 200) {
            failed++;
            note("streamer %d: status %d %s", k, st[k].status, st[k].error);
        }
    }
    span = (double)(now_ns() - t0) / 1e9;
    cpu1 = server_cpu_all(NULL);
    printf("{\"mode\": \"pubstream\", \"connections\": %d, \"duration_s\": %.3f, \"lines_sent\": %lld, "
           "\"published\": %lld, \"failed_connections\": %d, \"publishes_per_s\": %.1f, "
           "\"server_cpu_s\": %.3f, \"server_cpu_us_per_publish\": %.3f, \"client_cpu_s\": %.3f, "
           "\"server_gone\": %s}\n",
           opt.pub_conns, span, sent, published, failed, span > 0 ? (double)published / span : 0.0,
           cpu1 - cpu0, published ? (cpu1 - cpu0) * 1e6 / (double)published : -1.0, client_cpu(),
           cpu1 < 0 ? "true" : "false");
    fflush(stdout);
    free(st);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: sse_load [fanout|idle|pubrate|pubstream] --port P [options]\n"
            "  --host A            server address (127.0.0.1)\n"
            "  --sub-path PATH     subscribe URL path (/sub/bench)\n"
            "  --pub-path PATH     publish URL path (/pub/bench)\n"
            "  --subs N            subscribers (100)\n"
            "  --procs K           subscriber worker processes (1, at most %d)\n"
            "  --rate R            messages per second, 0 = as fast as answered (100)\n"
            "  --messages M        messages to publish (100)\n"
            "  --payload BYTES     event data size (100)\n"
            "  --pub-conns C       publisher keep-alive connections (fanout 1, pubrate 4)\n"
            "  --duration S        pubrate, pubstream: seconds to publish (5)\n"
            "  --server-pid PID    server process whose tree's CPU and memory are sampled; A,B,...: the sum\n"
            "                      of several trees (two servers and their Redis), each reported apart too\n"
            "  --drain-timeout S   wait for deliveries after the last publish (30)\n"
            "  --connect-timeout S whole connect phase (120)\n"
            "  --conn-timeout S    one connection attempt (15)\n"
            "  --connect-batch N   connects in flight per worker (256)\n"
            "  --idle-wait S       idle: seconds between connecting and sampling memory (3)\n"
            "  --src-base B        worker k binds 127.0.0.(B+k) (10)\n"
            "  --deadline S        give up after this long (default: derived from the others)\n"
            "  --tls               subscribers speak HTTPS (TLS through OpenSSL)\n"
            "  --tls-ca FILE       verify the server's certificate against FILE (default: no verification)\n"
            "  --pub-port P        publishes go to this port, plain HTTP (default: --port)\n"
            "  --port2 P           a second server: every odd subscriber of a worker connects here\n"
            "  --pub-port2 P       a second server: publishes alternate, seq 2, 4, ... go here\n",
            MAX_PROCS);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "sub-path", 1, 0, 's' },
        { "pub-path", 1, 0, 'P' }, { "subs", 1, 0, 'n' }, { "procs", 1, 0, 'k' },
        { "rate", 1, 0, 'r' }, { "messages", 1, 0, 'm' }, { "payload", 1, 0, 'b' },
        { "server-pid", 1, 0, 'S' }, { "drain-timeout", 1, 0, 'd' }, { "connect-timeout", 1, 0, 'c' },
        { "conn-timeout", 1, 0, 'C' }, { "connect-batch", 1, 0, 'B' }, { "pub-conns", 1, 0, 'x' },
        { "duration", 1, 0, 'T' }, { "idle-wait", 1, 0, 'i' }, { "deadline", 1, 0, 'D' },
        { "src-base", 1, 0, 'A' }, { "tls", 0, 0, 'L' }, { "tls-ca", 1, 0, 'V' },
        { "pub-port", 1, 0, 'Q' }, { "port2", 1, 0, 'R' }, { "pub-port2", 1, 0, 'U' },
        { "help", 0, 0, '?' }, { 0, 0, 0, 0 }
    };
    int pub_conns_set = 0;
    if (argc > 1 && argv[1][0] != '-') {
        if (!strcmp(argv[1], "fanout")) opt.mode = MODE_FANOUT;
        else if (!strcmp(argv[1], "idle")) opt.mode = MODE_IDLE;
        else if (!strcmp(argv[1], "pubrate")) opt.mode = MODE_PUBRATE;
        else if (!strcmp(argv[1], "pubstream")) opt.mode = MODE_PUBSTREAM;
        else usage();
        argv++;
        argc--;
    }
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 's': opt.sub_path = optarg; break;
        case 'P': opt.pub_path = optarg; break;
        case 'n': opt.subs = atoi(optarg); break;
        case 'k': opt.procs = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'm': opt.messages = atoi(optarg); break;
        case 'b': opt.payload = atoi(optarg); break;
        case 'S':
            for (char *p = optarg; *p && opt.n_server_pids < 8; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
                opt.server_pids[opt.n_server_pids++] = (pid_t)atoi(p);
            break;
        case 'R': opt.port2 = atoi(optarg); break;
        case 'U': opt.pub_port2 = atoi(optarg); break;
        case 'd': opt.drain_timeout = atof(optarg); break;
        case 'c': opt.connect_timeout = atof(optarg); break;
        case 'C': opt.conn_timeout = atof(optarg); break;
        case 'B': opt.connect_batch = atoi(optarg); break;
        case 'x': opt.pub_conns = atoi(optarg); pub_conns_set = 1; break;
        case 'T': opt.duration = atof(optarg); break;
        case 'i': opt.idle_wait = atof(optarg); break;
        case 'D': opt.deadline = atof(optarg); break;
        case 'A': opt.src_base = atoi(optarg); break;
        case 'L': opt.tls = 1; break;
        case 'V': opt.tls_ca = optarg; break;
        case 'Q': opt.pub_port = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || opt.pub_port < 0 || opt.pub_port > 65535
        || opt.port2 < 0 || opt.port2 > 65535 || opt.pub_port2 < 0 || opt.pub_port2 > 65535
        || (opt.tls_ca && !opt.tls))
        usage();
    if (!opt.pub_port) opt.pub_port = opt.port;
    if (opt.mode == MODE_PUBRATE && !pub_conns_set) opt.pub_conns = 4;
    if (opt.procs < 1 || opt.procs > MAX_PROCS || opt.subs < 0 || opt.messages < 0 || opt.payload < 0
        || opt.payload > 1000000 || opt.rate < 0 || opt.pub_conns < 1 || opt.pub_conns > MAX_PUB_CONNS
        || opt.connect_batch < 1 || opt.src_base < 2 || opt.src_base + opt.procs > 254)
        usage();
    if (opt.procs > opt.subs && opt.subs > 0) opt.procs = opt.subs;
    M = opt.mode == MODE_FANOUT ? opt.messages : 0;
    if (opt.deadline <= 0) {
        double pub = opt.mode == MODE_PUBRATE || opt.mode == MODE_PUBSTREAM ? opt.duration
                   : opt.rate > 0 ? opt.messages / opt.rate * 2 + 30 : 120;
        opt.deadline = opt.connect_timeout + opt.drain_timeout + opt.idle_wait + pub + 60;
    }
    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1) die("--host must be an IPv4 address");
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    pub_addr = server_addr;
    pub_addr.sin_port = htons((uint16_t)opt.pub_port);
    server_addr2 = server_addr;
    server_addr2.sin_port = htons((uint16_t)opt.port2);
    pub_addr2 = server_addr;
    pub_addr2.sin_port = htons((uint16_t)opt.pub_port2);

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* the last line of defence against a hang anywhere: the whole run is bounded */
    signal(SIGALRM, on_alarm);
    alarm((unsigned)opt.deadline + 30);
    setvbuf(stderr, NULL, _IOLBF, 0);

    switch (opt.mode) {
    case MODE_FANOUT: return run_fanout();
    case MODE_IDLE: return run_idle();
    case MODE_PUBRATE: return run_pubrate();
    case MODE_PUBSTREAM: return run_pubstream();
    }
    return 1;
}
