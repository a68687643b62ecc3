#!/usr/bin/env node
// eventsource.mjs - records what a page's real EventSource sees in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
//
// One run, from a shell:
//   node eventsource.mjs --page URL [--source URL [--with-credentials]]
//        [--cookie NAME=VALUE@URL]... [--type NAME]... [--until COND]...
//        [--stdin] [--timeout SECONDS]
// Many runs in one Chromium, for a test harness:
//   node eventsource.mjs --serve [--timeout SECONDS]
//
// --page     the page to open; its origin is the EventSource's origin.
// --source   after the page has loaded, run new EventSource(URL) in it
//            ({withCredentials: true} with --with-credentials). Whether or
//            not it is given, every EventSource the page makes is recorded
//            (an init script wraps the constructor).
// --cookie   put a cookie in the browser before the page opens
//            (context.addCookies with {name, value, url}).
// --type     also record events of this type ("message" always is; so is
//            every type the page itself adds a listener for).
// --until    stop when this holds: events>=N, errors>=N, opens>=N (summed
//            over the run's EventSources), or "closed" (all are CLOSED).
//            Several --until must all hold.
// --stdin    also stop at a line "stop" or at the end of standard input.
// --timeout  one run: give up after this many seconds (default 20) with exit
//            status 2. --serve: exit with status 2 after this long (default
//            600), in case the harness forgot to end it.
//
// --serve reads commands, one JSON object a line, on standard input:
//   {"open":"ID","page":URL,"source":URL,"withCredentials":false,
//    "cookies":[{"name":..,"value":..,"url":..}],"types":[..],
//    "viewport":{"width":1000,"height":700}}      (viewport: optional)
//   {"hold":"ID","match":"/events/"}   hold the run's requests whose URL
//                                       contains match in the browser (each
//                                       is reported as "held") until
//   {"release":"ID"}                    lets them go on, and holds no more
//   {"eval":"ID","js":"EXPRESSION"}     evaluates it in the page (a promise
//                                       is awaited); answers "evaluated"
//   {"screenshot":"ID","path":FILE}     writes a PNG of the viewport
//   {"close":"ID"}
// Each run gets a browser context of its own (cookies, cache, connections).
// The end of standard input closes everything; the exit status is 0.
//
// Standard output is JSON, one object a line, written as things happen; each
// carries "run" (the ID; "main" for a single run):
//   {"kind":"launched"}                               Chromium is up (--serve)
//   {"kind":"ready"}                                  page loaded, source made
//   {"kind":"failed","error":".."}                    the run could not open
//   {"kind":"created","source":0,"url":..,"withCredentials":false}
//   {"kind":"open","source":0,"readyState":1}
//   {"kind":"event","source":0,"type":"message","data":"..","lastEventId":"..",
//    "origin":"http://..","readyState":1}
//   {"kind":"error","source":0,"readyState":0}        0 = retrying, 2 = CLOSED
//   {"kind":"console","level":"error","text":".."}    CORS refusals show here
//   {"kind":"request","method":"GET","url":".."}
//   {"kind":"response","url":"..","status":200}
//   {"kind":"requestfailed","url":"..","failure":"net::ERR_FAILED"}
//   {"kind":"holding"} / {"kind":"held","method":..,"url":..,"headers":{..}} /
//   {"kind":"released","count":N}                     (--serve: hold, release)
//   {"kind":"evaluated","value":..}                   (--serve: eval; JSON value)
//   {"kind":"screenshot","path":".."}                 (--serve: screenshot)
//     (held headers are DevTools' list: Last-Event-ID is not in it, but the
//     request still carries it when released)
// and at the end of a run {"kind":"result","ok":true,"reason":"until"|"stdin"|
// "close"|"timeout","sources":[{"url","withCredentials","events":[..],"opens",
// "errors","readyState"}],"console":[..]}.
// Exit status: 0 as asked, 2 timeout (stderr says what was missing), 1 any
// other failure (bad arguments, Chromium would not start, page not loaded).
import { createInterface } from 'node:readline';

process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';

const CHROMIUM = process.env.SSE_CHROMIUM || '/usr/bin/chromium';
// without the background-networking flags Chromium keeps trying to reach
// outside hosts, which this machine's closed network refuses
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                       '--no-first-run', '--disable-background-networking',
                       '--disable-component-update', '--disable-sync'];

