"""Make a "newer build" of a .deb for upgrade tests: bump its version, optionally change a conffile.

A .deb is an ar archive of ``debian-binary``, ``control.tar.*`` and ``data.tar.*``. A version bump
only rewrites the small control member and copies the data member as it is, so it takes a moment
even for a venv of several hundred MB (``dpkg-deb -R`` + ``-b`` recompresses everything and takes
minutes). Changing a conffile streams the data member once, uncompressed on the way out.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
from collections.abc import Iterator
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
    control_tar: bytes, version_suffix: str, changed: dict[str, str]
) -> tuple[bytes, str]:
    """The control member with Version suffixed and md5sums updated for ``changed`` files."""
    out = io.BytesIO()
    version = ""
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
                version = match.group(1) + version_suffix
                data = text.replace(match.group(0), f"Version: {version}").encode()
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
    return out.getvalue(), version


def repack(deb: Path, dest: Path, version_suffix: str, *, conffile: str | None = None) -> Path:
    """A copy of ``deb`` in ``dest`` versioned ``<version><suffix>``.

    With ``conffile`` (an absolute path the package installs), that file's packaged content gets
    a line appended, as when a release changes a default.
    """
    with deb.open("rb") as fh:
        members = {name: (offset, size) for name, offset, size in _members(fh)}
        control_name = next(n for n in members if n.startswith("control.tar"))
        data_name = next(n for n in members if n.startswith("data.tar"))
        staged_data = dest / f"data{version_suffix}.tar"
        changed: dict[str, str] = {}
        if conffile is not None:
            fh.seek(members[data_name][0])
            reader = io.BufferedReader(_Window(fh, members[data_name][1]), 1 << 20)
            target = conffile.lstrip("/")
            with (
                tarfile.open(fileobj=reader, mode="r|*") as src,
                tarfile.open(staged_data, "w", format=tarfile.GNU_FORMAT) as dst,
            ):
                for info in src:
                    if info.isfile() and _plain(info.name) == target:
                        content = src.extractfile(info).read()  # type: ignore[union-attr]
                        content += CONFFILE_CHANGE.format(version=version_suffix).encode()
                        changed[target] = hashlib.md5(content).hexdigest()  # noqa: S324
                        info.size = len(content)
                        dst.addfile(info, io.BytesIO(content))
                    elif info.isfile():
                        dst.addfile(info, src.extractfile(info))
                    else:
                        dst.addfile(info)
            if not changed:
                raise ValueError(f"{conffile} is not in {deb.name}")
        fh.seek(members[control_name][0])
        control, version = _new_control(fh.read(members[control_name][1]), version_suffix, changed)

        name, _, arch = deb.name.split("_")
        out = dest / f"{name}_{version}_{arch}"
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
                staged_data.unlink()
            else:
                size = members[data_name][1]
                dst_fh.write(_ar_header(data_name, size))
                fh.seek(members[data_name][0])
                shutil.copyfileobj(_Window(fh, size), dst_fh, 1 << 20)
            if size % 2:
                dst_fh.write(b"\n")
    return out
