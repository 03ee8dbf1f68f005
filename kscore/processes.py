"""Child processes as kscore's supervisor keeps them: each in its own process group, its output
in a log file, stopped with SIGTERM and then SIGKILL to its whole group.

A child in its own group means a Ctrl-C in the terminal reaches only the owner, which then stops
its children in the order it chooses (:class:`kscore.devstack.Supervisor`). Because the group
also keeps the terminal's SIGHUP away from them, each child asks Linux to send it SIGTERM when
its owner dies (``PR_SET_PDEATHSIG``): an owner killed with SIGKILL, or crashing, leaves nothing
running behind it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "STOP_GRACE_SECONDS",
    "Child",
    "ChildExited",
    "DevStackError",
    "Role",
    "spawn",
    "stop_children",
    "tail_file",
]

STOP_GRACE_SECONDS = 10.0

Role = Literal["redis", "worker", "api", "flower"]


class DevStackError(RuntimeError):
    """A process of the stack could not be found, started, made ready or kept running."""


def tail_file(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file, or ``(no log)``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A process we started, in its own process group, with its output in ``log_path``."""

    name: str
    role: Role
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self.process.pid

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def exit_description(self) -> str:
        """How it ended: ``exited with code N`` or ``was killed by signal N``."""
        code = self.process.poll()
        if code is None:
            return "is still running"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of its log."""
        return tail_file(self.log_path, lines)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, then SIGKILL to its process group after ``grace`` seconds; waits for it."""
        stop_children([self], grace)


class ChildExited(DevStackError):
    """A child of the stack exited; the message ends with the tail of its log."""

    def __init__(self, child: Child) -> None:
        self.child = child
        tail = "\n".join("    " + line for line in child.log_tail().splitlines())
        super().__init__(
            f"{child.name} {child.exit_description()}. Last lines of {child.log_path}:\n{tail}"
        )


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_owner(owner_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGTERM when ``owner_pid`` exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != owner_pid:  # the owner died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(
    name: str,
    role: Role,
    argv: list[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` in its own process group, output appended to ``log_path``; the child.

    Raises DevStackError if the program cannot be run at all.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- {stamp} started: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # its own group: a terminal's Ctrl-C is the owner's to forward
                preexec_fn=_exit_with_owner(os.getpid()),
            )
        except OSError as exc:
            raise DevStackError(f"Could not run {argv[0]}: {exc}") from exc
    return Child(name, role, process, log_path)


def stop_children(
    children: list[Child],
    grace: float = STOP_GRACE_SECONDS,
    hurry: Callable[[], bool] = lambda: False,
    warn: Callable[[str], None] | None = None,
) -> None:
    """SIGTERM every running child at once, then SIGKILL the process group of any still running
    after ``grace`` seconds (or as soon as ``hurry()`` is true); returns once all have exited."""
    running = [c for c in children if c.running()]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        while child.running():
            if time.monotonic() > deadline or hurry():
                if warn is not None:
                    warn(f"{child.name} did not stop in time; killing it.")
                # The leader is not reaped yet, so its group id cannot belong to anyone else.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.process.wait()
                break
            time.sleep(0.05)
