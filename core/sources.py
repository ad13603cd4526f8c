"""Turn what the user gave (paths, folders, zips, bytes, uploads) into named in-memory entries.

Nothing is extracted or written to disk: zip members are read into memory on demand,
and every refusal becomes a ``(name, reason)`` pair instead of an exception.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["Entry", "ZipLimits", "expand_sources"]


@dataclass(frozen=True)
class ZipLimits:
    """Bounds applied to every zip archive before anything in it is read."""

    max_entries: int = 20_000
    max_total_bytes: int = 4 * 1024**3
    max_ratio: float = 250.0
    max_depth: int = 2


@dataclass(frozen=True)
class Entry:
    """One candidate file: a display name and a way to get its bytes."""

    name: str
    size: int
    read: Callable[[], bytes]
    read_range: Callable[[int, int], bytes] | None = None
    """For files on disk: ``read_range(offset, length)`` reads only part of the file."""
    source: int = -1
    """Which input (position in ``sources``) the entry came from."""


def _bytes_of(obj: Any) -> bytes:
    """The bytes of a binary file-like object (``BytesIO.getvalue`` shares, not copies)."""
    if hasattr(obj, "getvalue"):
        return bytes(obj.getvalue()) if not isinstance(obj.getvalue(), bytes) else obj.getvalue()
    if hasattr(obj, "seek"):
        obj.seek(0)
    return obj.read()


def _is_zip(head: bytes) -> bool:
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _unsafe_member_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "refused: the name in the zip contains a NUL character"
    if "\\" in name:
        return "refused: the name in the zip contains a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "refused: the name in the zip is an absolute path"
    if any(part == ".." for part in name.split("/")):
        return "refused: the name in the zip points outside the archive (..)"
    if info.flag_bits & 0x1:
        return "refused: the zip entry is encrypted"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: the zip entry is a symbolic link"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        return f"refused: the zip entry uses an unsupported compression method ({info.compress_type})"
    return None


def _ignored_member(name: str) -> bool:
    """macOS resource forks and folder metadata, which are never images."""
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store", "Thumbs.db")


def _declared_entries(data: bytes) -> int | None:
    """The entry count from the end-of-central-directory record, read before parsing anything else."""
    tail = data[-(65536 + 22):]
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    count = int.from_bytes(tail[pos + 10:pos + 12], "little")
    if count == 0xFFFF:  # zip64: the real count is in the zip64 end record
        loc = tail.rfind(b"PK\x06\x06")
        if loc >= 0 and len(tail) - loc >= 40:
            return int.from_bytes(tail[loc + 32:loc + 40], "little")
    return count


def _expand_zip(
    name: str,
    data: bytes,
    *,
    limits: ZipLimits,
    depth: int,
    entries: list[Entry],
    skipped: list[tuple[str, str]],
) -> None:
    declared = _declared_entries(data)
    if declared is not None and declared > limits.max_entries:
        skipped.append((name, f"refused: the zip declares {declared:,} entries, more than the limit of {limits.max_entries:,}"))
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        skipped.append((name, f"not a readable zip archive ({type(exc).__name__}); re-create the zip and upload it again"))
        return
    members = [i for i in infos if not i.is_dir() and not _ignored_member(i.filename)]
    if len(members) > limits.max_entries:
        skipped.append((name, f"refused: the zip holds {len(members)} files, more than the limit of {limits.max_entries}"))
        return
    total = sum(i.file_size for i in members)
    if total > limits.max_total_bytes:
        skipped.append(
            (name, f"refused: the zip would unpack to {total / 1e9:.1f} GB, more than the limit of {limits.max_total_bytes / 1e9:.1f} GB")
        )
        return
    for info in members:
        member_name = f"{name}/{info.filename}"
        reason = _unsafe_member_reason(info)
        if reason is None and info.compress_size > 0 and info.file_size / info.compress_size > limits.max_ratio:
            reason = f"refused: compression ratio {info.file_size / info.compress_size:.0f}:1 is above the limit of {limits.max_ratio:.0f}:1"
        if reason is not None:
            skipped.append((member_name, reason))
            continue

        def read(zf: zipfile.ZipFile = zf, info: zipfile.ZipInfo = info) -> bytes:
            with zf.open(info) as fh:
                # Never trust the declared size: read at most one byte more than it.
                out = fh.read(info.file_size + 1)
            if len(out) > info.file_size:
                raise ValueError("zip entry is larger than its declared size")
            return out

        if info.filename.lower().endswith(".zip"):
            if depth >= limits.max_depth:
                skipped.append((member_name, f"refused: zip archives nested more than {limits.max_depth} deep"))
                continue
            try:
                inner = read()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
                skipped.append((member_name, f"could not be read from the zip ({type(exc).__name__})"))
                continue
            _expand_zip(member_name, inner, limits=limits, depth=depth + 1, entries=entries, skipped=skipped)
            continue
        entries.append(Entry(member_name, info.file_size, read))


def _file_entry(path: Path, name: str) -> Entry:
    def read(path: Path = path) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    def read_range(offset: int, length: int, path: Path = path) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    return Entry(name, path.stat().st_size, read, read_range)


def _expand_path(path: Path, *, limits: ZipLimits, entries: list[Entry], skipped: list[tuple[str, str]]) -> None:
    if path.is_dir():
        root = path
        files: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for fn in sorted(filenames):
                files.append(Path(dirpath) / fn)
        for f in files:
            rel = f"{root.name}/{f.relative_to(root).as_posix()}"
            if _ignored_member(f.relative_to(root).as_posix()):
                continue
            if f.is_symlink():
                skipped.append((rel, "skipped: symbolic link"))
                continue
            _expand_file(f, rel, limits=limits, entries=entries, skipped=skipped)
        return
    if not path.exists():
        skipped.append((path.name, "not found: no such file or folder"))
        return
    _expand_file(path, path.name, limits=limits, entries=entries, skipped=skipped)


def _expand_file(path: Path, name: str, *, limits: ZipLimits, entries: list[Entry], skipped: list[tuple[str, str]]) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        skipped.append((name, f"could not be opened ({exc.strerror or type(exc).__name__})"))
        return
    if _is_zip(head):
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append((name, f"could not be read ({exc.strerror or type(exc).__name__})"))
            return
        _expand_zip(name, data, limits=limits, depth=1, entries=entries, skipped=skipped)
    else:
        entries.append(_file_entry(path, name))


def expand_sources(
    sources: Iterable[Any] | Any,
    *,
    limits: ZipLimits | None = None,
) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Expand user inputs into in-memory file entries.

    Parameters
    ----------
    sources : iterable
        Items that are each a path (file, folder or .zip), a ``(name, bytes)`` pair,
        or a binary file-like object with a ``.name`` (a Streamlit ``UploadedFile``).
        A single path or file-like object is accepted too.
    limits : ZipLimits, optional
        Bounds for zip archives.

    Returns
    -------
    entries : list of Entry
        Every candidate file, zip members included, in input order.
    skipped : list of (name, reason)
        Inputs refused before reading (unsafe zip members, missing paths).
    """
    limits = limits or ZipLimits()
    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "read"):
        sources = [sources]
    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    for n, item in enumerate(sources):
        first = len(entries)
        _expand_item(n, item, limits=limits, entries=entries, skipped=skipped)
        entries[first:] = [replace(e, source=n) for e in entries[first:]]
    return entries, skipped


def _expand_item(n: int, item: Any, *, limits: ZipLimits, entries: list[Entry], skipped: list[tuple[str, str]]) -> None:
    if isinstance(item, (str, os.PathLike)):
        _expand_path(Path(item), limits=limits, entries=entries, skipped=skipped)
        return
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (bytes, bytearray, memoryview)):
        name, data = str(item[0]), bytes(item[1]) if not isinstance(item[1], bytes) else item[1]
    elif hasattr(item, "read"):
        name = str(getattr(item, "name", None) or f"upload {n + 1}")
        data = _bytes_of(item)
    else:
        skipped.append((f"input {n + 1}", f"not understood: expected a path, a (name, bytes) pair or a file, "
                                          f"got {type(item).__name__}"))
        return
    if _is_zip(bytes(data[:4])):
        _expand_zip(name, data, limits=limits, depth=1, entries=entries, skipped=skipped)
    else:
        entries.append(Entry(name, len(data), lambda data=data: data))
