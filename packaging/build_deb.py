"""Build the fl-edge-agent (amd64, arm64) and fl-coordinator (amd64) .debs: a venv in /opt, nfpm."""

from __future__ import annotations

import argparse
import configparser
import email.utils
import gzip
import os
import re
import shutil
import string
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "packaging" / "deb"
UNITS = ROOT / "packaging" / "systemd"
# Everything below build/ and dist/ is git-ignored. The wheel cache survives builds (a second
# build installs offline from it); the rest is remade every time.
WORK = ROOT / "build" / "deb"
CACHE = ROOT / "build" / "deb-cache"
DIST = ROOT / "dist" / "deb"

PYTHON = "python3.11"
SITE_PACKAGES = f"lib/{PYTHON}/site-packages"
DEBIAN_REVISION = "1"
MAINTAINER = "FL Fleet Platform Team <fl-fleet@example.org>"
HOMEPAGE = "https://github.com/example/fl-fleet"
# The ML runtime comes from the platform (a CPU torch via pip --target, JetPack's torch on
# Jetson), never from the package: see docs/packaging.md.
NOT_BUNDLED = frozenset({"torch"})
# Wheels for glibc 2.28 and older: Debian 10+, Ubuntu 20.04+ (Jetson's L4T included).
MANYLINUX = ("manylinux2014", *(f"manylinux_2_{minor}" for minor in range(17, 29)))
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
# Packages build in parallel (pip, byte code and nfpm's gzip are single-threaded); the wheel
# cache of an architecture is filled by one build at a time.
CACHE_LOCKS = {arch: threading.Lock() for arch in MACHINES}
# System libraries that manylinux wheels may link against, and the Debian package of each;
# every other library a wheel needs, it bundles (auditwheel's *.libs directories).
LIBC = "libc6 (>= 2.28)"
SYSTEM_LIBRARIES = {
    "libc.so.6": LIBC,
    "libm.so.6": LIBC,
    "libpthread.so.0": LIBC,
    "libdl.so.2": LIBC,
    "librt.so.1": LIBC,
    "libutil.so.1": LIBC,
    "libresolv.so.2": LIBC,
    "ld-linux-x86-64.so.2": LIBC,
    "ld-linux-aarch64.so.1": LIBC,
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libz.so.1": "zlib1g",
}


@dataclass(frozen=True)
class DebPackage:
    """One Debian package: which projects it installs and what it exposes."""

    name: str
    project: str
    extras: tuple[str, ...]
    arches: tuple[str, ...]
    commands: tuple[str, ...]
    config: str


PACKAGES = (
    DebPackage("fl-edge-agent", "edge_agent", (), ("amd64", "arm64"), ("fl-edge-agent",), "agent"),
    DebPackage(
        "fl-coordinator", "coordinator", ("postgres",), ("amd64",), ("fl-coordinator", "flctl"),
        "coordinator",
    ),
)  # fmt: skip


def run(argv: list[str], **kwargs: object) -> None:
    """Run a command, echoing it; raise on failure."""
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def version() -> str:
    """The release number from the repository's VERSION file."""
    return (ROOT / "VERSION").read_text(encoding="utf-8").strip()


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirement_extras(requirement: str) -> list[str]:
    """The extras named in a requirement, e.g. ``fl-shared[train]==0.1.*`` -> ``["train"]``."""
    match = re.search(r"\[([^\]]*)\]", requirement)
    return [e.strip() for e in match.group(1).split(",")] if match else []


def project_table(project: str) -> dict[str, object]:
    """The [project] table of a project's pyproject.toml."""
    with (ROOT / project / "pyproject.toml").open("rb") as fh:
        table: dict[str, object] = tomllib.load(fh)["project"]
    return table


def dependencies(project: str, extras: Iterable[str]) -> list[str]:
    """A project's requirements with the given extras."""
    table = project_table(project)
    optional: dict[str, list[str]] = table.get("optional-dependencies", {})  # type: ignore[assignment]
    found: list[str] = list(table.get("dependencies", []))  # type: ignore[call-overload]
    for extra in extras:
        found += optional[extra]
    return found


