"""``python -m fl_edge_agent.warm_runtime``: a warm ClientApp runtime beside one SuperNode.

Plain Flower 1.42 starts ``flower-superexec`` beside the SuperNode, which starts a fresh
``flwr-clientapp`` process per message: ~3 s of importing torch, flwr and the app, and
loading the data, for well under a second of training. With the SuperNode started with
``--isolation process`` this process takes SuperExec's place: it imports everything once,
asks the SuperNode's Runtime API (``AcquireTask``) for ClientApp tasks, and runs each one in
this process with Flower's own task-input/-output calls, so torch, the ClientApp module and
the device's data stay loaded from one message to the next.

Tasks run in up to MAX_CONCURRENT_TASKS worker threads, so one stuck task (its message's
objects never arrive) does not hold up the others. What that costs (see docs/fast-rounds.md):
a task's exception becomes an error reply as in Flower, but a crash of the interpreter ends
this runtime (the agent restarts it); a stopped run does not interrupt a handler that is
already running; the runtime stays resident (~0.6 GB with torch). The agent's
``clientapp_runtime = "isolated"`` gives Flower's per-message processes back.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import structlog

from fl_edge_agent.warm_runtime_process import READY_FILE_NAME
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.flower_polling import fast_object_pulls

log = structlog.get_logger(__name__)

PRELOAD = "fl_edge_agent.client_app"
HOT_POLL_S = 0.05
IDLE_POLL_S = 1.0
HOT_WINDOW_S = 60.0
MAX_RETRY_WAIT_S = 2.0
# Tasks run in worker threads, so one whose inputs never arrive (e.g. a message of a run
# that ended while it was being delivered) cannot hold up the next ones.
MAX_CONCURRENT_TASKS = 4
# One missing message object is waited for ~5 min (tries 0.5 s apart), not Flower's 2 h.
MAX_TRIES_PER_OBJECT = 600
STOP_GRACE_S = 5.0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's HOST:PORT")
    parser.add_argument(
        "--flwr-home", default=None, help="the SuperNode's FLWR_HOME (where FABs are installed)"
    )
    return parser.parse_args(argv)


class WarmRuntime:
    """Acquires the SuperNode's ClientApp tasks and runs them in this (warm) process."""

    def __init__(self, runtime_api_address: str) -> None:
        self.address = runtime_api_address
        self.stopping = False
        self.tasks_run = 0
        self._running = 0
        self._lock = threading.Lock()  # guards the counters and the loaded app
        self._workers = ThreadPoolExecutor(MAX_CONCURRENT_TASKS, thread_name_prefix="task")
        self.last_task_at = float("-inf")
        self._app: Any = None
        self._app_key: str | None = None
        self._app_dir: Path | None = None

    def _client(self, *interceptors: Any, component: str) -> Any:
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.runtime import RuntimeHttpClient

        # The SuperNode's Runtime API listens on 127.0.0.1 without TLS (Flower's own
        # flower-superexec connects the same way when no runtime certificates are set).
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=True,
            root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name=component), *interceptors],
        )

    def poll_interval(self) -> float:
        """Poll often while a run is going on (a task in the last minute), rarely otherwise."""
        hot = time.monotonic() - self.last_task_at < HOT_WINDOW_S
        return HOT_POLL_S if hot else IDLE_POLL_S

    def serve(self) -> None:
        """Acquire and run tasks until SIGTERM; an absent SuperNode is retried with backoff."""
        from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
        from flwr.supercore.constant import TaskType

        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
        client = self._client(component="SuperExec")
        retry_wait = 0.0
        log.info("warm_runtime_ready", runtime_api=self.address)
        try:
            while not self.stopping:
                if self.running >= MAX_CONCURRENT_TASKS:
                    time.sleep(HOT_POLL_S)
                    continue
                try:
                    res = client.AcquireTask(request)
                    retry_wait = 0.0
                except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                    retry_wait = min(max(retry_wait * 2, 0.1), MAX_RETRY_WAIT_S)
                    log.debug("acquire_task_failed", error=str(exc), retry_in_s=retry_wait)
                    time.sleep(retry_wait)
                    continue
                if res.HasField("task") and res.token:
                    self.last_task_at = time.monotonic()
                    with self._lock:
                        self._running += 1
                    self._workers.submit(self.run_task, res.token)
                    continue  # the next message is often already there
                time.sleep(self.poll_interval())
        finally:
            client.close()

    @property
    def running(self) -> int:
        """Tasks being handled right now."""
        with self._lock:
            return self._running

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop acquiring tasks (running ones get STOP_GRACE_S to finish)."""
        self.stopping = True

    def wait_for_tasks(self, grace_s: float = STOP_GRACE_S) -> int:
        """Wait up to ``grace_s`` for running tasks; returns how many are still running."""
        deadline = time.monotonic() + grace_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.running

    def _load_app(self, run: Any, fab: Any) -> Any:
        """The run's ClientApp, loaded once per FAB (an app's modules are imported once)."""
        from flwr.cli.install import install_from_fab
        from flwr.clientapp.utils import get_load_client_app_fn
        from flwr.common.config import get_project_dir

        if self._app is not None and self._app_key == fab.hash_str:
            return self._app
        app_dir = Path(get_project_dir(run.fab_id, run.fab_version, fab.hash_str)).absolute()
        if not app_dir.exists():
            install_from_fab(fab.content, skip_prompt=True)
        if self._app_dir is not None:
            self._forget_app_modules(self._app_dir)
        load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
        self._app = load(run.fab_id, run.fab_version, fab.hash_str)
        self._app_key, self._app_dir = fab.hash_str, app_dir
        return self._app

    @staticmethod
    def _forget_app_modules(app_dir: Path) -> None:
        """Modules imported from an older FAB's directory would shadow the new FAB's."""
        prefix = str(app_dir)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(prefix):
                del sys.modules[name]
        with contextlib.suppress(ValueError):
            sys.path.remove(prefix)

    def run_task(self, token: str) -> None:
        """Run one acquired task (in a worker thread); the running count always goes down."""
        try:
            self._run_task(token)
        except Exception:
            log.exception("task_crashed")
        finally:
            with self._lock:
                self._running -= 1
                self.tasks_run += 1

    def _run_task(self, token: str) -> None:
        """Flower's run_clientapp body, minus the process start and the exit at the end."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.clientapp.client_app import LoadClientAppError
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor
        from flwr.supernode.runtime.run_clientapp import (
            pull_task_input,
            push_message,
            push_task_output,
        )

        client = self._client(RuntimeTokenHttpInterceptor(token), component="flwr-clientapp")
        sender = HeartbeatSender(make_task_heartbeat_fn_http(client))
        message = context = reply = None
        sub_status, details = SubStatus.FAILED, "ClientApp task interrupted"
        started = time.monotonic()
        try:
            sender.start()
            message, context, run, fab = pull_task_input(client)
            with self._lock:
                app = self._load_app(run, fab)
            reply = app(message=message, context=context)
            sub_status, details = SubStatus.COMPLETED, ""
        except Exception as exc:
            code = (
                ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                if isinstance(exc, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            )
            details = f"{type(exc)}:<'{exc}'>"
            log.exception("clientapp_failed", error=details)
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
                push_task_output(
                    client=client, context=context, sub_status=sub_status, details=details
                )
            except Exception as exc:  # noqa: BLE001 - the SuperNode may be gone
                log.warning("task_output_failed", error=str(exc))
            finally:
                sender.stop()
                client.close()
        log.info(
            "task_done",
            status=sub_status,
            seconds=round(time.monotonic() - started, 3),
        )


def main(argv: list[str] | None = None) -> None:
    """Import the ClientApp and its dependencies once, then serve until SIGTERM."""
    args = _parse_args(argv)
    if args.flwr_home:
        os.environ["FLWR_HOME"] = args.flwr_home
    from flwr.supercore.inflatable import inflatable_utils

    # The SuperNode announces a task before it holds the message's objects; Flower's pull
    # would then back off 1 s, 2 s, ...
    fast_object_pulls(inflatable_utils, max_tries_per_object=MAX_TRIES_PER_OBJECT)
    app_module = importlib.import_module(PRELOAD)
    warm_up = getattr(app_module, "warm_up", None)
    if callable(warm_up):
        log.info("warm_up_done", seconds=round(warm_up(), 2))
    if args.flwr_home:  # tell the agent: ready for tasks
        ready = Path(args.flwr_home) / READY_FILE_NAME
        atomic_write_bytes(ready, str(os.getpid()).encode())
    runtime = WarmRuntime(args.runtime_api_address)
    signal.signal(signal.SIGTERM, runtime.stop)
    signal.signal(signal.SIGINT, runtime.stop)
    runtime.serve()
    left = runtime.wait_for_tasks()
    log.info("warm_runtime_stopped", tasks_run=runtime.tasks_run, abandoned=left)
    sys.stdout.flush()
    sys.stderr.flush()
    # Worker threads stuck in a pull must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
