"""The arm64 agent package in an arm64 Debian root under qemu: its extensions load, probe runs."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.system import arm64_root
from tests.system.arm64_root import EM_AARCH64, resolve_in_root, run_emulated

pytestmark = pytest.mark.system

PACKAGE = "fl-edge-agent"
VENV = f"/opt/{PACKAGE}"
SITE_PACKAGES = "lib/python3.11/site-packages"
# The CPython ABI tags an aarch64 extension module may carry.
EXTENSION_SUFFIXES = (".cpython-311-aarch64-linux-gnu.so", ".abi3.so")
# (host program, apt package): what building and entering the root needs.
TOOLS = (
    ("debootstrap", "debootstrap"),
    ("dpkg-deb", "dpkg"),
    ("chroot", "coreutils"),
    ("tar", "tar"),
    ("python3.11", "python3.11"),
    (arm64_root.QEMU, arm64_root.QEMU_APT_PACKAGE),
)
# Run in the root's Python, with {"libraries": [...], "packages": [...]} on stdin: dlopen every
# shared object (RTLD_NOW: every symbol must resolve, as it does at import), then import every
# top-level package that has compiled code; report what failed, as JSON. dlopen proves each
# library links on aarch64 without paying for each Python module's own initialisation; the
# package imports run the extensions' init code the way the agent's own imports do.
LOAD_ALL = """
import ctypes, importlib, json, platform, sys, time
todo = json.load(sys.stdin)
started = time.monotonic()
dlopen_failed, import_failed = {}, {}
for path in todo["libraries"]:
    try:
        ctypes.CDLL(path)
    except OSError as exc:
        dlopen_failed[path] = str(exc)
dlopen_s = time.monotonic() - started
for name in todo["packages"]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        import_failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"machine": platform.machine(), "prefix": sys.prefix,
                  "dlopen_failed": dlopen_failed, "import_failed": import_failed,
                  "dlopen_s": round(dlopen_s, 1),
                  "import_s": round(time.monotonic() - started - dlopen_s, 1)}))
