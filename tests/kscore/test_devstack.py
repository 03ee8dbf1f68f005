"""The dev-stack supervisor with stand-in children (small Python scripts): the order it stops
them in, what it says when one dies, and what it does to one that ignores SIGTERM."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kscore.devstack import ChildExited, Supervisor
from kscore.processes import Role, spawn

# Says it is up, then on SIGTERM appends its name to a file and exits.
POLITE = """
import signal, sys, time
name, record = sys.argv[1], sys.argv[2]
def stop(signum, frame):
    with open(record, "a") as out:
        out.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
while True:
    time.sleep(0.05)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
while True:
    time.sleep(0.05)
"""


def _add(stack: Supervisor, name: str, role: Role, *args: str, script: str = POLITE) -> None:
    argv = [sys.executable, "-c", script, name, *args]
    child = spawn(name, role, argv, env=stack.env, log_path=stack.log_dir / f"{name}.log")
    stack.children.append(child)


def _wait_logged(stack: Supervisor, line: str) -> None:
    # A whole line: the log's first line (the command, script included) holds the text too.
    deadline = time.monotonic() + 10
    while not all(line in c.log_tail().splitlines() for c in stack.children):
        assert time.monotonic() < deadline, stack.log_tails()
        time.sleep(0.02)


def test_stop_goes_api_then_workers_then_redis(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    stack = Supervisor(tmp_path)
    # Started in the opposite order on purpose: the order of stopping is by role.
    _add(stack, "redis", "redis", str(record))
    _add(stack, "worker1", "worker", str(record))
    _add(stack, "worker2", "worker", str(record))
    _add(stack, "api", "api", str(record))
    _wait_logged(stack, "up")
    stack.stop()
    stopped = record.read_text().split()
    assert stopped[0] == "api"
    assert sorted(stopped[1:3]) == ["worker1", "worker2"]
    assert stopped[3] == "redis"
    assert all(not c.running() for c in stack.children)


def test_a_dead_child_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as stack:
        _add(
            stack, "worker1", "worker", script='print("broker misconfigured"); raise SystemExit(3)'
        )
        stack.children[0].process.wait(10)
        with pytest.raises(ChildExited) as caught:
            stack.check_alive()
    message = str(caught.value)
    assert message.startswith(f"worker1 exited with code 3. Last lines of {tmp_path}/worker1.log:")
    assert "    broker misconfigured" in message.splitlines()
    assert caught.value.child.name == "worker1"


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    warnings: list[str] = []
    stack = Supervisor(tmp_path, warn=warnings.append)
    _add(stack, "worker1", "worker", script=STUBBORN)
    _wait_logged(stack, "up")
    started = time.monotonic()
    stack.stop(grace=0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert stack.children[0].exit_description() == "was killed by signal 9"
    assert warnings == ["worker1 did not stop in time; killing it."]


def test_wait_ready_stops_at_a_dead_child(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as stack:
        _add(stack, "api", "api", script="raise SystemExit(1)")
        with pytest.raises(ChildExited, match="api exited with code 1"):
            stack.wait_ready("http://127.0.0.1:9", timeout=30)