def third_party_requirements(package: DebPackage) -> list[str]:
    """What pip resolves for the package: its deps and fl-shared's, minus ours and torch."""
    wanted: list[str] = []
    for requirement in dependencies(package.project, package.extras):
        if requirement_name(requirement) == "fl-shared":
            wanted += dependencies("shared", requirement_extras(requirement))
        else:
            wanted.append(requirement)
    kept = [r for r in wanted if requirement_name(r) not in NOT_BUNDLED]
    return list(dict.fromkeys(kept))


def platform_flags(arch: str) -> list[str]:
    """pip flags that select CPython 3.11 wheels for a Debian architecture."""
    flags = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
    for tag in MANYLINUX:
        flags += ["--platform", f"{tag}_{MACHINES[arch]}"]
    return flags


def build_project_wheels(out: Path) -> dict[str, Path]:
    """Build the three project wheels from clean copies (no stale build/ dir can leak in)."""
    src = WORK / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    projects = ("shared", "coordinator", "edge_agent")
    for project in projects:
        # symlinks=False copies the VERSION symlink's target, the root VERSION file.
        shutil.copytree(ROOT / project, src / project, ignore=ignore, symlinks=False)
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), *(str(src / p) for p in projects)]
    )  # fmt: skip
    return {p: next(out.glob(f"fl_{p}-*.whl")) for p in projects}


def install_dependencies(package: DebPackage, arch: str, site: Path) -> None:
    """pip install --target for the target platform, offline from the cache when it can."""
    cache = CACHE / arch
    cache.mkdir(parents=True, exist_ok=True)
    req_file = WORK / f"requirements-{package.name}-{arch}.txt"
    requirements = third_party_requirements(package)
    req_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip"]
    install = [
        *pip, "install", "--quiet", "--no-compile", "--target", str(site), *platform_flags(arch),
        "--no-index", "--find-links", str(cache), "-r", str(req_file),
    ]  # fmt: skip
    try:
        run(install, stderr=subprocess.DEVNULL)
        return
    except subprocess.CalledProcessError:
        print(f"wheel cache {cache} incomplete: downloading", flush=True)
    run([*pip, "download", "--quiet", "--dest", str(cache), *platform_flags(arch), "-r",
         str(req_file)])  # fmt: skip
    run(install)


def console_scripts(site: Path) -> Iterator[tuple[str, str]]:
    """(command, "module:function") for every console script in site-packages."""
    for entry_points in sorted(site.glob("*.dist-info/entry_points.txt")):
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(entry_points, encoding="utf-8")
        if parser.has_section("console_scripts"):
            for name, target in parser.items("console_scripts"):
                yield name, target.split("[")[0].strip()


