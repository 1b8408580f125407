"""Child processes of `bookgen up`: each in its own process group, tracked by pid, stopped warm.

Why process groups: a `celery worker` with a prefork pool is a tree (main process + pool children);
a straggler after the grace period is killed as a group, so nothing is left behind. The polite
SIGTERM, though, goes to the main process only: that is Celery's warm shutdown (the pool children
finish their tasks, then exit); SIGTERM to the whole group would kill busy pool children at once.

Why PR_SET_PDEATHSIG: if `bookgen up` itself dies without cleaning up
(SIGKILL, OOM), every direct child gets SIGTERM from the kernel and shuts down warm instead of
becoming an orphan. The pids are also written to `<state>/pids.json`, so the next `bookgen up` can
finish off anything a crash left behind (see `reap_leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    started_at: float
    #: When SIGTERM was sent (None = running normally).
    stopping_since: float | None = None
    #: Free-form facts the owner keeps about this child (pool, index, ...).
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal_leader(self, sig: int) -> None:
        """Signal the main process only (for a Celery worker, SIGTERM = warm shutdown)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        # The child leads its own group (start_new_session), so its pgid is its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def group_alive(self) -> bool:
        """True while any process of the child's group exists (pool children may outlive the leader)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Supervisor:
    """Starts, tracks and stops the children of one `bookgen up`."""

    def __init__(self, state_dir: Path, log_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.log_dir = log_dir or state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}
        self._pid_file = state_dir / "pids.json"

    # ------------------------------------------------------------------ start

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None,
              labels: Mapping[str, str] | None = None) -> Child:
        if name in self.children and self.children[name].running:
            raise RuntimeError(f"{name} is already running (pid {self.children[name].pid})")
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd or self.state_dir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )
        child = Child(name, list(argv), log_path, process, time.time(), labels=dict(labels or {}))
        self.children[name] = child
        self._save_pids()
        return child

    # ------------------------------------------------------------------ stop

    def terminate(self, name: str) -> Child | None:
        """Ask a child to stop (SIGTERM to its main process: a Celery worker's warm shutdown); do not wait.
        Not to its group: that would kill a prefork worker's busy pool children mid-task."""
        child = self.children.get(name)
        if child is None:
            return None
        if child.stopping_since is None:
            child.stopping_since = time.monotonic()
            child.signal_leader(signal.SIGTERM)
        return child

    def reap(self) -> list[Child]:
        """Forget children that have exited (and whose whole group is gone); return them."""
        gone = []
        for name, child in list(self.children.items()):
            if not child.running:
                if child.group_alive():
                    # The leader exited but pool children linger: finish them off.
                    child.signal_group(signal.SIGKILL)
                del self.children[name]
                gone.append(child)
        if gone:
            self._save_pids()
        return gone

    def kill_overdue(self, grace: float) -> list[Child]:
        """SIGKILL the groups of children still running `grace` seconds after their SIGTERM."""
        now = time.monotonic()
        killed = []
        for child in self.children.values():
            if child.running and child.stopping_since is not None and now - child.stopping_since > grace:
                child.signal_group(signal.SIGKILL)
                killed.append(child)
        return killed

    def stop_all(self, grace: float, names: Sequence[str] | None = None, poll: float = 0.1) -> list[str]:
        """SIGTERM the given children (default all) at once, wait up to `grace` seconds, then SIGKILL the
        rest. Returns the names that had to be killed."""
        targets = [self.children[n] for n in (names if names is not None else list(self.children))
                   if n in self.children]
        for child in targets:
            self.terminate(child.name)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.running for c in targets):
            time.sleep(poll)
        killed = [c.name for c in targets if c.running]
        for child in targets:
            if child.running or child.group_alive():
                child.signal_group(signal.SIGKILL)
        for child in targets:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
        self.reap()
        return killed

    # ------------------------------------------------------------------ leftovers of a crash

    def _save_pids(self) -> None:
        data = {name: c.pid for name, c in self.children.items()}
        tmp = self._pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._pid_file)

    def reap_leftovers(self) -> list[int]:
        """Kill process groups a previous `bookgen up` of this state folder left running (it was
        SIGKILLed before it could stop them). Only groups whose leader still runs from this state
        folder are touched, never an unrelated process that reused the pid."""
        try:
            recorded = json.loads(self._pid_file.read_text())
        except (OSError, ValueError):
            return []
        killed = []
        for pid in recorded.values():
            if isinstance(pid, int) and _cwd_of(pid) == self.state_dir.resolve():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
        self._pid_file.unlink(missing_ok=True)
        return killed


def _cwd_of(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
    except OSError:
        return None