"""
# Probe sections that must work on any arm64 device; the rest (nvidia-smi, torch, a
# coordinator to time) is legitimately absent here.
MUST_NOT_FAIL = ("identity", "memory", "disk", "onnxruntime", "speed.onnx")


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (what a loaded host does not skew)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _elapsed(label: str, started: tuple[float, float]) -> None:
    wall, cpu = started
    print(f"{label}: {time.monotonic() - wall:.1f} s ({_cpu_s() - cpu:.1f} s CPU)")


def _now() -> tuple[float, float]:
    """Wall-clock and CPU seconds now, for ``_elapsed``."""
    return time.monotonic(), _cpu_s()


@pytest.fixture(scope="module")
def arm64_root_with_agent(
    built_arm64_deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A fresh arm64 root holding the arm64 agent's files, mounted for emulation; removed after."""
    if os.geteuid() != 0:
        pytest.fail("the arm64 system test needs root (chroot, mounts)", pytrace=False)
    missing = [f"{tool} (apt package {apt})" for tool, apt in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the arm64 system test needs {', '.join(missing)}", pytrace=False)
    include = arm64_root.deb_depends(built_arm64_deb)
    started = _now()
    tarball = arm64_root.ensure_cached_root(include)
    _elapsed(f"\ncached arm64 root {tarball.name} ({tarball.stat().st_size >> 20} MiB)", started)
    started = _now()
    with arm64_root.fresh_root(tmp_path_factory.mktemp("arm64"), include) as root:
        _elapsed("restored arm64 root (tmpfs)", started)
        started = _now()
        arm64_root.install_files(root, built_arm64_deb)
        _elapsed(f"unpacked {built_arm64_deb.name}", started)
        # The package ships its byte code (compiled at build time: .pyc files depend on the
        # Python version, not the CPU), so emulated imports compile nothing.
        site = root / VENV.lstrip("/") / SITE_PACKAGES
        assert next(site.glob("fl_edge_agent/__pycache__/cli.cpython-311.pyc"), None), site
        with arm64_root.emulated(root):
            yield root
        started = _now()
    _elapsed("removed arm64 root", started)


def _elf_files(tree: Path) -> dict[Path, int]:
    """Every regular ELF file under ``tree`` (symlinks not followed) and its e_machine."""
    found = {}
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            machine = arm64_root.elf_machine(path)
            if machine is not None:
                found[path] = machine
    return found


def _extension_modules(site: Path) -> list[str]:
    """Dotted names of the compiled extension modules under ``site``, in a stable order."""
    names = []
    for path in sorted(site.rglob("*.so")):
        suffix = next((s for s in EXTENSION_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None:  # a plain shared library (e.g. in numpy.libs/): checked as ELF only
            continue
        parts = path.relative_to(site).parent.parts
        names.append(".".join([*parts, path.name.removesuffix(suffix)]))
    return names


def test_python_and_every_compiled_extension_load_on_aarch64(arm64_root_with_agent: Path) -> None:
    root = arm64_root_with_agent
    venv = root / VENV.lstrip("/")
    site = venv / SITE_PACKAGES

    python = resolve_in_root(root, f"{VENV}/bin/python3")
    assert arm64_root.elf_machine(python) == EM_AARCH64, f"{python} is not an aarch64 program"

    elf = _elf_files(venv)
    wrong = sorted(str(p.relative_to(venv)) for p, m in elf.items() if m != EM_AARCH64)
    assert not wrong, f"{len(wrong)} of {len(elf)} ELF files are not aarch64, e.g. {wrong[:10]}"
    tagged = [p.name for p in site.rglob("*.so") if "x86_64" in p.name or "amd64" in p.name]
    assert not tagged, f"extension modules built for another machine: {tagged[:10]}"

    libraries = sorted(str(p.relative_to(root)) for p in elf if ".so" in p.name)
    packages = sorted({name.split(".")[0] for name in _extension_modules(site)})
    # The ones the agent cannot work without: a packaging change that drops them is a failure.
    for needed in ("numpy", "onnxruntime", "grpc", "pydantic_core", "cryptography", "onnx"):
        assert needed in packages, f"no compiled extension of {needed} in {site}"
    print(f"{len(elf)} ELF files, {len(libraries)} shared objects, {len(packages)} packages")

    started = _now()
    todo = json.dumps({"libraries": [f"/{p}" for p in libraries], "packages": packages})
    done = run_emulated(root, [f"{VENV}/bin/python3", "-c", LOAD_ALL], input=todo)
    _elapsed("dlopen + import under qemu", started)
    report = json.loads(done.stdout)
    print(f"dlopen {report['dlopen_s']} s, imports {report['import_s']} s")
    assert report["machine"] == "aarch64"
    assert report["prefix"] == VENV, "the venv's pyvenv.cfg was not used"
    assert not report["dlopen_failed"], json.dumps(report["dlopen_failed"], indent=1)
    assert not report["import_failed"], json.dumps(report["import_failed"], indent=1)


def test_probe_json_reports_aarch64_and_the_cpu_provider(arm64_root_with_agent: Path) -> None:
    root = arm64_root_with_agent
    entry_point = resolve_in_root(root, f"/usr/bin/{PACKAGE}")
    shebang = entry_point.read_text(encoding="utf-8").splitlines()[0]
    assert shebang == f"#!{VENV}/bin/python3", shebang

    started = _now()
    # What the kernel does for `/usr/bin/fl-edge-agent probe --json` on an arm64 device: run
    # the shebang's interpreter with the script (qemu-user itself does not read shebangs).
    done = run_emulated(root, [shebang[2:], f"/usr/bin/{PACKAGE}", "probe", "--json"])
    _elapsed(f"{PACKAGE} probe --json under qemu", started)
    caps: dict[str, Any] = json.loads(done.stdout)

    assert caps["identity"]["arch"] == "aarch64"
    assert caps["identity"]["python"].startswith("3.11.")
    ort = caps["onnxruntime"]
    assert ort["version"], ort
    assert "CPUExecutionProvider" in ort["compiled_providers"], ort
    assert "CPUExecutionProvider" in ort["verified_providers"], ort
    speed = caps["speed"]
    assert speed["onnx_provider"] == "CPUExecutionProvider", speed
    assert speed["onnx_infer_samples_per_s"] and speed["onnx_infer_samples_per_s"] > 0, speed
    errors = {e["what"]: e["error"] for e in caps["probe_errors"]}
    broken = {what: error for what, error in errors.items() if what in MUST_NOT_FAIL}
    assert not broken, broken
    print(f"probe errors (expected here): {errors}")
