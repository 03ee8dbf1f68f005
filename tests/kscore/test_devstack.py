"""The dev-stack supervisor with stand-in children (small Python scripts): the order it stops
them in, what it says when one dies, and what it does to one that ignores SIGTERM."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest

from kscore.devstack import ChildExited, DevStackError, Supervisor, flower_command
from kscore.processes import Role, spawn
from kscore.up import flower_basic_auth

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


def test_flower_stops_after_the_api_and_before_the_workers(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    stack = Supervisor(tmp_path)
    _add(stack, "redis", "redis", str(record))
    _add(stack, "worker1", "worker", str(record))
    _add(stack, "flower", "flower", str(record))
    _add(stack, "api", "api", str(record))
    _wait_logged(stack, "up")
    stack.stop()
    assert record.read_text().split() == ["api", "flower", "worker1", "redis"]


def test_flower_binds_loopback_and_takes_its_auth_from_the_environment(tmp_path: Path) -> None:
    command = flower_command(5599)
    assert command[-3:] == ["flower", "--address=127.0.0.1", "--port=5599"]
    assert not any("auth" in part for part in command)  # not in `ps`
    stack = Supervisor(tmp_path)
    with pytest.raises(DevStackError, match="user:password"):
        stack.start_flower(5599, basic_auth="no-colon")


def test_flower_basic_auth_from_the_setting_or_kept_in_the_data_dir(tmp_path: Path) -> None:
    given = flower_basic_auth(tmp_path, {"KSCORE_FLOWER_BASIC_AUTH": "ops:pw"})
    assert given == ("ops:pw", "from KSCORE_FLOWER_BASIC_AUTH")
    assert not (tmp_path / "flower.json").exists()
    with pytest.raises(DevStackError, match="user:password"):
        flower_basic_auth(tmp_path, {"KSCORE_FLOWER_BASIC_AUTH": "ops:"})
    made, where = flower_basic_auth(tmp_path, {})
    user, _, password = made.partition(":")
    assert user == "kscore" and len(password) >= 24 and "flower.json" in where
    assert stat.S_IMODE((tmp_path / "flower.json").stat().st_mode) == 0o600
    assert flower_basic_auth(tmp_path, {})[0] == made  # the same on the next start
