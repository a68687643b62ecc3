"""test_995_deb.py - the Debian package from `make deb` installs into this
machine's apache2, a2enmod gives a configuration that parses and serves
streams, and a2dismod + purge leave /etc/apache2 as it was.

The one test here that touches /etc/apache2 (and /var/lib/apache2, where
a2enmod keeps its state): it restores both, and never starts, reloads or
restarts the system's apache2 (the package does not enable the module, and
it is disabled again before the purge, so its maintainer scripts have
nothing to reload). The streams are served by a private httpd that loads the
installed module and includes the enabled sse.conf.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import sse_env
from sse_env import REPO, uniq

pytestmark = [
    pytest.mark.skipif(sse_env.SANITIZE, reason='packaging test: builds the module with '
                       'Debian flags, not the sanitizer build, and exercises no C code '
                       'differently (SSE_SANITIZE=1)'),
    pytest.mark.skipif(not sse_env.IS_ROOT, reason='installs a package into the system: '
                       'needs root'),
]

PKG = 'libapache2-mod-sse'
SO = Path('/usr/lib/apache2/modules/mod_sse.so')
HEADER = Path('/usr/include/apache2/mod_sse.h')
AVAIL = Path('/etc/apache2/mods-available')
ENABLED = Path('/etc/apache2/mods-enabled')
STATE = Path('/var/lib/apache2')
WATCHED = (Path('/etc/apache2'), STATE)
# apache2ctl creates these (boot does on a real system); removed again when
# the test made them
RUNTIME_DIRS = (Path('/var/run/apache2'), Path('/var/lock/apache2'))
# apt waits for the dpkg lock rather than failing when another apt runs;
# dpkg skips its fsyncs (half the time on a busy disk, and nothing here has
# to survive a power cut)
APT = ['apt-get', '-y', '-q', '-o', 'DPkg::Lock::Timeout=120',
       '-o', 'Dpkg::Options::=--force-unsafe-io']
ENV = dict(os.environ, DEBIAN_FRONTEND='noninteractive')


def run(cmd, timeout=300, env=ENV, cwd=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    r.output = r.stdout + r.stderr
    return r


def snapshot():
    """Every entry under the watched trees: symlink targets, file digests
    and modes, directories."""
    seen = {}
    for top in WATCHED:
        for d, dirs, files in os.walk(top):
            for name in dirs + files:
                p = os.path.join(d, name)
                st = os.lstat(p)
                if os.path.islink(p):
                    seen[p] = ('link', os.readlink(p))
                elif os.path.isdir(p):
                    seen[p] = ('dir', oct(st.st_mode))
                else:
                    with open(p, 'rb') as f:
                        seen[p] = ('file', oct(st.st_mode),
                                   hashlib.sha256(f.read()).hexdigest())
    return seen


def diff(before, after):
    lines = ['gone: %s %s' % (p, before[p]) for p in sorted(set(before) - set(after))]
    lines += ['new: %s %s' % (p, after[p]) for p in sorted(set(after) - set(before))]
    lines += ['changed: %s %s -> %s' % (p, before[p], after[p])
              for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return '\n'.join(lines)


def pkg_status():
    r = run(['dpkg-query', '-W', '-f=${Status}', PKG])
    return r.stdout.strip() if r.returncode == 0 else ''


def mod_sse_version():
    m = re.search(r'#define MOD_SSE_VERSION\s+"([^"]+)"', (REPO / 'mod_sse.h').read_text())
    return m.group(1)


def test_deb_installs_enables_serves_and_purges(httpd_factory):
    status = pkg_status()
    if status and not status.endswith('not-installed'):
        pytest.skip('%s is on this machine (%s): this test would remove it' % (PKG, status))
    if os.path.lexists(ENABLED / 'sse.load'):
        pytest.skip('mod_sse is enabled in %s here (a2enmod sse): this test would '
                    'disable it' % ENABLED)
    times = {}
    t0 = time.monotonic()

    # the build: nocheck because make test has just run the same unit tests
    version = mod_sse_version()
    arch = run(['dpkg', '--print-architecture']).stdout.strip()
    r = run(['make', '-C', REPO, 'deb'], timeout=600,
            env=dict(ENV, DEB_BUILD_OPTIONS='nocheck'))
    assert r.returncode == 0, 'make deb failed:\n' + r.output[-4000:]
    deb = REPO / 'build' / 'deb' / ('%s_%s_%s.deb' % (PKG, version, arch))
    assert deb.is_file(), 'make deb did not leave %s:\n%s' % (deb, r.output[-2000:])
    fields = dict(line.split(': ', 1) for line in
                  run(['dpkg-deb', '-f', deb, 'Package', 'Version', 'Depends'])
                  .stdout.splitlines())
    assert fields['Package'] == PKG
    # the package version follows mod_sse.h (debian/changelog must be bumped with it)
    assert fields['Version'] == version
    depends = [d.strip().split(' ')[0] for d in fields['Depends'].split(',')]
    assert 'apache2-api-20120211' in depends, fields['Depends']
    assert 'libssl3' in depends, fields['Depends']     # libcrypto, via ${shlibs:Depends}
    times['build'] = time.monotonic() - t0

    # what `make install` or a manual copy left behind is set aside, so that
    # the package installs onto nothing and the purge can be checked exactly
    made_dirs = [d for d in RUNTIME_DIRS if not d.exists()]
    aside = Path(tempfile.mkdtemp(prefix='sse-deb-aside-'))
    moved = []
    for p in [SO, HEADER, AVAIL / 'sse.load', AVAIL / 'sse.conf'] + sorted(STATE.glob('*/*/sse')):
        if os.path.lexists(p):
            dest = aside / str(len(moved))
            shutil.move(str(p), str(dest))
            moved.append((p, dest))
    srv = None
    cleanup = []
    t2 = None
    try:
        before = snapshot()
        try:
            t1 = time.monotonic()
            r = run(APT + ['install', './' + deb.name], cwd=deb.parent)
            assert r.returncode == 0, 'apt-get install failed:\n' + r.output[-3000:]
            assert pkg_status() == 'install ok installed'
            times['install'] = time.monotonic() - t1

            listed = set(run(['dpkg', '-L', PKG]).stdout.split())
            for f in (SO, AVAIL / 'sse.load', AVAIL / 'sse.conf', HEADER):
                assert str(f) in listed, '%s not in dpkg -L %s' % (f, PKG)
                assert f.is_file()
            # the C API's header, where apxs looks: the example module builds
            # against the installed one alone
            assert HEADER.read_bytes() == (REPO / 'mod_sse.h').read_bytes()
            ex = Path(tempfile.mkdtemp(prefix='sse-example-'))
            shutil.copy(REPO / 'examples' / 'mod_sse_example.c', ex)
            r = run(['apxs', '-c', 'mod_sse_example.c'], cwd=ex)
            assert r.returncode == 0 and (ex / '.libs' / 'mod_sse_example.so').is_file(), \
                r.output[-2000:]
            shutil.rmtree(ex)
            # the repository's config pair, kept over upgrades as conffiles
            for name in ('sse.load', 'sse.conf'):
                assert (AVAIL / name).read_bytes() == \
                    (REPO / 'conf-examples' / name).read_bytes(), name
            conffiles = run(['dpkg-query', '-W', '-f=${Conffiles}', PKG]).stdout
            assert str(AVAIL / 'sse.load') in conffiles and \
                str(AVAIL / 'sse.conf') in conffiles, conffiles
            # installed, not enabled: enabling adds locations to every site
            assert not os.path.lexists(ENABLED / 'sse.load')

            r = run(['a2enmod', 'sse'])
            assert r.returncode == 0, r.output
            assert os.readlink(ENABLED / 'sse.load') == '../mods-available/sse.load'
            assert os.readlink(ENABLED / 'sse.conf') == '../mods-available/sse.conf'

            r = run(['apache2ctl', 'configtest'], timeout=60)
            assert r.returncode == 0 and 'Syntax OK' in r.output, r.output
            r = run(['apache2ctl', '-M'], timeout=60)
            assert r.returncode == 0, r.output
            assert re.search(r'^\s*sse_module \(shared\)$', r.stdout, re.M), r.output

            # a real httpd with the installed module (from the path sse.load
            # names) and the enabled sse.conf: its directives and locations
            # are in force, and a local client publishes to a stream
            m = re.search(r'^LoadModule\s+sse_module\s+(\S+)\s*$',
                          (ENABLED / 'sse.load').read_text(), re.M)
            assert m and m.group(1) == str(SO), (ENABLED / 'sse.load').read_text()
            srv = httpd_factory.create('deb', locations='Include %s\n' % (ENABLED / 'sse.conf'))
            srv.module_so = Path(m.group(1))
            srv.write_config()
            srv.start()
            st = srv.status()
            assert st['max_channels'] == 4096       # SSEMaxChannels 4096
            assert st['shm']['size'] == 64 << 20    # SSESharedMemorySize 64M
            ch = uniq('deb')
            with srv.sub('/events/' + ch) as s:
                # SSERetry 3000 of the /events location
                assert s.wait_until(lambda x: 3000 in x.parser.retries), s.body[:300]
                srv.pub(ch, 'from the package')
                ev = s.wait_for(1)
                assert [e.data for e in ev] == ['from the package'], s.body[:300]
            assert srv.stop(), 'the httpd with the packaged module did not stop'
            times['enable and serve'] = time.monotonic() - t1 - times['install']
        finally:
            # cleanup that must run whatever failed above; its failures are
            # checked after it (or printed, when something else failed first)
            if srv is not None and srv.is_running():
                srv.stop()
            if os.path.lexists(ENABLED / 'sse.load'):
                r = run(['a2dismod', 'sse'])
                if r.returncode != 0:
                    cleanup.append('a2dismod sse: ' + r.output)
            t2 = time.monotonic()
            r = run(APT + ['remove', '--purge', PKG])
            if r.returncode != 0:
                cleanup.append('apt-get remove --purge: ' + r.output[-3000:])
            # a2enmod and a2dismod make their bookkeeping directories on
            # first use and leave them behind, empty
            for p in sorted(set(snapshot()) - set(before)):
                if p.startswith(str(STATE) + '/') and os.path.isdir(p) \
                        and not os.path.islink(p) and not os.listdir(p):
                    os.rmdir(p)
            if cleanup:
                print('\n'.join(cleanup))
        times['purge'] = time.monotonic() - t2
        assert not cleanup, '\n'.join(cleanup)
        assert pkg_status() in ('', 'unknown ok not-installed'), pkg_status()
        assert not SO.exists() and not HEADER.exists()
        assert not os.path.lexists(ENABLED / 'sse.load')
        assert not os.path.lexists(ENABLED / 'sse.conf')
        changes = diff(before, snapshot())
        assert not changes, '/etc/apache2 or /var/lib/apache2 changed:\n' + changes
    finally:
        for p, dest in moved:
            shutil.move(str(dest), str(p))
        shutil.rmtree(aside, ignore_errors=True)
        for d in made_dirs:
            shutil.rmtree(d, ignore_errors=True)
    times['total'] = time.monotonic() - t0
    print('deb test: ' + ', '.join('%s %.1fs' % kv for kv in times.items()))
