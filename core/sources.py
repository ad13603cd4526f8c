"""Turn what the user gave (paths, folders, zips, bytes, uploads) into named in-memory entries.

Nothing is extracted or written to disk: zip members are inflated into memory on demand, in
chunks, never past their declared size or the limits; every refusal becomes a
``(name, reason)`` pair instead of an exception.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.memory import MB, MemoryBudget, OverBudget, Reservation

__all__ = ["Entry", "ZipLimits", "ZipMemberError", "expand_sources"]

_CHUNK = 1 << 20  # compressed bytes read per step while inflating a member


@dataclass(frozen=True)
class ZipLimits:
    """Bounds applied to zip archives before and while anything in them is inflated.

    Attributes
    ----------
    max_entries : int
        Files one archive may hold.
    max_total_bytes : int
        Declared inflated bytes of every zip member of one call, nested archives and their
        members included (with a memory budget, at most the session's share of it).
    max_ratio : float
        Declared inflated size over compressed size, per member.
    max_depth : int
        Archives counted from the outer one: 2 accepts a zip inside a zip, no deeper.
    memory : MemoryBudget, optional
        The budget inflating is reserved against (see :func:`expand_sources`); it travels
        with the limits so that ``load_series(..., zip_limits=...)`` reaches it.
    owner : str
        Whose share those reservations count against (a session id).
    """

    max_entries: int = 20_000
    max_total_bytes: int = 1024**3
    max_ratio: float = 250.0
    max_depth: int = 2
    memory: MemoryBudget | None = None
    owner: str = "local"


class ZipMemberError(zipfile.BadZipFile, ValueError):
    """A zip member that cannot be taken out: damaged, or not matching what the archive declares."""


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


@dataclass
class _Expansion:
    """One call's limits, what it may still inflate, whom memory is reserved for, and its results."""

    limits: ZipLimits
    left: int
    memory: MemoryBudget | None
    owner: str
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def reserve(self, nbytes: int, what: str) -> Reservation | None:
        return None if self.memory is None else self.memory.reserve(nbytes, owner=self.owner, what=what)


class _Archive:
    """The bytes of one zip archive (in memory or a file on disk), read by offset."""

    def __init__(self, *, data: bytes | None = None, path: Path | None = None) -> None:
        self.data, self.path = data, path
        self.size = len(data) if data is not None else path.stat().st_size  # type: ignore[union-attr]

    def raw(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + length]
        with open(self.path, "rb") as fh:  # type: ignore[arg-type]
            fh.seek(offset)
            return fh.read(length)

    def infolist(self) -> list[zipfile.ZipInfo]:
        if self.data is not None:
            with zipfile.ZipFile(io.BytesIO(self.data)) as zf:  # BytesIO shares the bytes
                return zf.infolist()
        with zipfile.ZipFile(self.path) as zf:  # type: ignore[arg-type]
            return zf.infolist()

    def inflate(self, info: zipfile.ZipInfo) -> bytes:
        """The member's bytes: at most its declared size is ever inflated (see :func:`_inflate`)."""
        return _inflate(self.raw, info)


class _Stored:
    needs_input, eof = True, False

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return data


class _Deflated:
    """zlib with the interface of bz2/lzma decompressors (pending input inside, needs_input)."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(-zlib.MAX_WBITS)

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)


def _lzma_decompressor(head: bytes) -> tuple[Any, int]:
    """Zip's LZMA: 2 bytes version, 2 bytes properties size, the properties, then raw LZMA1."""
    if len(head) < 4:
        raise ZipMemberError("the zip entry's LZMA header is truncated")
    n = int.from_bytes(head[2:4], "little")
    props = head[4:4 + n]
    try:  # a private helper of the standard library, the one zipfile itself uses
        filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore[attr-defined]
    except (AttributeError, lzma.LZMAError) as exc:
        raise ZipMemberError("the zip entry's LZMA properties cannot be read") from exc
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt]), 4 + n


