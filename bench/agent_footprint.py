"""Agent footprint: the edge agent daemon's own RSS and CPU while idle (issue #3).

Starts a coordinator and one edge agent with ``fl_coordinator.local_fleet.LocalFleet``,
waits until the device is online with its SuperNode running, lets it settle, then samples
once a second for ``--seconds`` (60):

- the agent process itself (``fl-edge-agent run``): RSS, USS and PSS (``memory_full_info``),
  threads, and CPU = delta(user + system) / delta(wall), in % of one core;
- separately, its descendants (``flower-supernode``, the ``flower-superexec`` it starts, ...):
  per process and summed;
- as context only: the coordinator's process tree, the machine's overall CPU use and this
  script's own CPU (the observer).

A newer agent probes the device in a child process right after it starts; the window
begins only once that start-up probe has ended (its duration and peak RSS are recorded).

Afterwards it checks ``/proc/<pid>/maps`` of every measured process for libtorch, lists the
agent's largest mappings, measures what each import of the agent costs in a fresh interpreter
(the "import ladder"), and times ``fl-edge-agent probe --json`` if that subcommand exists
(the probe is measured with the fleet stopped).

MB = 10^6 bytes throughout. A benchmark never asserts: it prints numbers and writes JSON
(default ``bench/results/agent_footprint.json``).

Usage: .venv/bin/python bench/agent_footprint.py [--seconds S] [--settle S] [--out FILE]
       [--probe-wait S] [--probe-repeat N] [--wait-quiet S] [--keep-dirs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench_machine import machine_info, wait_for_quiet
from fl_coordinator.local_fleet import LocalFleet, program

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "agent_footprint.json"
MB = 1_000_000

GOAL_AGENT_RSS_MB = 60.0
GOAL_AGENT_IDLE_CPU_PERCENT = 1.0
GOAL_PROBE_S = 5.0

FLOWER_PROGRAMS = frozenset(
    {
        "flower-superlink",
        "flower-supernode",
        "flower-superexec",
        "flwr-serverapp",
        "flwr-clientapp",
        "flwr",
        "fl-coordinator",
        "fl-edge-agent",
        "fl_edge_agent.cli",
    }
)

# Cumulative imports in a fresh interpreter, in the order the agent's modules pull them in.
IMPORT_LADDER = r"""
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def tops():
    return {m.split(".")[0] for m in sys.modules}
steps = [{"step": "python (bare interpreter)", "rss": rss(), "new_packages": []}]
try:  # what the `fl-edge-agent` console script does first, where it exists
    from fl_edge_agent.launcher import keep_console_extras_out
except ImportError:
    pass
else:
    kept_out = ", ".join(keep_console_extras_out()) or "nothing"
    steps.append({"step": f"+ launcher (keeps out {kept_out})", "rss": rss(), "new_packages": []})
ladder = [
    ("structlog", ["structlog"]),
    ("httpx", ["httpx"]),
    ("pydantic", ["pydantic"]),
    ("pydantic_settings", ["pydantic_settings"]),
    ("grpc (the SuperNode health check)", ["grpc", "fl_edge_agent.supernode_health"]),
    ("fl_shared (wire, log_setup)", ["fl_shared.wire", "fl_shared.log_setup"]),
    ("fl_edge_agent.cli (everything the agent imports)", ["fl_edge_agent.cli"]),
]
for name, modules in ladder:
    before = tops()
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        steps.append({"step": "+ " + name, "rss": rss(), "error": str(exc), "new_packages": []})
        continue
    own = {m.split(".")[0] for m in modules}
    new = sorted(tops() - before - set(sys.stdlib_module_names) - own)
    steps.append({"step": "+ " + name, "rss": rss(), "new_packages": new})
