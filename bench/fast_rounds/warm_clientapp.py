"""A warm ClientApp runtime for a SuperNode started with ``--isolation process`` (prototype).

Plain Flower 1.42 starts ``flower-superexec`` beside the SuperNode; it polls the SuperNode's
Runtime API (``AcquireTask``) once a second and starts a fresh ``flwr-clientapp`` process per
message, which spends ~2-3 s importing torch, flwr and the app before it trains for well under
a second. This process replaces that SuperExec: it imports everything once, polls
``AcquireTask`` on the local Runtime API every ``--poll`` seconds (default 0.02), and runs each
acquired ClientApp task

- ``--mode fork`` (default): in a child forked from the warm parent. The child runs Flower's own
  ``run_clientapp`` (pull the task input, run the app, push the reply and the task output,
  exit), so a task keeps its own process (crashes, SIGINT on a revoked token, memory growth and
  leaked threads stay per message) but starts in ~20 ms with torch, flwr, the ClientApp module
  and the dataset code already imported.
- ``--mode inprocess``: in this process. The ClientApp object, its modules and anything they
  cache stay loaded across messages; a task that crashes the interpreter takes the runtime
  down with it (the agent restarts it).

Usage (the SuperNode must run with ``--isolation process``; same FLWR_HOME as the SuperNode):

    python bench/fast_rounds/warm_clientapp.py --runtime-api-address 127.0.0.1:9094 --insecure \
        --preload fl_edge_agent.client_app --preload sklearn.model_selection
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

DEFAULT_PRELOAD = ("torch", "fl_edge_agent.client_app")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime-api-address", default="127.0.0.1:9094")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--root-certificates", default=None, help="CA of the Runtime API")
    parser.add_argument("--mode", choices=("fork", "inprocess"), default="fork")
    parser.add_argument("--poll", type=float, default=0.02, help="AcquireTask interval (s)")
    parser.add_argument(
        "--preload",
        action="append",
        default=None,
        help=f"module to import up front (repeatable; default {', '.join(DEFAULT_PRELOAD)})",
    )
    return parser.parse_args(argv)


class WarmRuntime:
    """Acquire ClientApp tasks from the SuperNode's Runtime API and run them warm."""

    def __init__(
        self,
        *,
        runtime_api_address: str,
        insecure: bool,
        root_certificates: str | None,
        mode: str,
        poll_s: float,
    ) -> None:
        from flwr.supercore.tls import validate_and_resolve_root_certificates

        self.address = runtime_api_address
        self.insecure = insecure
        self.certificates = validate_and_resolve_root_certificates(root_certificates, insecure)
        self.mode = mode
        self.poll_s = poll_s
        self.children: set[int] = set()
        self.stopping = False
        self.tasks_run = 0
        self._apps: dict[str, Any] = {}  # fab hash -> ClientApp (inprocess mode)
        self._app_dirs: dict[str, Path] = {}

    # -------------------------------------------------------------------- main loop

    def _acquire_client(self) -> Any:
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.runtime import RuntimeHttpClient

        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.certificates,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        )

    def serve(self) -> None:
        """Poll AcquireTask until SIGTERM/SIGINT; a SuperNode restart is just retried."""
        import httpx
        from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
        from flwr.supercore.constant import TaskType

        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
        client = self._acquire_client()
        backoff = self.poll_s
        print(f"warm-clientapp: {self.mode} mode, polling {self.address}", flush=True)
        try:
            while not self.stopping:
                self._reap()
                try:
                    res = client.AcquireTask(request)
                    backoff = self.poll_s
                except (httpx.TransportError, httpx.HTTPStatusError) as err:
                    # SuperNode not up (yet/again): back off up to 2 s.
                    backoff = min(max(backoff * 2, 0.1), 2.0)
                    print(f"warm-clientapp: AcquireTask failed ({err}); retry", flush=True)
                    time.sleep(backoff)
                    continue
                if res.HasField("task") and res.token:
                    self.tasks_run += 1
                    print(
                        f"warm-clientapp: task {res.task.task_id} at {time.time():.3f}", flush=True
                    )
                    if self.mode == "fork":
                        self._run_forked(res.token)
                    else:
                        self._run_inprocess(res.token)
                    continue  # look for the next task at once
                time.sleep(self.poll_s)
        finally:
            client.close()
            self._stop_children()

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: finish the current poll and exit."""
        self.stopping = True

    # -------------------------------------------------------------------- fork mode

    def _run_forked(self, token: str) -> None:
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        # Child: Flower's own ClientApp process body, minus the imports.
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from flwr.supernode.runtime.run_clientapp import run_clientapp

            run_clientapp(
                runtime_api_address=self.address,
                token=token,
                insecure=self.insecure,
                certificates=self.certificates,
                parent_pid=None,
                runtime_dependency_install=False,
            )
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a child must never return into the loop
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            self.children.discard(pid)
            print(f"warm-clientapp: child {pid} exited at {time.time():.3f}", flush=True)

    def _stop_children(self, grace_s: float = 5.0) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()

    # -------------------------------------------------------------------- inprocess mode

    def _load_app(self, run: Any, fab: Any) -> Any:
        """The run's ClientApp, loaded once per FAB hash."""
        from flwr.cli.install import install_from_fab
        from flwr.clientapp.utils import get_load_client_app_fn
        from flwr.common.config import get_project_dir

        if (app := self._apps.get(fab.hash_str)) is not None:
            return app
        app_dir = get_project_dir(run.fab_id, run.fab_version, fab.hash_str)
        if not app_dir.exists():
            install_from_fab(fab.content, skip_prompt=True)
        # Modules imported from an older FAB's directory would shadow this FAB's: drop them.
        for old_dir in self._app_dirs.values():
            prefix = str(old_dir)
            for name, module in list(sys.modules.items()):
                if str(getattr(module, "__file__", "") or "").startswith(prefix):
                    del sys.modules[name]
            with contextlib.suppress(ValueError):
                sys.path.remove(prefix)
        self._apps.clear()
        self._app_dirs = {fab.hash_str: Path(app_dir).absolute()}
        load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
        app = load(run.fab_id, run.fab_version, fab.hash_str)
        self._apps[fab.hash_str] = app
        return app

    def _run_inprocess(self, token: str) -> None:
        """What flwr's run_clientapp does, without exiting and without SIGINT on errors."""
        import httpx
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.clientapp.client_app import LoadClientAppError
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest  # pylint: disable=E0611
        from flwr.supercore.heartbeat import HeartbeatSender
        from flwr.supercore.interceptors import (
            RuntimeTokenHttpInterceptor,
            RuntimeVersionHttpInterceptor,
        )
        from flwr.supercore.runtime import RuntimeHttpClient
        from flwr.supernode.runtime.run_clientapp import (
            pull_task_input,
            push_message,
            push_task_output,
        )

        client = RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.certificates,
            interceptors=[
                RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                RuntimeTokenHttpInterceptor(token),
            ],
        )

        def heartbeat() -> bool:
            try:
                client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
            except httpx.HTTPError:
                return False
            return True

        sender = HeartbeatSender(heartbeat)
        sender.start()
        message = context = reply = None
        sub_status, details = SubStatus.FAILED, "ClientApp task failed"
        try:
            message, context, run, fab = pull_task_input(client)
            app = self._load_app(run, fab)
            started = time.time()
            reply = app(message=message, context=context)
            print(f"warm-clientapp: app ran {started:.3f} -> {time.time():.3f}", flush=True)
            sub_status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # noqa: BLE001 - becomes an error reply, like Flower's
            import traceback

            traceback.print_exc()
            code = (
                ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                if isinstance(exc, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            )
            details = f"{type(exc)}:<'{exc}'>"
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except Exception:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            push_task_output(client=client, context=context, sub_status=sub_status, details=details)
            sender.stop()
            client.close()
            print(f"warm-clientapp: task done at {time.time():.3f}", flush=True)


def fast_object_pulls(module: Any, initial_backoff_s: float = 0.02, cap_s: float = 0.5) -> None:
    """Make ``module.pull_objects`` retry a not-yet-available object after 20 ms, not 1 s.

    The SuperNode creates the ClientApp task before it has pulled the message's objects from
    the SuperLink, so a warm runtime asks for them too early; flwr's pull_objects then backs off
    1 s, 2 s, ... (PULL_INITIAL_BACKOFF=1, PULL_BACKOFF_CAP=10 in flwr/supercore/constant.py).
    """
    original = module.pull_objects
    if getattr(original, "_fast", False):
        return

    def pull_objects(*args: Any, **kwargs: Any) -> Any:
        kwargs["initial_backoff"] = min(kwargs.get("initial_backoff", 1.0), initial_backoff_s)
        kwargs["backoff_cap"] = min(kwargs.get("backoff_cap", 10.0), cap_s)
        return original(*args, **kwargs)

    pull_objects._fast = True  # type: ignore[attr-defined]
    module.pull_objects = pull_objects


def main(argv: list[str] | None = None) -> None:
    """Entry point: preload, then serve until SIGTERM."""
    args = _parse_args(argv)
    from flwr.supercore.inflatable import inflatable_utils

    fast_object_pulls(inflatable_utils)  # used by run_clientapp's pull_and_inflate_object_from_tree
    for name in args.preload or DEFAULT_PRELOAD:
        importlib.import_module(name)
    runtime = WarmRuntime(
        runtime_api_address=args.runtime_api_address,
        insecure=args.insecure,
        root_certificates=args.root_certificates,
        mode=args.mode,
        poll_s=args.poll,
    )
    signal.signal(signal.SIGTERM, runtime.stop)
    signal.signal(signal.SIGINT, runtime.stop)
    runtime.serve()


if __name__ == "__main__":
    main()