def _inflate(raw: Callable[[int, int], bytes], info: zipfile.ZipInfo) -> bytes:
    """Inflate one member in chunks, stopping one byte past its declared size.

    The standard library's zipfile cuts its output at the declared size too, but only after
    inflating a whole chunk: its bzip2 and LZMA readers pass no output limit, so 4 KB of bzip2
    can turn into gigabytes at once. Here every step asks for no more than what is left of
    the declared size, whatever the method; size and CRC are checked at the end.
    """
    head = raw(info.header_offset, 30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise ZipMemberError("the zip entry's local header is missing or damaged")
    pos = info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")
    left = info.compress_size
    method = info.compress_type
    if method == zipfile.ZIP_STORED:
        d: Any = _Stored()
    elif method == zipfile.ZIP_DEFLATED:
        d = _Deflated()
    elif method == zipfile.ZIP_BZIP2:
        d = bz2.BZ2Decompressor()
    elif method == zipfile.ZIP_LZMA:
        d, used = _lzma_decompressor(raw(pos, min(left, 4 + 65535)))
        pos, left = pos + used, left - used
    else:
        raise ZipMemberError(f"unsupported compression method ({method})")
    want = info.file_size + 1  # one byte more than declared tells a lying header
    out = io.BytesIO()  # grows in place; getvalue() then hands over its buffer without a copy
    crc = 0
    while out.tell() < want and not d.eof:
        if d.needs_input:
            if left <= 0:
                break
            chunk = raw(pos, min(_CHUNK, left))
            if not chunk:
                break
            pos, left = pos + len(chunk), left - len(chunk)
        else:
            chunk = b""
        try:
            data = d.decompress(chunk, want - out.tell())
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:  # bz2 raises OSError
            raise ZipMemberError("the zip entry's compressed data is damaged") from exc
        crc = zlib.crc32(data, crc)
        out.write(data)
    n = out.tell()
    if n > info.file_size:
        raise ZipMemberError("the zip entry inflates to more than its declared size")
    if n < info.file_size:
        raise ZipMemberError("the zip entry is truncated (fewer bytes than its declared size)")
    if crc != info.CRC:
        raise ZipMemberError("the zip entry is damaged (its CRC does not match)")
    return out.getvalue()


def _bytes_of(obj: Any) -> bytes:
    """The bytes of a binary file-like object (``BytesIO.getvalue`` shares, not copies)."""
    if hasattr(obj, "getvalue"):
        return bytes(obj.getvalue()) if not isinstance(obj.getvalue(), bytes) else obj.getvalue()
    if hasattr(obj, "seek"):
        obj.seek(0)
    return obj.read()


def _returning(data: bytes) -> Callable[[], bytes]:
    """A reader of bytes already in memory (shared, not copied)."""
    return lambda: data


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


def _declared_entries(tail: bytes) -> int | None:
    """The entry count from the end-of-central-directory record (``tail``: the archive's last 64 KB)."""
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    count = int.from_bytes(tail[pos + 10:pos + 12], "little")
    if count == 0xFFFF:  # zip64: the real count is in the zip64 end record
        loc = tail.rfind(b"PK\x06\x06")
        if loc >= 0 and len(tail) - loc >= 40:
            return int.from_bytes(tail[loc + 32:loc + 40], "little")
    return count


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


def _member_reason(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    reason = _unsafe_member_reason(info)
    if reason is None and info.compress_size > 0 and info.file_size / info.compress_size > limits.max_ratio:
        reason = (f"refused: compression ratio {info.file_size / info.compress_size:.0f}:1 is above the limit of "
                  f"{limits.max_ratio:.0f}:1")
    return reason


def _expand_zip(name: str, archive: _Archive, ex: _Expansion, *, depth: int) -> None:
    limits = ex.limits
    declared = _declared_entries(archive.raw(max(0, archive.size - (65536 + 22)), 65536 + 22))
    if declared is not None and declared > limits.max_entries:
        ex.skipped.append((name, f"refused: the zip declares {declared:,} entries, more than the limit of "
                                 f"{limits.max_entries:,}"))
        return
    try:
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        ex.skipped.append((name, "not a readable zip archive: it is damaged or cut short; re-create the zip and "
                                 "upload it again"))
        return
    members = [i for i in infos if not i.is_dir() and not _ignored_member(i.filename)]
    if not members:
        ex.skipped.append((name, "an empty zip archive: it holds no files (only folders or system files, or nothing)"))
        return
    if len(members) > limits.max_entries:
        ex.skipped.append((name, f"refused: the zip holds {len(members)} files, more than the limit of "
                                 f"{limits.max_entries}"))
        return
    readable: list[zipfile.ZipInfo] = []
    for info in members:
        reason = _member_reason(info, limits)
        if reason is None and info.filename.lower().endswith(".zip") and depth >= limits.max_depth:
            reason = f"refused: zip archives nested more than {limits.max_depth} deep"
        if reason is not None:
            ex.skipped.append((f"{name}/{info.filename}", reason))
        else:
            readable.append(info)
    total = sum(i.file_size for i in readable)
    if total > ex.left:
        ex.skipped.append((name, f"refused: the zip would unpack to {_mb(total)}, more than the {_mb(ex.left)} "
                                 f"this upload may still unpack (the limit is {_mb(limits.max_total_bytes)} in all)"))
        return
    ex.left -= total
    for info in readable:
        member_name = f"{name}/{info.filename}"
        if info.filename.lower().endswith(".zip"):
            _expand_nested(member_name, archive, info, ex, depth=depth)
            continue

        def read(archive: _Archive = archive, info: zipfile.ZipInfo = info, ex: _Expansion = ex) -> bytes:
            # The inflated bytes are reserved while they are made; the caller's use of them
            # is the caller's to reserve (the loader reserves what it decodes).
            res = ex.reserve(info.file_size, "unpacking a file from the zip")
            try:
                return archive.inflate(info)
            finally:
                if res is not None:
                    res.release()

        ex.entries.append(Entry(member_name, info.file_size, read))


def _expand_nested(name: str, outer: _Archive, info: zipfile.ZipInfo, ex: _Expansion, *, depth: int) -> None:
    """A zip inside a zip: inflated once (reserved for as long as its members may be read)."""
    try:
        res = ex.reserve(info.file_size, "a zip inside the zip")
    except OverBudget as exc:
        ex.skipped.append((name, str(exc)))
        return
    try:
        inner = _Archive(data=outer.inflate(info))
    except (ZipMemberError, zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
        if res is not None:
            res.release()
        ex.skipped.append((name, f"could not be read from the zip: {exc}" if isinstance(exc, ZipMemberError)
                           else "could not be read from the zip: the archive is damaged at this file"))
        return
    if res is not None and ex.memory is not None:
        ex.memory.hold(inner, res)  # released when the last entry reading from it is gone
    _expand_zip(name, inner, ex, depth=depth + 1)


def _file_entry(path: Path, name: str) -> Entry:
    def read(path: Path = path) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    def read_range(offset: int, length: int, path: Path = path) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    return Entry(name, path.stat().st_size, read, read_range)


def _expand_path(path: Path, ex: _Expansion) -> None:
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
                ex.skipped.append((rel, "skipped: symbolic link"))
                continue
            _expand_file(f, rel, ex)
        return
    if not path.exists():
        ex.skipped.append((path.name, "not found: no such file or folder"))
        return
    _expand_file(path, path.name, ex)


def _expand_file(path: Path, name: str, ex: _Expansion) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        archive = _Archive(path=path) if _is_zip(head) else None
    except OSError as exc:
        ex.skipped.append((name, f"could not be opened ({(exc.strerror or 'the system refused').lower()})"))
        return
    if archive is not None:  # read where it lies, member by member: never whole into memory
        _expand_zip(name, archive, ex, depth=1)
    else:
        ex.entries.append(_file_entry(path, name))


def expand_sources(
    sources: Iterable[Any] | Any,
    *,
    limits: ZipLimits | None = None,
    memory: MemoryBudget | None = None,
    owner: str = "local",
) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Expand user inputs into in-memory file entries.

    Parameters
    ----------
    sources : iterable
        Items that are each a path (file, folder or .zip), a ``(name, bytes)`` pair,
        or a binary file-like object with a ``.name`` (a Streamlit ``UploadedFile``).
        A single path or file-like object is accepted too.
    limits : ZipLimits, optional
        Bounds for zip archives. ``max_total_bytes`` counts every zip member of this call.
    memory : MemoryBudget, optional
        When given (here or in ``limits``), the declared inflated total is also bounded by one
        session's share, and inflating is reserved against it: a nested zip for as long as its
        members may be read (until its entries are collected), each member while it is inflated.
    owner : str
        Whose share the reservations count against (a session id); ``limits.owner`` when
        ``memory`` comes from the limits.

    Returns
    -------
    entries : list of Entry
        Every candidate file, zip members included, in input order. Reading a zip member
        may raise :class:`ZipMemberError` (a ``ValueError``) or
        :class:`~core.memory.OverBudget` (a ``MemoryError``).
    skipped : list of (name, reason)
        Inputs refused before reading (unsafe zip members, limits, the budget, missing paths).
    """
    limits = limits or ZipLimits()
    if memory is None:
        memory, owner = limits.memory, limits.owner
    cap = limits.max_total_bytes if memory is None else min(limits.max_total_bytes, memory.session_bytes)
    ex = _Expansion(limits=limits, left=cap, memory=memory, owner=owner)
    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "read"):
        sources = [sources]
    for n, item in enumerate(sources):
        first = len(ex.entries)
        _expand_item(n, item, ex)
        ex.entries[first:] = [replace(e, source=n) for e in ex.entries[first:]]
    return ex.entries, ex.skipped


def _expand_item(n: int, item: Any, ex: _Expansion) -> None:
    if isinstance(item, (str, os.PathLike)):
        _expand_path(Path(item), ex)
        return
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (bytes, bytearray, memoryview)):
        name, data = str(item[0]), bytes(item[1]) if not isinstance(item[1], bytes) else item[1]
    elif hasattr(item, "read"):
        name = str(getattr(item, "name", None) or f"upload {n + 1}")
        data = _bytes_of(item)
    else:
        ex.skipped.append((f"input {n + 1}", f"not understood: expected a path, a (name, bytes) pair or a file, "
                                          f"got {type(item).__name__}"))
        return
    if _is_zip(bytes(data[:4])):
        _expand_zip(name, _Archive(data=data), ex, depth=1)
    else:
        ex.entries.append(Entry(name, len(data), _returning(data)))