function usage(msg) {
    process.stderr.write(`eventsource.mjs: ${msg}\n` +
        'usage: node eventsource.mjs --page URL [--source URL [--with-credentials]] ' +
        '[--cookie NAME=VALUE@URL]... [--type NAME]... [--until COND]... [--stdin] ' +
        '[--timeout SECONDS]\n' +
        '       node eventsource.mjs --serve [--timeout SECONDS]\n');
    process.exit(1);
}

function parseArgs(argv) {
    const o = { serve: false, page: null, source: null, withCredentials: false, cookies: [],
                types: [], until: [], stdin: false, timeout: null };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === '--serve') o.serve = true;
        else if (a === '--page') o.page = value();
        else if (a === '--source') o.source = value();
        else if (a === '--with-credentials') o.withCredentials = true;
        else if (a === '--type') o.types.push(value());
        else if (a === '--stdin') o.stdin = true;
        else if (a === '--timeout') o.timeout = Number(value());
        else if (a === '--cookie') {
            const m = /^([^=]+)=([^@]*)@(.+)$/.exec(value());
            if (!m) usage('--cookie wants NAME=VALUE@URL');
            o.cookies.push({ name: m[1], value: m[2], url: m[3] });
        }
        else if (a === '--until') {
            const v = value();
            const m = /^(events|errors|opens)>=(\d+)$/.exec(v);
            if (m) o.until.push({ what: m[1], n: Number(m[2]), text: v });
            else if (v === 'closed') o.until.push({ what: 'closed', text: v });
            else usage(`--until ${v}: want events>=N, errors>=N, opens>=N or closed`);
        }
        else usage(`unknown argument ${a}`);
    }
    if (o.timeout === null) o.timeout = o.serve ? 600 : 20;
    if (!(o.timeout > 0)) usage('--timeout wants a positive number of seconds');
    if (o.serve) {
        if (o.page || o.source || o.cookies.length || o.types.length || o.until.length || o.stdin) {
            usage('--serve takes only --timeout; runs are opened on standard input');
        }
        return o;
    }
    if (!o.page) usage('--page is required');
    if (o.withCredentials && !o.source) usage('--with-credentials goes with --source');
    if (!o.until.length && !o.stdin) usage('say when to stop: --until or --stdin');
    return o;
}

// Runs in the page before its own scripts: every EventSource reports its
// open, error and (recorded types of) message events, with readyState as it
// was when the event fired.
function instrument({ types }) {
    const Native = window.EventSource;
    const report = (o) => window.__sseReport(o);
    let count = 0;
    class Recorded extends Native {
        constructor(url, init) {
            super(url, init);
            const source = count++;
            const listened = new Set();
            this.__listen = (type) => {
                if (type === 'open' || type === 'error' || listened.has(type)) return;
                listened.add(type);
                Native.prototype.addEventListener.call(this, type, (e) => {
                    report({ kind: 'event', source, type: e.type, data: e.data,
                             lastEventId: e.lastEventId, origin: e.origin,
                             readyState: this.readyState });
                });
            };
            report({ kind: 'created', source, url: this.url,
                     withCredentials: this.withCredentials });
            Native.prototype.addEventListener.call(this, 'open', () => {
                report({ kind: 'open', source, readyState: this.readyState });
            });
            Native.prototype.addEventListener.call(this, 'error', () => {
                report({ kind: 'error', source, readyState: this.readyState });
            });
            for (const t of ['message', ...types]) this.__listen(t);
        }
        addEventListener(type, ...rest) {
            this.__listen(String(type));
            return super.addEventListener(type, ...rest);
        }
    }
    window.EventSource = Recorded;
}

function out(o) {
    process.stdout.write(JSON.stringify(o) + '\n');
}

// One page in a browser context of its own, and what its EventSources saw.
class Run {
    constructor(id, until = []) {
        this.id = id;
        this.until = until;
        this.sources = [];
        this.console = [];
        this.context = null;
        this.page = null;
        this.finished = false;
        this.hold = null;        // {match, routes} while requests are held
        this.onUntil = null;     // called once every --until holds
    }

    emit(o) {
        if (!this.finished) out({ run: this.id, ...o });
    }

