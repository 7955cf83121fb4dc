"""ManagedProcess: a supervised child whose output is forwarded into structured logs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_START = "Traceback (most recent call last):"


class ManagedProcess:
    """One child process: started in its own process group, stopped by SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        tail_lines: int = 200,
        log_file: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._log_file = log_file
        self._proc: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._log = structlog.get_logger(f"fl.{name}")

    @property
    def pid(self) -> int | None:
        """The child's PID, or None before start."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the child; its output goes line by line into our log (or to ``log_file``)."""
        if self._log_file is not None:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
            with self._log_file.open("ab") as out:
                self._proc = subprocess.Popen(
                    self.argv,
                    env=self._env,
                    cwd=self._cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._log.info("process_started", pid=self._proc.pid, log_file=str(self._log_file))
            return
        self._proc = subprocess.Popen(
            self.argv,
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._log.info("process_started", pid=self._proc.pid, argv=self.argv)
        self._reader = threading.Thread(
            target=self._forward, args=(self._proc,), name=f"{self.name}-output", daemon=True
        )
        self._reader.start()

    def _forward(self, proc: subprocess.Popen[str]) -> None:  # text mode: see start()
        assert proc.stdout is not None  # set by Popen(stdout=PIPE)
        traceback: list[str] = []
        for raw in proc.stdout:
            line = _ANSI.sub("", raw).rstrip()
            if not line:
                continue
            self._tail.append(line)
            # A Python traceback (e.g. a failing ClientApp's) becomes one event, not twenty.
            if line.startswith(_TRACEBACK_START):
                self._flush_traceback(proc.pid, traceback)
                traceback.append(line)
            elif traceback:
                traceback.append(line)
                if not line.startswith((" ", "\t")):  # the exception line ends it
                    self._flush_traceback(proc.pid, traceback)
            else:
                self._log.info("process_output", pid=proc.pid, line=line)
        self._flush_traceback(proc.pid, traceback)

    def _flush_traceback(self, pid: int, lines: list[str]) -> None:
        if lines:
            self._log.error(
                "process_traceback", pid=pid, error=lines[-1], traceback="\n".join(lines)
            )
            lines.clear()

    def poll(self) -> int | None:
        """The exit status if the child has ended, else None."""
        return self._proc.poll() if self._proc else None

    def is_running(self) -> bool:
        """True while the child lives."""
        return self._proc is not None and self._proc.poll() is None

    def tail(self) -> list[str]:
        """The last lines the child printed."""
        if self._log_file is not None and self._log_file.exists():
            return self._log_file.read_text(errors="replace").splitlines()[
                -(self._tail.maxlen or 1) :
            ]
        return list(self._tail)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end and return its status."""
        assert self._proc is not None, "wait() before start()"
        return self._proc.wait(timeout)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after the grace period."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._log.warning("process_kill", pid=proc.pid, grace_s=grace_s)
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()
        # The group may hold grandchildren (superexec, serverapp, clientapp) still ending.
        self._signal_group(proc, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=2)
        self._log.info("process_stopped", pid=proc.pid, returncode=proc.returncode)
        return proc.returncode

    @staticmethod
    def _signal_group(
        proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: signal.Signals
    ) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