from fl_edge_agent.coordinator_client import CoordinatorClient
client = CoordinatorClient("http://127.0.0.1:9")
step = "+ CoordinatorClient (httpx.Client, http://)"
steps.append({"step": step, "rss": rss(), "new_packages": []})
heavy_names = ("torch", "numpy", "flwr", "grpc", "onnxruntime", "rich", "pygments", "click")
heavy = sorted(m for m in heavy_names if sys.modules.get(m) is not None)
print(json.dumps({"steps": steps, "heavy_modules_loaded": heavy, "modules": len(sys.modules)}))
"""

PROBE_CHECK = r"""
import importlib.util, json
spec = importlib.util.find_spec("fl_edge_agent.capability_probe")
info = {"module": spec is not None, "has_class": False, "error": None}
if spec is not None:
    try:
        import fl_edge_agent.capability_probe as m
        info["has_class"] = hasattr(m, "CapabilityProbe")
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(info))
"""


# ----------------------------------------------------------------------------- machine


def source_info() -> dict[str, Any]:
    """Which code was measured: the commit, and uncommitted changes under the packages."""

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(
                ["git", *cmd], capture_output=True, text=True, timeout=30, cwd=BENCH_DIR.parent
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git("status", "--porcelain", "--", "edge_agent/src", "shared/src")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": status.splitlines()}


# ----------------------------------------------------------------------------- processes


def _program_argv(proc: psutil.Process) -> list[str]:
    """The command line from the program on: without the interpreter for scripts and -m."""
    try:
        argv = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
    if argv and Path(argv[0]).name.startswith("python") and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            return argv[2:]
        return [Path(argv[1]).name, *argv[2:]]
    return [Path(argv[0]).name, *argv[1:]] if argv else []


def label(proc: psutil.Process) -> str:
    """The program a process runs: the script name for console scripts, else the binary."""
    argv = _program_argv(proc)
    return argv[0] if argv else "?"


def describe(proc: psutil.Process) -> str:
    """The program and its subcommand, e.g. ``fl_edge_agent.cli probe``."""
    argv = _program_argv(proc)
    if not argv:
        return "?"
    if len(argv) > 1 and not argv[1].startswith("-"):
        return f"{argv[0]} {argv[1]}"
    return argv[0]


def is_probe(proc: psutil.Process) -> bool:
    """A capability probe child (``fl-edge-agent probe`` / ``-m fl_edge_agent.cli probe``)."""
    argv = _program_argv(proc)
    return len(argv) > 1 and argv[1] == "probe"


def wait_startup_probe(agent_pid: int, timeout_s: float) -> dict[str, Any]:
    """Wait until no capability-probe child of the agent runs; what was seen meanwhile.

    A newer agent probes the device in a child process at start; that is start-up, not idle.
    """
    agent = psutil.Process(agent_pid)
    started = time.monotonic()
    seen: dict[int, dict[str, Any]] = {}
    while True:
        try:
            kids = [k for k in agent.children(recursive=True) if is_probe(k)]
        except psutil.NoSuchProcess:
            kids = []
        for kid in kids:
            row = read_proc(kid, full=False)
            if row is None:
                continue
            entry = seen.setdefault(
                kid.pid,
                {"pid": kid.pid, "program": describe(kid), "first_seen_s": 0.0, "rss_peak": 0},
            )
            if not entry["rss_peak"]:
                entry["first_seen_s"] = time.monotonic() - started
            entry["rss_peak"] = max(entry["rss_peak"], row["rss"])
            entry["last_seen_s"] = time.monotonic() - started
        elapsed = time.monotonic() - started
        # Look for a few seconds before concluding that there is no probe at all.
        if (not kids and (seen or elapsed >= 3.0)) or elapsed > timeout_s:
            break
        time.sleep(0.5)
    for entry in seen.values():
        entry["rss_peak_mb"] = entry.pop("rss_peak") / MB
    return {
        "waited_s": time.monotonic() - started,
        "still_running": bool(kids),
        "probe_children": list(seen.values()),
    }


def flower_processes(exclude: set[int]) -> list[str]:
    """Flower/platform processes on this machine whose pid is not in ``exclude``."""
    found: list[str] = []
    for proc in psutil.process_iter():
        if proc.pid in exclude or proc.pid == os.getpid():
            continue
        name = label(proc)
        if name in FLOWER_PROGRAMS:
            found.append(f"{proc.pid} {name}")
    return found


def own_pids() -> set[int]:
    """This script and every process it started (and theirs)."""
    me = psutil.Process()
    pids = {me.pid}
    with contextlib.suppress(psutil.NoSuchProcess):
        pids |= {p.pid for p in me.children(recursive=True)}
    return pids


def _system_cpu() -> tuple[float, float]:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times), idle


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process (not its children)."""
    t = proc.cpu_times()
    return t.user + t.system


