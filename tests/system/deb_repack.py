"""Make a "newer build" of a .deb for upgrade tests: bump its version, optionally change files.

A .deb is an ar archive of ``debian-binary``, ``control.tar.*`` and ``data.tar.*``. A version bump
only rewrites the small control member and copies the data member as it is, so it takes a moment
even for a venv of several hundred MB (``dpkg-deb -R`` + ``-b`` recompresses everything and takes
minutes). Changing a conffile or replacing files streams the data member once, uncompressed on the
way out.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

AR_MAGIC = b"!<arch>\n"
CONFFILE_CHANGE = "\n# packaged default changed in {version}\n"


def _members(fh: BinaryIO) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of each member of an ar archive."""
    if fh.read(8) != AR_MAGIC:
        raise ValueError("not an ar archive (.deb)")
    while header := fh.read(60):
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58])
        offset = fh.tell()
        yield name, offset, size
        fh.seek(offset + size + (size % 2))


def _plain(member: str) -> str:
    """A tar member's path without its leading ``./``."""
    return member.removeprefix("./").lstrip("/")


def _ar_header(name: str, size: int) -> bytes:
    fields = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{size:<10}"
    return fields.encode() + b"`\n"


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of ``fh`` from its current position."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._left = fh, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _new_control(
    control_tar: bytes, version_suffix: str, changed: dict[str, str], version: str | None = None
) -> tuple[bytes, str]:
    """The control member with Version suffixed (or set to ``version``) and md5sums updated for
    ``changed`` files."""
    out = io.BytesIO()
    new_version = ""
    with (
        tarfile.open(fileobj=io.BytesIO(control_tar)) as src,
        tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT) as dst,
    ):
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if data is not None and _plain(info.name) == "control":
                text = data.decode()
                match = re.search(r"^Version: (\S+)$", text, re.M)
                if match is None:
                    raise ValueError("control has no Version field")
                new_version = version or match.group(1) + version_suffix
                data = text.replace(match.group(0), f"Version: {new_version}").encode()
            if data is not None and _plain(info.name) == "md5sums":
                lines = []
                for line in data.decode().splitlines():
                    digest, _, path = line.partition("  ")
                    lines.append(f"{changed.get(path, digest)}  {path}")
                data = ("\n".join(lines) + "\n").encode()
            if data is not None:
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
            else:
                dst.addfile(info)
    return out.getvalue(), new_version


def repack(
    deb: Path,
    dest: Path,
    version_suffix: str = "",
    *,
    version: str | None = None,
    conffile: str | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """A copy of ``deb`` in ``dest`` versioned ``<version><suffix>``, or ``version`` when given.

    With ``conffile`` (an absolute path the package installs), that file's packaged content gets
    a line appended, as when a release changes a default. ``files`` (absolute path the package
    installs → content) replaces those files' content, keeping owner and mode (e.g. a version
    file, or a program that fails on purpose).
    """
    if not version_suffix and not version:
        raise ValueError("a newer build needs a version_suffix or a version")
    replaced = {path.lstrip("/"): content for path, content in (files or {}).items()}
    with deb.open("rb") as fh:
        members = {name: (offset, size) for name, offset, size in _members(fh)}
        control_name = next(n for n in members if n.startswith("control.tar"))
        data_name = next(n for n in members if n.startswith("data.tar"))
        handle, staged_name = tempfile.mkstemp(prefix="data-", suffix=".tar", dir=dest)
        os.close(handle)
        staged_data = Path(staged_name)
        changed: dict[str, str] = {}
        if conffile is not None or replaced:
            fh.seek(members[data_name][0])
            reader = io.BufferedReader(_Window(fh, members[data_name][1]), 1 << 20)
            target = conffile.lstrip("/") if conffile is not None else None
            with (
                tarfile.open(fileobj=reader, mode="r|*") as src,
                tarfile.open(staged_data, "w", format=tarfile.GNU_FORMAT) as dst,
            ):
                for info in src:
                    path = _plain(info.name)
                    if info.isfile() and (path == target or path in replaced):
                        if path in replaced:
                            content = replaced[path]
                        else:
                            content = src.extractfile(info).read()  # type: ignore[union-attr]
                            change = CONFFILE_CHANGE.format(version=version or version_suffix)
                            content += change.encode()
                        changed[path] = hashlib.md5(content).hexdigest()  # noqa: S324
                        info.size = len(content)
                        dst.addfile(info, io.BytesIO(content))
                    elif info.isfile():
                        dst.addfile(info, src.extractfile(info))
                    else:
                        dst.addfile(info)
            missing = sorted({*replaced, *([target] if target else [])} - set(changed))
            if missing:
                staged_data.unlink()
                raise ValueError(f"not files of {deb.name}: {', '.join('/' + m for m in missing)}")
        fh.seek(members[control_name][0])
        control, new_version = _new_control(
            fh.read(members[control_name][1]), version_suffix, changed, version
        )

        name, _, arch = deb.name.split("_")
        out = dest / f"{name}_{new_version}_{arch}"
        with out.open("wb") as dst_fh:
            dst_fh.write(AR_MAGIC)
            for member_name, payload in (("debian-binary", b"2.0\n"), ("control.tar.gz", control)):
                dst_fh.write(_ar_header(member_name, len(payload)) + payload)
                if len(payload) % 2:
                    dst_fh.write(b"\n")
            if changed:
                size = staged_data.stat().st_size
                dst_fh.write(_ar_header("data.tar", size))
                with staged_data.open("rb") as data_fh:
                    shutil.copyfileobj(data_fh, dst_fh, 1 << 20)
            else:
                size = members[data_name][1]
                dst_fh.write(_ar_header(data_name, size))
                fh.seek(members[data_name][0])
                shutil.copyfileobj(_Window(fh, size), dst_fh, 1 << 20)
            if size % 2:
                dst_fh.write(b"\n")
        staged_data.unlink()
    return out
