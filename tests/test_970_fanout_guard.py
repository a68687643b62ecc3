"""Fan-out regression guard (not a timing test): 2,000 subscribers on one
channel, all served by the children's shared writers, receive 60 messages
each exactly once and in order, and leave cleanly. The timings of this path
live in bench/, never here."""
import time

from sse_env import uniq, wait_until
from sse_mass import Crowd, MassSubscriber

SUBSCRIBERS = 2000
MESSAGES = 60

GUARD_MPM = ['StartServers 2', 'ServerLimit 2', 'ThreadLimit 1400', 'ThreadsPerChild 1400',
             'MaxRequestWorkers 2800', 'MinSpareThreads 1', 'MaxSpareThreads 2800',
             'ThreadStackSize 131072', 'ListenBacklog 4096', 'ListenCoresBucketsRatio 1']


def test_2000_subscribers_lose_nothing(httpd_factory):
    srv = httpd_factory.start('guard', mpm_conf=GUARD_MPM, expect_children=2,
                              global_extra=['SSEMaxSubscribers 2600', 'SSEHistorySize 200',
                                            'SSEMaxStreamsPerClient 5000'])
    ch = uniq('guard')
    crowd = Crowd()
    subs = crowd.subs
    try:
        deadline = time.monotonic() + 90
        while len([s for s in subs if not s.busy]) < SUBSCRIBERS and time.monotonic() < deadline:
            # connect in waves, replacing any that a full child sent away
            for s in [s for s in subs if s.busy]:
                subs.remove(s)
                s.close(crowd.sel)
            wave = min(200, SUBSCRIBERS - len(subs))
            for _ in range(wave):
                crowd.add(MassSubscriber(srv.port, '/quiet/%s' % ch))
            crowd.pump(0.3)
        crowd.pump(0.5)
        assert len(subs) == SUBSCRIBERS and not any(s.busy or s.closed for s in subs)
        assert wait_until(lambda: srv.status()['subscribers'] == SUBSCRIBERS, 30, 0.2), srv.status()
        # every one of them is served by a writer, none by its own thread
        assert wait_until(lambda: srv.status()['writer_streams'] == SUBSCRIBERS, 10, 0.2), srv.status()

        sent = []
        for m in range(MESSAGES):
            r = srv.pub(ch, 'guard %d' % m)
            assert r['subscribers'] == SUBSCRIBERS, r
            sent.append(int(r['id']))
            crowd.pump(0.01)
        want = ['guard %d' % m for m in range(MESSAGES)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(len(s.datas) < MESSAGES for s in subs):
            crowd.pump(0.2)
        short = [(k, len(s.datas)) for k, s in enumerate(subs) if s.datas != want or s.ids != sent]
        assert not short, '%d subscribers differ, e.g. (index, events): %s' % (len(short), short[:5])
        assert srv.status()['delivered'] >= SUBSCRIBERS * MESSAGES
    finally:
        crowd.close()
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
        crowd = Crowd()
        ch = uniq('term')
        for _ in range(400):
            crowd.add(MassSubscriber(srv.port, '/quiet/%s' % ch))
        crowd.pump(1.0)
        assert wait_until(lambda: srv.status()['writer_streams'] == 400, 15, 0.1), srv.status()
        crowd.close()
        assert srv.stop(), 'round %d: httpd did not stop' % rnd
        crashes = [l for l in srv.read_log().splitlines() if 'Segmentation' in l or 'exit signal' in l]
        assert not crashes, 'round %d:\n%s' % (rnd, '\n'.join(crashes))