def read_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmHWM."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def torch_mappings(pid: int) -> dict[str, Any]:
    """Whether libtorch (or anything under a torch/ directory) is mapped into ``pid``."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError as exc:
        return {"checked": False, "error": str(exc)}
    paths = {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}
    hits = sorted(p for p in paths if "libtorch" in p or "/torch/" in p)
    return {
        "checked": True,
        "libtorch_mapped": any("libtorch" in p for p in hits),
        "torch_files_mapped": len(hits),
        "examples": hits[:5],
        "mapped_files": len(paths),
    }


def mapping_groups(pid: int, top: int = 12) -> list[dict[str, Any]]:
    """The process's RSS grouped by what is mapped: a site-packages package, a library, anon."""
    try:
        maps = psutil.Process(pid).memory_maps(grouped=True)
    except (psutil.Error, OSError):
        return []
    groups: dict[str, list[int]] = {}
    for m in maps:
        path = m.path
        if "site-packages/" in path:
            key = "site-packages/" + path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith("[") or not path:
            key = path or "[anon]"
        elif "libpython" in path or Path(path).name.startswith("python"):
            key = "python interpreter / libpython"
        elif "/lib-dynload/" in path:
            key = "stdlib extension modules (lib-dynload)"
        else:
            key = Path(path).name
        acc = groups.setdefault(key, [0, 0])
        acc[0] += m.rss
        acc[1] += getattr(m, "private_clean", 0) + getattr(m, "private_dirty", 0)
    rows: list[dict[str, Any]] = [
        {"mapping": k, "rss_mb": round(v[0] / MB, 2), "private_mb": round(v[1] / MB, 2)}
        for k, v in groups.items()
    ]
    rows.sort(key=lambda r: -r["rss_mb"])
    return rows[:top]


# ----------------------------------------------------------------------------- sampling


def read_proc(proc: psutil.Process, full: bool = True) -> dict[str, Any] | None:
    """One reading of one process; None if it is gone."""
    try:
        with proc.oneshot():
            row: dict[str, Any] = {"pid": proc.pid, "cpu_s": cpu_seconds(proc)}
            if full:
                try:
                    mem = proc.memory_full_info()
                    row["uss"] = getattr(mem, "uss", None)
                    row["pss"] = getattr(mem, "pss", None)
                except psutil.AccessDenied:
                    mem = proc.memory_info()
                    row["uss"] = row["pss"] = None
                row["threads"] = proc.num_threads()
            else:
                mem = proc.memory_info()
            row["rss"] = mem.rss
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    return row


class TreeSampler:
    """Samples a root process and (separately) its descendants, tracking CPU per pid."""

    def __init__(self, root_pid: int, full: bool) -> None:
        self.root = psutil.Process(root_pid)
        self.full = full
        self.labels: dict[int, str] = {}
        self.first_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self.created: dict[int, float] = {}
        self.rss: dict[int, list[int]] = {}
        self.uss: dict[int, list[int]] = {}

    def sample(self, t_start_epoch: float) -> dict[str, Any]:
        """One reading of the root and of every current descendant."""
        root = read_proc(self.root, self.full)
        try:
            kids = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        children = []
        for kid in kids:
            row = read_proc(kid, self.full)
            if row is None:
                continue
            pid = kid.pid
            if pid not in self.labels:
                self.labels[pid] = describe(kid)
                try:
                    self.created[pid] = kid.create_time()
                except psutil.Error:
                    self.created[pid] = t_start_epoch
                # Started inside the window: all of its CPU time belongs to the window.
                born_inside = self.created[pid] > t_start_epoch
                self.first_cpu[pid] = 0.0 if born_inside else row["cpu_s"]
            self.last_cpu[pid] = row["cpu_s"]
            self.rss.setdefault(pid, []).append(row["rss"])
            if row.get("uss") is not None:
                self.uss.setdefault(pid, []).append(row["uss"])
            row["program"] = self.labels[pid]
            children.append(row)
        return {
            "root": root,
            "children": children,
            "children_rss": sum(c["rss"] for c in children),
            "children_uss": sum(c.get("uss") or 0 for c in children) if self.full else None,
        }


