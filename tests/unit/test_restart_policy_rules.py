"""The restart monitor's decision: policy parsing and when a container is (re)started, on real
task Process messages."""

import pytest

from corral.api.containerd.types import task_pb2
from corral.daemon import restart as R


def task(status, exit_status=0):
    return task_pb2.Process(id="c", status=status, exit_status=exit_status)


def labels(policy, status="running", count=None):
    out = {R.POLICY: policy}
    if status is not None:
        out[R.STATUS] = status
    if count is not None:
        out[R.COUNT] = str(count)
    return out


def test_parse_policy():
    assert R.parse_policy("") is None and R.parse_policy("no") is None
    assert R.parse_policy("always") == ("always", 0)
    assert R.parse_policy("unless-stopped") == ("unless-stopped", 0)
    assert R.parse_policy("on-failure") == ("on-failure", 0)
    assert R.parse_policy("on-failure:5") == ("on-failure", 5)
    for bad in ("sometimes", "always:3", "on-failure:x", "on-failure:-1"):
        with pytest.raises(ValueError):
            R.parse_policy(bad)


def test_exited_tasks():
    stopped_ok, stopped_bad = task(R._STOPPED, 0), task(R._STOPPED, 2)
    assert R.wants_restart(labels("always"), stopped_ok)
    assert R.wants_restart(labels("unless-stopped"), stopped_ok)
    assert not R.wants_restart(labels("on-failure"), stopped_ok)
    assert R.wants_restart(labels("on-failure"), stopped_bad)
    assert R.wants_restart(labels("on-failure:2", count=1), stopped_bad)
    assert not R.wants_restart(labels("on-failure:2", count=2), stopped_bad)
    assert not R.wants_restart(labels("no"), stopped_bad)
    assert not R.wants_restart(labels("bogus"), stopped_bad)
    assert not R.wants_restart({}, stopped_bad)


def test_running_or_starting_tasks_are_left_alone():
    for status in (R._CREATED, R._RUNNING, R._PAUSED, R._PAUSING):
        assert not R.wants_restart(labels("always"), task(status))
    for status in (R._RUNNING, R._PAUSED, R._PAUSING):
        assert not R.wants_restart(labels("always"), task(status), startup=True)


def test_a_start_cut_short_is_done_again():
    """A task left only created (the daemon died between create and start): at start-up, or
    when a later check finds the same task still created."""
    created = task(R._CREATED)
    assert R.wants_restart(labels("always"), created, startup=True)
    assert R.wants_restart(labels("on-failure"), created, stale=True)
    assert not R.wants_restart(labels("always", status="stopped"), created, stale=True)


def test_explicit_stop_and_never_started():
    stopped = task(R._STOPPED, 1)
    for policy in ("always", "unless-stopped", "on-failure"):
        assert not R.wants_restart(labels(policy, status="stopped"), stopped)
        assert not R.wants_restart(labels(policy, status=None), stopped)
        assert not R.wants_restart(labels(policy, status=None), None, startup=True)
    # a daemon restart brings `always` back even after a stop, as docker does
    assert R.wants_restart(labels("always", status="stopped"), stopped, startup=True)
    assert not R.wants_restart(labels("unless-stopped", status="stopped"), stopped, startup=True)


def test_missing_task_only_at_start_up():
    for policy in ("always", "unless-stopped", "on-failure"):
        assert not R.wants_restart(labels(policy), None)
        assert R.wants_restart(labels(policy), None, startup=True)


class _Exchange:
    def subscribe(self, filters):
        return None


class _Client:
    """What the monitor's check asks of the daemon: one namespace, its records and tasks."""

    def __init__(self, records, tasks):
        self.records, self.tasks_ = records, tasks

    def namespaces(self):
        return [type("NS", (), {"name": "default"})()]

    def with_namespace(self, ns):
        return self

    def list_containers(self, filter_string=""):
        return self.records

    def tasks(self):
        return list(self.tasks_.values())


def _monitor(records, tasks):
    m = R.RestartMonitor(_Exchange(), "unused")
    m.client = _Client(records, tasks)
    m.restarts = []
    m._restart = lambda ns, cid, startup=False: m.restarts.append((cid, startup))
    return m


def test_a_task_unknown_at_start_up_gets_start_up_rules_once_settled():
    """A shim that had not answered by the start-up check (UNKNOWN) and turned out to hold no
    task (cleaned up since): the next check starts the container as start-up would have."""
    rec = type("Rec", (), {"id": "c", "labels": labels("always")})()
    m = _monitor([rec], {"c": task(0)})
    m._check_all(startup=True)
    m._check_all(startup=False)
    assert m.restarts == []  # still UNKNOWN: wait
    m.client.tasks_ = {}
    m._check_all(startup=False)
    assert m.restarts == [("c", True)]
    m._check_all(startup=False)  # once only: afterwards ordinary rules
    assert m.restarts == [("c", True)]


def test_failed_attempts_back_off():
    m = _monitor([], {})
    key = ("default", "c")
    delays = []
    for _ in range(4):
        m.due.clear()
        m._schedule(key, failed=True)
        delays.append(m.backoff[key][0])
    assert delays == [m.min_delay, m.min_delay * 2, m.min_delay * 4, m.min_delay * 8]
    m.due.clear()
    m._schedule(key)  # an exit after a run (its start long ago): back to the shortest delay
    assert m.backoff[key][0] == m.min_delay