def write_console_script(path: Path, target: str, python: str) -> None:
    """A console script like pip's, with the venv's interpreter in the shebang."""
    module, _, function = target.partition(":")
    head = function.split(".")[0]
    path.write_text(
        f"#!{python}\n"
        "import sys\n"
        f"from {module} import {head}\n"
        'if __name__ == "__main__":\n'
        f"    sys.exit({function}())\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


def move_other_scripts(source: Path, bin_dir: Path, skip: set[str], python: str) -> None:
    """Move what wheels ship as scripts (uv's binary) from pip's target bin to the venv's."""
    if not source.is_dir():
        return
    for path in sorted(source.iterdir()):
        if path.name not in skip and path.is_file():
            moved = bin_dir / path.name
            shutil.move(path, moved)
            head = moved.read_bytes()[:200]
            if head.startswith(b"#!") and b"python" in head.split(b"\n")[0]:
                # pip wrote this machine's interpreter there.
                rest = moved.read_bytes().split(b"\n", 1)[1]
                moved.write_bytes(f"#!{python}\n".encode() + rest)
            moved.chmod(0o755)
    # The console scripts pip wrote there (with the wrong interpreter) are remade.
    shutil.rmtree(source)


def make_venv(package: DebPackage, prefix: Path) -> None:
    """Turn prefix (staged /opt/<pkg>) into a venv of Debian's python3.11 with its scripts."""
    site = prefix / SITE_PACKAGES
    opt = Path("/opt") / package.name
    (prefix / "pyvenv.cfg").write_text(
        "home = /usr/bin\n"
        # True: JetPack's system-wide torch (and CUDA bindings) are visible on Jetson.
        "include-system-site-packages = true\n"
        "version = 3.11\n"
        f"executable = /usr/bin/{PYTHON}\n",
        encoding="utf-8",
    )
    # A separately installed torch (docs/packaging.md) goes after the venv, before the system.
    (site / f"{package.name}-torch.pth").write_text(
        f"/usr/local/lib/{package.name}/python\n", encoding="utf-8"
    )
    bin_dir = prefix / "bin"
    bin_dir.mkdir()
    scripts = dict(console_scripts(site))
    move_other_scripts(site / "bin", bin_dir, set(scripts), f"{opt}/bin/python3")
    (bin_dir / "python3").symlink_to(f"/usr/bin/{PYTHON}")
    (bin_dir / "python").symlink_to("python3")
    (bin_dir / PYTHON).symlink_to("python3")
    for name, target in scripts.items():
        write_console_script(bin_dir / name, target, f"{opt}/bin/python3")
    for command in package.commands:
        if not (bin_dir / command).is_file():
            raise RuntimeError(f"{package.name}: no console script {command}")


def is_program(path: Path) -> bool:
    """An executable program: a script, or an ELF file that is not a shared library."""
    head = path.read_bytes()[:4]
    return head.startswith(b"#!") or (head == b"\x7fELF" and ".so" not in path.name)


def upstream_test_suites(site: Path) -> list[Path]:
    """The test suites wheels ship inside their packages (``numpy/tests``, ``scipy/*/tests``)."""
    found = [
        path
        for name in ("tests", "test")
        for path in site.glob(f"*/**/{name}")
        if path.is_dir() and not path.parent.name.endswith((".dist-info", ".libs"))
    ]
    # Outermost only: a suite inside another is removed with it.
    return sorted(p for p in found if not any(q in p.parents for q in found))


def prune(site: Path) -> None:
    """Drop byte code, upstream test suites and direct_url.json; fix file modes.

    The test suites are a quarter of the files (~50 MB): nothing imports them at run time, and
    every file costs byte-compiling at install and a look by lintian.
    """
    removed = [path.relative_to(site).as_posix() + "/" for path in upstream_test_suites(site)]
    for suite in removed:
        shutil.rmtree(site / suite)
    for path in site.rglob("*"):
        # Python imports modules and extensions without the x bit; wheels set it at random.
        executable = path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o111
        if executable and not is_program(path):
            path.chmod(0o644)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    for stray in [*site.rglob("*.pyc"), *site.glob("*.dist-info/direct_url.json")]:
        stray.unlink()
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines()
        kept = [
            line
            for line in lines
            if "direct_url.json" not in line
            and "../bin/" not in line
            and not line.startswith(tuple(removed))
        ]
        record.write_text("\n".join(kept) + "\n", encoding="utf-8")


def compile_byte_code(root: Path, site: Path) -> None:
    """Ship byte code, compiled here once, instead of compiling on every device at install.

    Byte code depends on the Python version only, not on the CPU, so the amd64 build machine
    compiles the arm64 package's too. ``unchecked-hash`` .pyc files are used without looking at
    the source's time stamp (nfpm does not keep it) and are never rewritten; tracebacks name
    the installed paths (``-s``/``-p``).
    """
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError(f"byte code for {PYTHON} must be compiled by it, not {sys.version}")
    run([sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode",
         "unchecked-hash", "-s", str(root), "-p", "/", str(site)])  # fmt: skip


def check_no_bundled_ml_runtime(site: Path) -> None:
    """Fail when torch (or NVIDIA's CUDA wheels) slipped into site-packages."""
    found = [p.name for p in site.iterdir() if p.name.split("-")[0] in ("torch", "nvidia")]
    if found:
        raise RuntimeError(f"bundled what must come from the platform: {found}")


def distributions(site: Path) -> list[tuple[str, str, str]]:
    """(name, version, license) of every distribution in site-packages."""
    found = []
    for metadata in sorted(site.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        licence = headers.get("License-Expression") or ""
        if not licence:
            classifiers = headers.get_all("Classifier") or []
            licence = "; ".join(c.split(" :: ")[-1] for c in classifiers if c.startswith("License"))
        if not licence:
            licence = (headers.get("License") or "see its dist-info").splitlines()[0][:60]
        found.append((headers["Name"], headers["Version"], licence))
    return found


def needed_libraries(path: Path) -> list[str]:
    """The DT_NEEDED entries of an ELF file (readelf reads any architecture)."""
    out = subprocess.run(
        ["readelf", "--dynamic", "--wide", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def library_depends(site: Path) -> list[str]:
    """Debian packages for the system libraries the bundled extensions link against."""
    shared_objects = [p for p in site.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    bundled = {p.name for p in shared_objects}
    depends: set[str] = set()
    unknown: set[str] = set()
    for path in shared_objects:
        if path.read_bytes()[:4] != b"\x7fELF":
            continue
        for library in needed_libraries(path):
            if library in SYSTEM_LIBRARIES:
                depends.add(SYSTEM_LIBRARIES[library])
            elif library not in bundled:
                unknown.add(f"{library} ({path.relative_to(site)})")
    if unknown:
        raise RuntimeError(f"no Debian package known for: {sorted(unknown)}")
    return sorted(depends)


def copyright_file(package: DebPackage, site: Path) -> str:
    """debian/copyright in the machine-readable format (DEP-5)."""
    template = (TEMPLATES / "copyright").read_text(encoding="utf-8")
    listing = "\n".join(
        f" {name} {ver}: {licence}"
        for name, ver, licence in distributions(site)
        if not name.startswith("fl-")
    )
    return string.Template(template).substitute(
        PACKAGE=package.name,
        MAINTAINER=MAINTAINER,
        HOMEPAGE=HOMEPAGE,
        SITE=f"opt/{package.name}/{SITE_PACKAGES}",
        BUNDLED=listing,
    )


def release_date() -> str:
    """RFC 2822 date of the last commit, so that rebuilding gives the same changelog."""
    try:
        stamp = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        seconds = float(stamp)
    except (OSError, subprocess.CalledProcessError, ValueError):
        seconds = time.time()
    return email.utils.formatdate(seconds, usegmt=False)


def changelog(package: DebPackage, deb_version: str) -> bytes:
    """changelog.Debian.gz, compressed like gzip -9n (no name, no time stamp)."""
    text = (
        f"{package.name} ({deb_version}) bookworm; urgency=medium\n\n"
        f"  * Release {version()}.\n\n"
        f" -- {MAINTAINER}  {release_date()}\n"
    )
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def stage(package: DebPackage, arch: str, wheels: dict[str, Path]) -> Path:
    """Stage /opt/<pkg> and the generated files; returns the staging dir."""
    root = WORK / "stage" / f"{package.name}_{arch}"
    shutil.rmtree(root, ignore_errors=True)
    prefix = root / "opt" / package.name
    site = prefix / SITE_PACKAGES
    site.mkdir(parents=True)
    ours = [wheels["shared"], wheels[package.project]]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
         "--target", str(site), *(str(w) for w in ours)])  # fmt: skip
    # Scripts made with this machine's interpreter; make_venv writes the real ones.
    shutil.rmtree(site / "bin")
    with CACHE_LOCKS[arch]:
        install_dependencies(package, arch, site)
    check_no_bundled_ml_runtime(site)
    make_venv(package, prefix)
    prune(site)
    compile_byte_code(root, site)
    extra = root / "extra"
    extra.mkdir()
    (extra / "copyright").write_text(copyright_file(package, site), encoding="utf-8")
    (extra / "changelog.Debian.gz").write_bytes(changelog(package, deb_version()))
    (extra / "depends").write_text("\n".join(library_depends(site)) + "\n", encoding="utf-8")
    return root


def deb_version() -> str:
    """The Debian version: upstream VERSION plus our revision."""
    return f"{version()}-{DEBIAN_REVISION}"


def render_config(package: DebPackage, arch: str, root: Path, unit: Path) -> Path:
    """Fill the package's nfpm template (nfpm does not expand variables in contents.src)."""
    # nfpm reads these while it packs: a snapshot, so an edit in the working tree meanwhile
    # cannot leave a half-written file in the package.
    inputs = root / "inputs"
    shutil.copytree(TEMPLATES / package.name, inputs / "templates")
    shutil.copytree(ROOT / "docs", inputs / "docs")
    shutil.copy2(unit, inputs / unit.name)
    template = (inputs / "templates" / "nfpm.yaml").read_text(encoding="utf-8")
    libraries = (root / "extra" / "depends").read_text(encoding="utf-8").split("\n")
    rendered = string.Template(template).substitute(
        VERSION=version(),
        RELEASE=DEBIAN_REVISION,
        ARCH=arch,
        MAINTAINER=MAINTAINER,
        HOMEPAGE=HOMEPAGE,
        STAGE=str(root),
        TEMPLATES=str(inputs / "templates"),
        UNIT=str(inputs / unit.name),
        DOCS=str(inputs / "docs"),
        DEPENDS="\n".join(f"  - {d}" for d in libraries if d),
    )
    out = root / "nfpm.yaml"
    out.write_text(rendered, encoding="utf-8")
    return out


def nfpm_binary() -> str:
    """nfpm beside this Python (pip install nfpm), else on PATH."""
    beside = Path(sys.executable).parent / "nfpm"
    found = str(beside) if beside.exists() else shutil.which("nfpm")
    if found is None:
        raise RuntimeError("nfpm not found: pip install -r requirements-dev.txt")
    return found


def build(package: DebPackage, arch: str, wheels: dict[str, Path], unit_dir: Path) -> Path:
    """Stage, render and pack one .deb; returns its path."""
    root = stage(package, arch, wheels)
    config = render_config(package, arch, root, unit_dir / f"{package.name}.service")
    DIST.mkdir(parents=True, exist_ok=True)
    target = DIST / f"{package.name}_{version()}_{arch}.deb"
    # Packed under another name, renamed when whole: a reader never sees half a package.
    partial = target.with_name(target.name + ".part")
    run([nfpm_binary(), "package", "--config", str(config), "--packager", "deb",
         "--target", str(partial)])  # fmt: skip
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Build the packages named on the command line (default: all) into dist/deb/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("packages", nargs="*", help="fl-edge-agent, fl-coordinator (default both)")
    parser.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    parser.add_argument(
        "--unit-dir", type=Path, default=UNITS, help="where the <package>.service files are"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="packages built at once (CPUs)"
    )
    args = parser.parse_args(argv)
    chosen = [p for p in PACKAGES if not args.packages or p.name in args.packages]
    started = time.monotonic()
    wheels = build_project_wheels(WORK / "wheels")
    jobs = [
        (package, arch)
        for package in chosen
        for arch in package.arches
        if not args.arch or arch in args.arch
    ]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        built = list(pool.map(lambda job: build(job[0], job[1], wheels, args.unit_dir), jobs))
    for deb in built:
        print(f"{deb.relative_to(ROOT)}  {deb.stat().st_size / 1e6:.1f} MB")
    print(f"built {len(built)} packages in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