def mean(values: list[float]) -> float | None:
    """Mean, or None for no values."""
    return statistics.fmean(values) if values else None


def summarize(samples: list[dict[str, Any]], key: str, sampler: TreeSampler) -> dict[str, Any]:
    """Peak/mean RSS and mean CPU of the root, and of the children, over the window."""
    window_s = samples[-1]["t"] - samples[0]["t"]
    roots = [s[key]["root"] for s in samples if s[key]["root"] is not None]
    root_cpu = (roots[-1]["cpu_s"] - roots[0]["cpu_s"]) / window_s if len(roots) > 1 else None
    root = {
        "pid": sampler.root.pid,
        "samples": len(roots),
        "rss_peak_mb": max(r["rss"] for r in roots) / MB if roots else None,
        "rss_mean_mb": mean([r["rss"] / MB for r in roots]),
        "rss_first_mb": roots[0]["rss"] / MB if roots else None,
        "rss_last_mb": roots[-1]["rss"] / MB if roots else None,
        "cpu_seconds": roots[-1]["cpu_s"] - roots[0]["cpu_s"] if len(roots) > 1 else None,
        "cpu_mean_percent": 100 * root_cpu if root_cpu is not None else None,
    }
    ussed = [r["uss"] for r in roots if r.get("uss") is not None]
    if ussed:
        root["uss_peak_mb"] = max(ussed) / MB
        root["uss_mean_mb"] = statistics.fmean(ussed) / MB
        root["pss_mean_mb"] = mean([r["pss"] / MB for r in roots if r.get("pss") is not None])
        root["threads_min"] = min(r["threads"] for r in roots)
        root["threads_max"] = max(r["threads"] for r in roots)
    per_process = []
    for pid, name in sampler.labels.items():
        cpu = sampler.last_cpu[pid] - sampler.first_cpu[pid]
        entry: dict[str, Any] = {
            "pid": pid,
            "program": name,
            "samples": len(sampler.rss[pid]),
            "rss_peak_mb": max(sampler.rss[pid]) / MB,
            "rss_mean_mb": statistics.fmean(sampler.rss[pid]) / MB,
            "cpu_seconds": cpu,
            "cpu_mean_percent": 100 * cpu / window_s,
        }
        if sampler.uss.get(pid):
            entry["uss_mean_mb"] = statistics.fmean(sampler.uss[pid]) / MB
        per_process.append(entry)
    child_rss = [s[key]["children_rss"] / MB for s in samples]
    children: dict[str, Any] = {
        "processes": per_process,
        "rss_peak_mb": max(child_rss) if child_rss else None,
        "rss_mean_mb": mean(child_rss),
        "cpu_mean_percent": sum(p["cpu_mean_percent"] for p in per_process),
    }
    if sampler.full:
        children["uss_mean_mb"] = mean([s[key]["children_uss"] / MB for s in samples])
    return {"window_s": window_s, "self": root, "children": children}