    record(o) {
        if (this.finished) return;
        if (o.kind === 'created') {
            this.sources[o.source] = { url: o.url, withCredentials: o.withCredentials,
                                       events: [], opens: 0, errors: 0, readyState: 0 };
        }
        const s = this.sources[o.source];
        if (s && o.kind === 'event') {
            s.events.push({ type: o.type, data: o.data, lastEventId: o.lastEventId,
                            origin: o.origin });
        }
        else if (s && o.kind === 'open') s.opens++;
        else if (s && o.kind === 'error') s.errors++;
        if (s && 'readyState' in o) s.readyState = o.readyState;
        this.emit(o);
        this.check();
    }

    total(what) {
        return this.sources.reduce((n, s) => n + (what === 'events' ? s.events.length : s[what]), 0);
    }

    holds(c) {
        if (c.what === 'closed') {
            return this.sources.length > 0 && this.sources.every((s) => s.readyState === 2);
        }
        return this.total(c.what) >= c.n;
    }

    missing() {
        return this.until.filter((c) => !this.holds(c)).map((c) => c.text);
    }

    check() {
        if (this.onUntil && this.until.length && this.until.every((c) => this.holds(c))) {
            this.onUntil();
        }
    }

    async open(browser, spec, timeoutMs) {
        this.context = await browser.newContext(spec.viewport ? { viewport: spec.viewport } : {});
        if (spec.cookies && spec.cookies.length) await this.context.addCookies(spec.cookies);
        await this.context.exposeFunction('__sseReport', (o) => this.record(o));
        await this.context.addInitScript(instrument, { types: spec.types || [] });
        const page = await this.context.newPage();
        this.page = page;
        page.on('console', (m) => {
            const line = { kind: 'console', level: m.type(), text: m.text() };
            if (!this.finished) this.console.push(line);
            this.emit(line);
        });
        page.on('request', (r) => this.emit({ kind: 'request', method: r.method(), url: r.url() }));
        page.on('response', (r) => this.emit({ kind: 'response', url: r.url(), status: r.status() }));
        page.on('requestfailed', (r) => this.emit({
            kind: 'requestfailed', url: r.url(), failure: (r.failure() || {}).errorText }));
        await page.goto(spec.page, { waitUntil: 'load', timeout: timeoutMs });
        if (spec.source) {
            await page.evaluate(({ url, withCredentials }) => {
                window.__sseSource = new EventSource(url, { withCredentials });
            }, { url: spec.source, withCredentials: !!spec.withCredentials });
        }
        this.emit({ kind: 'ready' });
        this.check();
    }

    // Requests held here have not left the browser: the server sees them
    // only after release().
    async holdRequests(match) {
        if (this.hold) throw new Error('already holding');
        const hold = { match, routes: [] };
        hold.handler = async (route) => {
            const r = route.request();
            hold.routes.push(route);
            const headers = await r.allHeaders().catch(() => r.headers());
            this.emit({ kind: 'held', method: r.method(), url: r.url(), headers });
        };
        hold.test = (url) => url.href.includes(match);
        await this.page.route(hold.test, hold.handler);
        this.hold = hold;
        this.emit({ kind: 'holding', match });
    }

    async release() {
        const hold = this.hold;
        if (!hold) throw new Error('not holding');
        this.hold = null;
        await this.page.unroute(hold.test, hold.handler);
        for (const route of hold.routes) await route.continue().catch(() => {});
        this.emit({ kind: 'released', count: hold.routes.length });
    }

    async evaluate(js) {
        const value = await this.page.evaluate(String(js));
        this.emit({ kind: 'evaluated', value: value === undefined ? null : value });
    }

    async screenshot(path) {
        await this.page.screenshot({ path: String(path) });
        this.emit({ kind: 'screenshot', path });
    }

    async close(reason) {
        if (this.finished) return null;
        const result = { run: this.id, kind: 'result', ok: reason !== 'timeout', reason,
                         sources: this.sources, console: this.console };
        if (reason === 'timeout') result.missing = this.missing();
        this.finished = true;
        out(result);
        if (this.context) await this.context.close().catch(() => {});
        return result;
    }
}

async function launch() {
    const { chromium } = await import('playwright-core').catch((e) => {
        throw new Error(`cannot load playwright-core (${e.message}); ` +
                        'run scripts/install-deps.sh (npm ci in tests/browser)');
    });
    // launch() gives Chromium a new, empty user-data-dir, removed at close
    return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
                             timeout: 60000 });
}

