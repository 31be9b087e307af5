"""Atomic writes: files and folders appear complete under their final name or not at all."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from brats_llm.errors import OutputError


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable bytes for DVC)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Atomically write rows (dicts with the same keys, in order) as CSV with a header; no rows: empty file."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return write_text(path, buffer.getvalue())


#: The file every output folder of a stage carries: ``{"kind": ...}``, the stage that wrote it.
MARKER = ".brats-llm-output"


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind in the output marker of folder ``path``; None without a readable marker."""
    try:
        kind = json.loads((Path(path) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def check_replaceable(path: str | os.PathLike, kind: str) -> None:
    """Refuse, touching nothing, unless ``path`` is absent, an empty folder or a folder marked ``kind``.

    Raises:
        OutputError: a file or link is there, a folder without the marker, or another stage's output.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    what = "a symbolic link" if path.is_symlink() else None if path.is_dir() else "a file"
    if what:
        raise OutputError(f"{path} is {what}, not a brats-llm {kind} output folder; nothing was changed: "
                          "move it away or choose another output path")
    found = output_kind(path)
    if found == kind or (found is None and _is_empty(path)):
        return
    if found is None:
        raise OutputError(f"{path} holds files that brats-llm did not write (no {MARKER} marker); nothing was "
                          "changed: choose another output folder, or move or delete it yourself")
    raise OutputError(f"{path} holds a brats-llm {found!r} output, not a {kind!r} output; nothing was changed: "
                      "choose another output folder")


def _is_empty(folder: Path) -> bool:
    try:
        return next(folder.iterdir(), None) is None
    except OSError as error:
        raise OutputError(f"{folder}: cannot list it ({error.strerror or error}); nothing was changed") from error


def _open_lock(lock: Path, path: Path) -> int:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise OutputError(f"{path}: cannot create the lock file {lock} ({error.strerror or error})") from error


def _is_current(fd: int, lock: Path) -> bool:
    try:
        on_disk = os.stat(lock)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path`` while writing it; a second writer fails at once.

    The lock file is removed when done. A writer that locked a file the previous holder had just
    removed sees another inode (or none) at the lock path and locks again.

    Raises:
        OutputError: another process holds the lock, or the lock file cannot be made.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = _open_lock(lock, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if isinstance(error, BlockingIOError):
                raise OutputError(f"{path} is being written by another brats-llm run (it holds {lock}); "
                                  "wait for it to finish or choose another output path") from None
            raise OutputError(f"{path}: cannot lock {lock} ({error.strerror or error})") from error
        if _is_current(fd, lock):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_leftovers(path: str | os.PathLike) -> None:
    """Remove the ``.<name>.partial-*`` / ``.<name>.old-<pid>`` folders a killed write of ``path`` left.

    Only this output's own names match (never another output's); call it holding :func:`output_lock`.
    """
    path = Path(path)
    own = re.compile(rf"\.{re.escape(path.name)}\.(?:partial-[a-z0-9_]{{8}}|old-[0-9]+)")
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            if own.fullmatch(entry.name):
                _remove(entry)


def _output_path(path: str | os.PathLike) -> Path:
    path = Path(os.path.abspath(path))
    if not path.name:
        raise OutputError(f"{path}: not a usable output folder")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, kind: str) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``path`` only if the block succeeds.

    ``kind`` names the stage's output (``volumes``, ``slices`` ...); the folder gets a :data:`MARKER`
    with it. An existing ``path`` is replaced only when it is an empty folder or carries the marker
    of the same kind; anything else is refused before the block runs, nothing touched. The write
    holds :func:`output_lock`. A killed or failed run leaves at most a hidden
    ``.<name>.partial-*`` folder, never a half-written ``path``; the next run removes it.

    Raises:
        OutputError: ``path`` holds something else, or another run is writing it.
    """
    path = _output_path(path)
    with output_lock(path):
        check_replaceable(path, kind)
        remove_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        try:
            yield tmp
            write_json(tmp / MARKER, {"kind": kind})
            check_replaceable(path, kind)  # nothing foreign appeared there meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.chmod(tmp, 0o755)
        _swap(tmp, path)


def _swap(new: Path, path: Path) -> None:
    old = None
    if os.path.lexists(path):
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(new, path)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def owned_dir(path: str | os.PathLike, *, kind: str) -> Iterator[Path]:
    """Write into folder ``path`` in place (resumable work: training), with :func:`atomic_dir`'s checks.

    The folder is refused unless absent, empty or marked ``kind``; it is marked, and the lock is
    held while the block runs.

    Raises:
        OutputError: ``path`` holds something else, or another run is writing it.
    """
    path = _output_path(path)
    with output_lock(path):
        check_replaceable(path, kind)
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / MARKER, {"kind": kind})
        yield path
