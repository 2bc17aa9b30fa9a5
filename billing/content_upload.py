"""A course's files uploaded from the console: a zip that becomes the course's whole folder, or files added to it.

Nothing is written where ``/provider`` serves from until it is complete: the new tree is built in a
hidden staging folder beside the course's (same file system), then put in place in one step
(``renameat2(RENAME_EXCHANGE)`` where Linux has it), and the old tree removed after. Every entry's
path is checked before a byte is written: no absolute path, no ``..``, no backslash or control
character, no link or device, no encrypted entry; sizes and counts are capped, the bytes really
read are counted (a zip may lie about its sizes), and the disk must have room. Each refusal says
why in Chinese and English and leaves an audit event; so does each upload.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from database import write_transaction
from models import Course

from . import audit
from .content import FREE, MAX_PATH_CHARS, MAX_TREE_DEPTH, MAX_TREE_ENTRIES, _UNSAFE, _entries
from .orders import COURSE_ID
from .shop import Shop

MB = 1024 * 1024
# What one upload may carry (the request), and what it may unpack to; read at call time, so a test may lower them.
UPLOAD_MAX_BYTES = 200 * MB
UNPACKED_MAX_BYTES = 1024 * MB
ENTRIES_MAX = MAX_TREE_ENTRIES
# Room left on the disk after an upload, so a course cannot fill the volume the database lives on.
DISK_SPARE_BYTES = 256 * MB
CHUNK = 256 * 1024
STAGING = ".staging-"
MODES = ("zip", "files")
# Names archivers add that nobody means to sell: left out without a word.
CLUTTER = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")

# Each refusal: (HTTP status, Chinese, English).
REFUSALS: dict[str, tuple[int, str, str]] = {
    "no_course": (404, "没有这门课程。", "There is no such course."),
    "no_file": (400, "请选择要上传的 zip 或文件。", "Choose a zip or some files to upload."),
    "bad_mode": (400, "请选择上传方式：zip 替换全部内容，或把文件加入一个文件夹。",
                 "Choose how to upload: a zip that replaces everything, or files added to a folder."),
    "not_zip": (400, "这不是一个可读的 zip 文件。", "This is not a zip file that can be read."),
    "one_zip": (400, "一次只能上传一个 zip。", "Upload one zip at a time."),
    "empty": (400, "zip 里没有文件：课程内容不会被清空。", "The zip holds no files; the course's content is left as it was."),
    "absolute_path": (400, "zip 里有绝对路径的条目（以 / 或盘符开头），已拒绝。",
                      "An entry has an absolute path (starting with / or a drive letter); refused."),
    "parent_path": (400, "zip 里有指向上级目录（..）的条目，已拒绝。", "An entry climbs out with '..'; refused."),
    "bad_name": (400, "有文件名包含反斜杠、控制字符或空的路径段，已拒绝。",
                 "A name has a backslash, a control character or an empty part; refused."),
    "link": (400, "zip 里有符号链接，已拒绝：请放入文件本身。", "An entry is a symbolic link; refused: put the file itself in."),
    "special": (400, "zip 里有既不是文件也不是文件夹的条目，已拒绝。", "An entry is neither a file nor a folder; refused."),
    "encrypted": (400, "zip 有密码保护，请上传不加密的 zip。", "The zip is password-protected; upload one without a password."),
    "too_deep": (400, f"文件夹层级超过 {MAX_TREE_DEPTH} 层。", f"Folders are nested deeper than {MAX_TREE_DEPTH} levels."),
    "too_long": (400, f"路径超过 {MAX_PATH_CHARS} 个字符。", f"A path is longer than {MAX_PATH_CHARS} characters."),
    "conflict": (400, "同一个名字既是文件又是文件夹。", "One name is both a file and a folder."),
    "duplicate": (400, "同一个文件在 zip 里出现了两次。", "The same file is in the zip twice."),
    "too_many": (413, f"文件太多（最多 {ENTRIES_MAX} 个）。", f"Too many files (at most {ENTRIES_MAX})."),
    "too_big": (413, "上传的内容太大。", "The upload is too large."),
    "unpacked_too_big": (413, "解压后的内容太大。", "The files unpack to more than is allowed."),
    "size_lies": (400, "zip 里的文件比它声明的大小更大，已拒绝。", "An entry unpacks to more than the size it declares; refused."),
    "no_room": (413, "磁盘空间不够。", "There is not enough room on the disk."),
    "busy": (409, "这门课程正在上传另一批内容，请稍后再试。", "Another upload to this course is running; try again shortly."),
    "bad_folder": (400, "目标文件夹的名字不合规：用 / 分隔的普通名字，例如 free 或 ch1/videos。",
                   "The folder name is not allowed: plain names split by /, like free or ch1/videos."),
}


class UploadRefused(Exception):
    """An upload that wrote nothing: a stable reason, its HTTP status, words in zh and en, and the entry at fault."""

    def __init__(self, reason: str, entry: str = "") -> None:
        self.status, self.zh, self.en = REFUSALS[reason]
        super().__init__(f"{reason}: {entry}" if entry else reason)
        self.reason = reason
        self.entry = entry[:200]


@dataclass(frozen=True)
class Uploaded:
    """What an upload put in place: how many files, how many bytes, and in which mode."""

    mode: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Incoming:
    """One file of an upload: the name the browser gave and a stream of its bytes."""

    name: str
    stream: IO[bytes]


# --- names -------------------------------------------------------------------------------------

def _clean_parts(name: str, *, base: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path parts of an entry (None for clutter to leave out); UploadRefused for anything unsafe."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UploadRefused("absolute_path", name)
    if "\\" in name or _UNSAFE.search(name):
        raise UploadRefused("bad_name", name)
    parts = tuple(name.rstrip("/").split("/"))
    if any(part == ".." for part in parts):
        raise UploadRefused("parent_path", name)
    if any(part in ("", ".") for part in parts):
        raise UploadRefused("bad_name", name)
    if any(part in CLUTTER or part.startswith("._") for part in parts):
        return None
    if any(part.startswith(".") for part in parts):  # hidden: never served, so never stored
        return None
    full = base + parts
    if len(full) > MAX_TREE_DEPTH + 1:
        raise UploadRefused("too_deep", name)
    if len("/".join(full)) > MAX_PATH_CHARS:
        raise UploadRefused("too_long", name)
    return full


def folder_parts(folder: str) -> tuple[str, ...]:
    """The parts of the folder files are added to ('' is the course's own folder); UploadRefused if unsafe."""
    text = folder.strip().strip("/")
    if not text:
        return ()
    try:
        parts = _clean_parts(text)
    except UploadRefused:
        raise UploadRefused("bad_folder", folder) from None
    if parts is None:
        raise UploadRefused("bad_folder", folder)
    return parts


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author typed it: zips from Chinese Windows carry GBK without saying so."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437", errors="replace")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