async function single(opts) {
    const run = new Run('main', opts.until);
    let timer = null;
    const done = new Promise((resolve) => {
        run.onUntil = () => resolve('until');
        timer = setTimeout(() => resolve('timeout'), opts.timeout * 1000);
        if (opts.stdin) {
            const rl = createInterface({ input: process.stdin });
            rl.on('line', (l) => { if (l.trim() === 'stop') resolve('stdin'); });
            rl.on('close', () => resolve('stdin'));
        }
    });
    const browser = await launch();
    try {
        await Promise.race([run.open(browser, opts, opts.timeout * 1000), done]);
        const reason = await done;
        await run.close(reason);
        if (reason === 'timeout') {
            process.stderr.write(`eventsource.mjs: timeout after ${opts.timeout}s on ` +
                `${opts.page} waiting for ${run.missing().join(', ') || 'stdin'} ` +
                `(events ${run.total('events')}, opens ${run.total('opens')}, ` +
                `errors ${run.total('errors')})\n`);
            return 2;
        }
        return 0;
    }
    finally {
        clearTimeout(timer);
        await browser.close().catch(() => {});
    }
}

async function serve(opts) {
    const browser = await launch();
    const runs = new Map();
    let queue = Promise.resolve();
    browser.on('disconnected', () => {
        process.stderr.write('eventsource.mjs: Chromium went away\n');
        process.exit(1);
    });
    const timer = setTimeout(() => {
        process.stderr.write(`eventsource.mjs: --serve still running after ${opts.timeout}s\n`);
        process.exit(2);
    }, opts.timeout * 1000);
    out({ kind: 'launched' });

    async function command(line) {
        let cmd;
        try {
            cmd = JSON.parse(line);
        }
        catch (e) {
            out({ kind: 'failed', error: `not JSON: ${line}` });
            return;
        }
        if (cmd.open !== undefined) {
            const id = String(cmd.open);
            if (runs.has(id)) {
                out({ run: id, kind: 'failed', error: 'a run with this id is open' });
                return;
            }
            const run = new Run(id);
            runs.set(id, run);
            try {
                await run.open(browser, cmd, 30000);
            }
            catch (e) {
                run.emit({ kind: 'failed', error: e.message });
                runs.delete(id);
                run.finished = true;
                if (run.context) await run.context.close().catch(() => {});
            }
        }
        else if (cmd.hold !== undefined || cmd.release !== undefined) {
            const id = String(cmd.hold !== undefined ? cmd.hold : cmd.release);
            const run = runs.get(id);
            try {
                if (!run) throw new Error('no such run');
                if (cmd.hold !== undefined) await run.holdRequests(String(cmd.match || ''));
                else await run.release();
            }
            catch (e) {
                out({ run: id, kind: 'failed', error: e.message });
            }
        }
        else if (cmd.eval !== undefined || cmd.screenshot !== undefined) {
            const id = String(cmd.eval !== undefined ? cmd.eval : cmd.screenshot);
            const run = runs.get(id);
            try {
                if (!run) throw new Error('no such run');
                if (cmd.eval !== undefined) await run.evaluate(cmd.js);
                else await run.screenshot(cmd.path);
            }
            catch (e) {
                out({ run: id, kind: 'failed', error: e.message });
            }
        }
        else if (cmd.close !== undefined) {
            const run = runs.get(String(cmd.close));
            if (!run) {
                out({ run: String(cmd.close), kind: 'failed', error: 'no such run' });
                return;
            }
            runs.delete(run.id);
            await run.close('close');
        }
        else {
            out({ kind: 'failed', error: `unknown command: ${line}` });
        }
    }

    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
        if (line.trim()) queue = queue.then(() => command(line));
    });
    await new Promise((resolve) => rl.on('close', resolve));
    await queue;
    for (const run of runs.values()) await run.close('stdin');
    clearTimeout(timer);
    browser.removeAllListeners('disconnected');
    await browser.close().catch(() => {});
    return 0;
}

const opts = parseArgs(process.argv.slice(2));
(opts.serve ? serve(opts) : single(opts)).then((status) => process.exit(status), (e) => {
    process.stderr.write(`eventsource.mjs: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
});