def sample_window(
    agent_pid: int, coordinator_pid: int, seconds: float, interval_s: float = 1.0
) -> dict[str, Any]:
    """Sample the agent tree (and the coordinator tree, lightly) every ``interval_s``."""
    agent = TreeSampler(agent_pid, full=True)
    coordinator = TreeSampler(coordinator_pid, full=False)
    me = psutil.Process()
    samples: list[dict[str, Any]] = []
    foreign_seen: set[str] = set()
    t_epoch = time.time()
    t0 = time.monotonic()
    sys0 = _system_cpu()
    me0 = cpu_seconds(me)
    n = round(seconds / interval_s)
    for i in range(n + 1):
        target = t0 + i * interval_s
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        sample: dict[str, Any] = {
            "t": now - t0,
            "agent": agent.sample(t_epoch),
            "coordinator": coordinator.sample(t_epoch),
        }
        samples.append(sample)
        if i % 5 == 0:
            foreign_seen.update(flower_processes(own_pids()))
        if sample["agent"]["root"] is None:
            print("  the agent exited during the window", flush=True)
            break
    sys1 = _system_cpu()
    busy = 1.0 - (sys1[1] - sys0[1]) / max(sys1[0] - sys0[0], 1e-9)
    # Per-sample CPU % of the agent, for the raw record.
    prev = None
    for s in samples:
        root = s["agent"]["root"]
        if root is not None and prev is not None:
            dt = s["t"] - prev[0]
            root["cpu_percent"] = 100 * (root["cpu_s"] - prev[1]) / dt if dt > 0 else None
        if root is not None:
            prev = (s["t"], root["cpu_s"])
    return {
        "samples": samples,
        "agent": summarize(samples, "agent", agent),
        "coordinator": summarize(samples, "coordinator", coordinator),
        "observer_cpu_percent": 100 * (cpu_seconds(me) - me0) / max(samples[-1]["t"], 1e-9),
        "system_cpu_busy_during": round(busy, 3),
        "foreign_flower_processes_during": sorted(foreign_seen),
        "agent_pids": [agent_pid, *agent.labels],
    }


# ----------------------------------------------------------------------------- extras


