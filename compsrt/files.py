"""File helpers: atomic writes (a temporary sibling, then a rename) and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells (threads may be writing files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Rename ``tmp`` onto ``dest`` with the mode a plain ``open(dest, "w")`` would give (0666 & ~umask).

    ``mkstemp`` creates files 0600; renamed as they are, results would be unreadable to other users and
    to containers running as another user on a mounted folder.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)


def temp_dir_beside(dest: str | os.PathLike) -> Path:
    """A new empty folder to fill and then rename onto ``dest`` (same file system): in ``dest``'s parent, or
    its nearest existing ancestor, with the mode a plain ``mkdir`` would give (``mkdtemp`` makes it 0700)."""
    parent = Path(dest).absolute().parent
    while not parent.exists():
        parent = parent.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{Path(dest).name}.", suffix=".part", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part" + dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