# --- the folder's new tree, staged -------------------------------------------------------------

@contextlib.contextmanager
def _course_lock(content_dir: Path, course_id: str) -> Iterator[None]:
    """One upload per course at a time, across processes; a second is refused, not queued."""
    content_dir.mkdir(parents=True, exist_ok=True)
    with open(content_dir / f".upload-{course_id}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadRefused("busy") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_stream(source: IO[bytes], target: Path, limit: int, budget: list[int], name: str) -> int:
    """Write at most ``limit`` bytes (and what the budget has left) from ``source``; refuse past either."""
    written = 0
    with open(target, "xb") as out:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > limit:
                raise UploadRefused("size_lies", name)
            if written > budget[0]:
                raise UploadRefused("unpacked_too_big", name)
            out.write(chunk)
    budget[0] -= written
    return written


def _unpack_zip(stream: IO[bytes], staging: Path) -> tuple[int, int]:
    """Check every entry of the zip, then write them into ``staging``; return (files, bytes)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UploadRefused("not_zip") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > ENTRIES_MAX * 2:
            raise UploadRefused("too_many")
        plan: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        files: set[tuple[str, ...]] = set()
        folders: set[tuple[str, ...]] = set()
        declared = 0
        for info in infos:
            name = _zip_name(info)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type given (a zip from Windows, or writestr)
            if kind == stat.S_IFLNK:
                raise UploadRefused("link", name)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UploadRefused("special", name)
            if info.flag_bits & 0x1:
                raise UploadRefused("encrypted", name)
            parts = _clean_parts(name)
            if parts is None:
                continue
            for depth in range(1, len(parts)):
                folders.add(parts[:depth])
            if info.is_dir():
                folders.add(parts)
                continue
            if parts in files:
                raise UploadRefused("duplicate", name)
            files.add(parts)
            declared += info.file_size
            plan.append((parts, info))
        if files & folders:
            raise UploadRefused("conflict", "/".join(sorted(files & folders)[0]))
        if not files:
            raise UploadRefused("empty")
        if len(files) + len(folders) > ENTRIES_MAX:
            raise UploadRefused("too_many")
        if declared > UNPACKED_MAX_BYTES:
            raise UploadRefused("unpacked_too_big")
        _check_room(staging, declared)
        for folder in sorted(folders, key=len):
            staging.joinpath(*folder).mkdir(exist_ok=True)
        budget = [UNPACKED_MAX_BYTES]
        total = 0
        root = staging.resolve()
        for parts, entry in plan:
            target = staging.joinpath(*parts)
            if not target.resolve().is_relative_to(root):  # belt and braces: the names were checked above
                raise UploadRefused("parent_path", "/".join(parts))
            try:
                with archive.open(entry) as source:
                    total += _copy_stream(source, target, entry.file_size, budget, "/".join(parts))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError):
                raise UploadRefused("not_zip", "/".join(parts)) from None
        return len(files), total


def _check_room(near: Path, needed: int) -> None:
    if shutil.disk_usage(near).free - needed < DISK_SPARE_BYTES:
        raise UploadRefused("no_room")


def _link_tree(source: Path, staging: Path) -> None:
    """Stage the course's present tree (hard links: no copy; every later write replaces, never edits, a file)."""
    for folder, dirs, names in os.walk(source):
        here = Path(folder)
        there = staging / here.relative_to(source)
        there.mkdir(exist_ok=True)
        for name in dirs + names:
            entry = here / name
            if entry.is_symlink():
                os.symlink(os.readlink(entry), there / name)
                if name in dirs:
                    dirs.remove(name)  # the link itself is staged; never walked through
            elif name in names:
                try:
                    os.link(entry, there / name)
                except OSError:
                    shutil.copy2(entry, there / name)


def _add_files(incoming: list[Incoming], base: tuple[str, ...], staging: Path) -> tuple[int, int]:
    """Write each uploaded file under ``base`` in the staged tree, replacing one of the same name."""
    planned: dict[tuple[str, ...], Incoming] = {}
    for item in incoming:
        name = item.name  # a browser sends the file's own name; anything with a path is checked like a zip's
        parts = _clean_parts(name, base=base)
        if parts is None:
            continue
        if parts in planned:
            raise UploadRefused("duplicate", name)
        planned[parts] = item
    if not planned:
        raise UploadRefused("no_file")
    budget = [UNPACKED_MAX_BYTES]
    total = 0
    root = staging.resolve()
    for parts, item in planned.items():
        folder = staging.joinpath(*parts[:-1])
        for depth in range(1, len(parts)):
            step = staging.joinpath(*parts[:depth])
            if step.is_symlink() or (step.exists() and not step.is_dir()):
                raise UploadRefused("conflict", "/".join(parts[:depth]))
        folder.mkdir(parents=True, exist_ok=True)
        target = staging.joinpath(*parts)
        if not target.parent.resolve().is_relative_to(root):
            raise UploadRefused("parent_path", "/".join(parts))
        if target.is_dir() and not target.is_symlink():
            raise UploadRefused("conflict", "/".join(parts))
        if target.exists() or target.is_symlink():
            target.unlink()  # a hard link to the live tree: replaced, never written through
        total += _copy_stream(item.stream, target, UPLOAD_MAX_BYTES, budget, "/".join(parts))
    return len(planned), total


# --- putting it in place -----------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _put_in_place(staging: Path, target: Path) -> None:
    """Make ``staging`` the course folder; the old tree ends at ``staging``'s path, to be removed."""
    if not target.exists() and not target.is_symlink():
        os.rename(staging, target)
        staging.mkdir()  # so the caller's clean-up has something to remove, as after a swap
        return
    if _exchange(staging, target):
        return
    # No atomic exchange here (not Linux, or a file system without it): two renames, a moment apart.
    aside = staging.with_name(staging.name + "-old")
    os.rename(target, aside)
    os.rename(staging, target)
    os.rename(aside, staging)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _sweep(content_dir: Path, course_id: str) -> None:
    """Remove what an upload that crashed midway left beside the course (under the course's lock)."""
    for leftover in content_dir.glob(f"{STAGING}{course_id}.*"):
        _remove(leftover)


def upload(shop: Shop, course_id: str, mode: str, incoming: list[Incoming], *, folder: str = "", actor: str,
           ip: str | None) -> Uploaded:
    """Put an upload in place as the course's files; UploadRefused (audited) when anything about it is wrong."""
    try:
        if not isinstance(course_id, str) or not COURSE_ID.match(course_id) or len(course_id) > 64 \
                or Course.get_or_none(Course.id == course_id) is None:
            raise UploadRefused("no_course", str(course_id))
        if mode not in MODES:
            raise UploadRefused("bad_mode", str(mode)[:20])
        if not incoming:
            raise UploadRefused("no_file")
        if mode == "zip" and len(incoming) != 1:
            raise UploadRefused("one_zip")
        base = folder_parts(folder) if mode == "files" else ()
        content_dir = shop.config.content_dir
        with _course_lock(content_dir, course_id):
            _sweep(content_dir, course_id)
            live = content_dir / course_id
            # A dot ends the course id (ids have none), so one course's sweep never matches another's staging.
            staging = content_dir / f"{STAGING}{course_id}.{secrets.token_hex(6)}"
            staging.mkdir()
            try:
                if mode == "zip":
                    count, size = _unpack_zip(incoming[0].stream, staging)
                else:
                    if live.is_dir():
                        _link_tree(live, staging)
                    _check_room(staging, 0)
                    count, size = _add_files(incoming, base, staging)
                _put_in_place(staging, live)
            finally:
                _remove(staging)  # a refused upload's half tree, or the old tree after a swap
    except UploadRefused as refused:
        with write_transaction():
            audit.record("course.content_refused", at=shop.now(), actor=actor, ip=ip,
                         detail={"course": str(course_id)[:64], "mode": str(mode)[:20], "reason": refused.reason,
                                 "entry": refused.entry or None})
        raise
    with write_transaction():
        audit.record("course.content_uploaded", at=shop.now(), actor=actor, ip=ip,
                     detail={"course": course_id, "mode": mode, "files": count, "bytes": size,
                             "folder": "/".join(base) or None})
    return Uploaded(mode, count, size)


def refuse_too_large(shop: Shop, course_id: str, *, actor: str, ip: str | None) -> UploadRefused:
    """The refusal of a request larger than an upload may be (the web layer stops reading it), audited."""
    refused = UploadRefused("too_big")
    with write_transaction():
        audit.record("course.content_refused", at=shop.now(), actor=actor, ip=ip,
                     detail={"course": str(course_id)[:64], "reason": refused.reason,
                             "limit_bytes": UPLOAD_MAX_BYTES})
    return refused


def tree(shop: Shop, course_id: str) -> dict[str, Any]:
    """What the course serves now, as the editor shows it: folders and files (``free`` marked), counts and size."""
    folder = (shop.config.content_dir / course_id).resolve()
    if not COURSE_ID.match(course_id) or not folder.is_dir():
        return {"folders": [], "files": [], "count": 0, "bytes": 0, "free": 0, "path": str(folder)}
    folders, files = _entries(folder, folder, 0, [MAX_TREE_ENTRIES])
    count = size = free = 0

    def walk(fs: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
        nonlocal count, size, free
        for item in items:
            count += 1
            size += item["size"]
            free += 1 if item["free"] else 0
        for sub in fs:
            walk(sub["folders"], sub["files"])

    walk(folders, files)
    return {"folders": folders, "files": files, "count": count, "bytes": size, "free": free,
            "path": str(shop.config.content_dir / course_id), "free_name": FREE}