def import_ladder() -> dict[str, Any]:
    """RSS of a fresh interpreter after each (cumulative) import the agent makes."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_LADDER],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        data: dict[str, Any] = json.loads(out.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    previous = 0
    for step in data["steps"]:
        rss = step.pop("rss")
        step["rss_mb"] = round(rss / MB, 2)
        step["delta_mb"] = round((rss - previous) / MB, 2)
        previous = rss
    return data


def time_probe(repeat: int, workdir: Path) -> dict[str, Any]:
    """Wall time of ``fl-edge-agent probe --json``, or why it could not be measured."""
    try:
        check = subprocess.run(
            [sys.executable, "-c", PROBE_CHECK],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        module = json.loads(check.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        module = {"module": False, "has_class": False, "error": f"{type(exc).__name__}: {exc}"}
    result: dict[str, Any] = {"capability_probe_module": module, "available": False, "runs": []}
    if not (module["module"] and module["has_class"]):
        result["reason"] = "fl_edge_agent.capability_probe.CapabilityProbe not found"
        return result
    argv = [program("fl-edge-agent"), "probe", "--json"]
    result["command"] = argv
    env = {**os.environ, "HOME": str(workdir)}
    for i in range(repeat):
        foreign = flower_processes(own_pids())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys0 = _system_cpu()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=120, cwd=workdir, env=env
            )
        except subprocess.TimeoutExpired:
            result["runs"].append({"wall_s": time.perf_counter() - t0, "error": "timeout 120 s"})
            continue
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys1 = _system_cpu()
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        # CPU seconds the rest of the machine used meanwhile, as a share of all cores.
        busy_s = (sys1[0] - sys0[0]) - (sys1[1] - sys0[1])
        other_busy = max(busy_s - cpu, 0.0) / max(sys1[0] - sys0[0], 1e-9)
        if i == 0 and proc.returncode == 2 and "invalid choice" in proc.stderr:
            result["reason"] = "`fl-edge-agent probe` subcommand does not exist yet"
            result["stderr"] = proc.stderr.strip()[-500:]
            return result
        run: dict[str, Any] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "returncode": proc.returncode,
            "foreign_flower_processes_before": foreign,
            "other_cpu_busy_during": round(other_busy, 3),
        }
        if proc.returncode == 0:
            try:
                caps = json.loads(proc.stdout)
                run["probe_errors"] = [e.get("what") for e in caps.get("probe_errors") or []]
                speed = caps.get("speed") or {}
                run["reported"] = {
                    "probe_seconds": caps.get("probe_seconds"),
                    "speed_seconds": speed.get("seconds"),
                    "speed_budget_s": speed.get("budget_s"),
                }
            except (ValueError, AttributeError):
                run["error"] = "stdout is not JSON"
        else:
            run["error"] = proc.stderr.strip()[-500:]
        result["runs"].append(run)
    ok = [r["wall_s"] for r in result["runs"] if r.get("returncode") == 0 and "error" not in r]
    result["available"] = bool(ok)
    if ok:
        result["first_s"] = ok[0]
        result["median_s"] = statistics.median(ok)
        result["max_s"] = max(ok)
    else:
        result["reason"] = "every probe run failed"
    return result


# ----------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def verdict(value: float | None, goal: float) -> str:
    """pass/FAIL against an upper bound, or n/a."""
    if value is None:
        return "n/a"
    return "pass" if value <= goal else "FAIL"


def print_report(result: dict[str, Any]) -> None:
    """Per-process numbers, then the goal table."""
    window = result["window"]
    agent, coord = window["agent"], window["coordinator"]
    me = agent["self"]
    print()
    print(f"idle window: {agent['window_s']:.1f} s, {me['samples']} samples")
    head = (
        f"{'process':<34} {'pid':>7} {'RSS peak':>9} {'RSS mean':>9} {'USS mean':>9} {'CPU %':>7}"
    )
    print(head + "   (MB = 10^6 bytes; CPU % of one core)")
    print(
        f"{'fl-edge-agent run (agent itself)':<34} {me['pid']:>7} {_fmt(me['rss_peak_mb']):>9}"
        f" {_fmt(me['rss_mean_mb']):>9} {_fmt(me.get('uss_mean_mb')):>9}"
        f" {_fmt(me['cpu_mean_percent'], '.2f'):>7}"
    )
    for p in agent["children"]["processes"]:
        print(
            f"{'  child: ' + p['program']:<34} {p['pid']:>7} {p['rss_peak_mb']:>9.1f}"
            f" {p['rss_mean_mb']:>9.1f} {_fmt(p.get('uss_mean_mb')):>9}"
            f" {p['cpu_mean_percent']:>7.2f}"
        )
    kids = agent["children"]
    print(
        f"{'  children, summed':<34} {'':>7} {_fmt(kids['rss_peak_mb']):>9}"
        f" {_fmt(kids['rss_mean_mb']):>9} {_fmt(kids.get('uss_mean_mb')):>9}"
        f" {_fmt(kids['cpu_mean_percent'], '.2f'):>7}"
    )
    ctree_rss = (coord["self"]["rss_mean_mb"] or 0) + (coord["children"]["rss_mean_mb"] or 0)
    ctree_cpu = (coord["self"]["cpu_mean_percent"] or 0) + coord["children"]["cpu_mean_percent"]
    print(
        f"{'(context) coordinator tree':<34} {'':>7} {'':>9} {ctree_rss:>9.1f} {'':>9}"
        f" {ctree_cpu:>7.2f}"
    )
    print(
        f"agent RSS first/last sample {_fmt(me['rss_first_mb'])}/{_fmt(me['rss_last_mb'])} MB,"
        f" threads {me.get('threads_min')}..{me.get('threads_max')},"
        f" agent age at window start {result['agent_age_at_window_start_s']:.0f} s"
    )
    print(
        f"agent VmHWM (peak RSS since start): {_fmt(result['agent_vmhwm_mb'])} MB; "
        f"observer (this script) CPU {window['observer_cpu_percent']:.2f} %; "
        f"machine CPU busy during window {window['system_cpu_busy_during']:.0%}"
        f" ({window['other_cpu_busy_during']:.0%} not from the fleet)"
    )
    torch_info = result["torch_check"]["agent"]
    print(
        f"libtorch mapped into the agent: {torch_info.get('libtorch_mapped')} "
        f"({torch_info.get('torch_files_mapped')} torch files of "
        f"{torch_info.get('mapped_files')} mapped files)"
    )
    probe = result["probe"]
    if probe["available"]:
        print(f"probe: {' '.join(Path(a).name for a in probe['command'])}")
        for r in probe["runs"]:
            if "cpu_s" not in r:
                print(f"  wall {r['wall_s']:.2f} s: {r.get('error')}")
                continue
            rep = r.get("reported") or {}
            print(
                f"  wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, rc {r['returncode']}"
                f" (machine {r['other_cpu_busy_during']:.0%} busy with other work);"
                f" self-reported probe_seconds {rep.get('probe_seconds')},"
                f" speed {rep.get('speed_seconds')} s of budget {rep.get('speed_budget_s')} s;"
                f" probe_errors: {', '.join(r.get('probe_errors') or []) or 'none'}"
            )
    else:
        print(f"probe: not available ({probe.get('reason')})")

    print()
    print(f"{'goal':<38} {'measured':>10} {'limit':>8}  verdict")
    rows = [
        ("agent RSS peak (MB)", me["rss_peak_mb"], GOAL_AGENT_RSS_MB),
        ("agent RSS mean (MB)", me["rss_mean_mb"], GOAL_AGENT_RSS_MB),
        (
            "agent idle CPU mean (% of one core)",
            me["cpu_mean_percent"],
            GOAL_AGENT_IDLE_CPU_PERCENT,
        ),
        ("probe wall time, max of runs (s)", probe.get("max_s"), GOAL_PROBE_S),
    ]
    for name, value, goal in rows:
        shown = _fmt(value, ".2f") if value is not None else "n/a"
        print(f"{name:<38} {shown:>10} {goal:>8.1f}  {verdict(value, goal)}")
    quiet = result["quiet"]
    foreign = quiet["foreign_processes_before"] + window["foreign_flower_processes_during"]
    print(
        "other Flower/platform processes before/during the window: "
        + (", ".join(sorted(set(foreign))) if foreign else "none")
    )
    if result["disturbed"]:
        print(
            "WARNING: the machine was not quiet (other Flower processes or CPU busy >= 25 % "
            "apart from the fleet); see the JSON"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window length (60)")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="wait after the device is online (5)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument(
        "--probe-wait",
        type=float,
        default=180.0,
        metavar="S",
        help="wait up to S s for the agent's start-up probe child to end (180)",
    )
    parser.add_argument("--probe-repeat", type=int, default=3, help="probe runs to time (3)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=300.0,
        metavar="S",
        help="first wait up to S s for no other Flower processes and idle CPUs (300)",
    )
    parser.add_argument(
        "--keep-dirs", action="store_true", help="keep the temporary state/log directory"
    )
    args = parser.parse_args(argv)
    if args.seconds < 2:
        parser.error("--seconds must be >= 2")

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    machine = machine_info()
    print(f"machine: {json.dumps(machine)}", flush=True)
    source = source_info()
    print(
        f"source: {source['commit'][:12]}, {len(source['uncommitted'])} uncommitted files "
        "under edge_agent/src and shared/src",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="agent-footprint-"))
    started = datetime.now(UTC)
    result: dict[str, Any] = {}
    error: str | None = None
    try:
        print("checking for a quiet machine ...", flush=True)
        result["quiet"] = quiet = wait_for_quiet(
            lambda: flower_processes(own_pids()), args.wait_quiet
        )
        print(
            f"  other Flower/platform processes: "
            f"{', '.join(quiet['foreign_processes_before']) or 'none'}; "
            f"cpu busy {quiet['cpu_busy_before']:.0%}",
            flush=True,
        )
        fleet = LocalFleet(base)
        try:
            print(f"starting coordinator + 1 agent (logs: {base / 'logs'}) ...", flush=True)
            t_start = time.monotonic()
            fleet.start_coordinator()
            agent = fleet.start_agent(0, 1)
            fleet.wait_devices_online(1)
            result["agent_online_after_s"] = time.monotonic() - t_start
            coordinator_pid = fleet.coordinator.pid if fleet.coordinator else None
            if agent.pid is None or coordinator_pid is None:
                raise RuntimeError("the agent or the coordinator has no pid")
            print("waiting for the agent's start-up capability probe (if any) ...", flush=True)
            result["startup_probe"] = startup = wait_startup_probe(agent.pid, args.probe_wait)
            for child in startup["probe_children"]:
                print(
                    f"  start-up probe child {child['pid']} ({child['program']}): seen for "
                    f"{child['last_seen_s'] - child['first_seen_s']:.1f} s, "
                    f"peak RSS {child['rss_peak_mb']:.0f} MB",
                    flush=True,
                )
            time.sleep(args.settle)
            age = time.time() - psutil.Process(agent.pid).create_time()
            result["agent_age_at_window_start_s"] = age
            print(f"sampling the idle agent (pid {agent.pid}) for {args.seconds:.0f} s ...")
            window = sample_window(agent.pid, coordinator_pid, args.seconds)
            result["window"] = window
            # Busy share of the machine not explained by the fleet and this script.
            fleet_cpu = (
                (window["agent"]["self"]["cpu_mean_percent"] or 0)
                + window["agent"]["children"]["cpu_mean_percent"]
                + (window["coordinator"]["self"]["cpu_mean_percent"] or 0)
                + window["coordinator"]["children"]["cpu_mean_percent"]
                + window["observer_cpu_percent"]
            ) / 100
            other_busy = window["system_cpu_busy_during"] - fleet_cpu / (os.cpu_count() or 1)
            window["other_cpu_busy_during"] = round(other_busy, 3)
            result["disturbed"] = bool(
                quiet["foreign_processes_before"]
                or window["foreign_flower_processes_during"]
                or other_busy >= 0.25
            )
            hwm = read_status_kib(agent.pid, "VmHWM")
            result["agent_vmhwm_mb"] = hwm * 1024 / MB if hwm is not None else None
            result["torch_check"] = {"agent": torch_mappings(agent.pid)}
            for p in window["agent"]["children"]["processes"]:
                result["torch_check"][f"{p['program']} ({p['pid']})"] = torch_mappings(p["pid"])
            result["agent_mappings"] = mapping_groups(agent.pid)
        finally:
            fleet.stop()
        print("import ladder (fresh interpreter) ...", flush=True)
        result["import_ladder"] = import_ladder()
        print("timing the capability probe ...", flush=True)
        result["probe"] = time_probe(args.probe_repeat, base)
    except Exception as exc:  # noqa: BLE001 - reported below, partial results still written
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep_dirs or error is not None:
            print(f"state and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    if error is None:
        print_report(result)
        ladder = result["import_ladder"]
        if "steps" in ladder:
            print("\nimport ladder (RSS of a fresh interpreter, cumulative):")
            for step in ladder["steps"]:
                extra = ", ".join(step["new_packages"])
                extra = f"  also loads: {extra}" if extra else ""
                if step.get("error"):
                    extra = f"  not importable: {step['error']}"
                print(
                    f"  {step['step']:<52} {step['rss_mb']:>6.1f} MB"
                    f"  (+{step['delta_mb']:.1f}){extra}"
                )
            print(f"  heavy modules loaded: {', '.join(ladder['heavy_modules_loaded']) or 'none'}")
        print("\nagent RSS by mapping (largest first):")
        for row in result["agent_mappings"][:8]:
            print(f"  {row['mapping']:<46} {row['rss_mb']:>6.1f} MB")

    payload = {
        "benchmark": "agent_footprint",
        "started_at": started.isoformat(),
        "command": " ".join(["python", "bench/agent_footprint.py", *(argv or sys.argv[1:])]),
        "units": {"memory": "MB = 10^6 bytes", "cpu": "percent of one core"},
        "goals": {
            "agent_rss_mb": GOAL_AGENT_RSS_MB,
            "agent_idle_cpu_percent": GOAL_AGENT_IDLE_CPU_PERCENT,
            "probe_s": GOAL_PROBE_S,
        },
        "machine": machine,
        "source": source,
        "settings": {
            "seconds": args.seconds,
            "settle_s": args.settle,
            "interval_s": 1.0,
            "probe_wait_s": args.probe_wait,
            "probe_repeat": args.probe_repeat,
        },
        **result,
        "error": error,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    if error is not None:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
