"""Atomic file writes: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, content: bytes) -> None:
    """Write a temporary file beside `path`, fsync it, rename it into place, fsync the directory.

    The temporary file is `.<name>.<random>.tmp` with mode 0600 (crash recovery looks for that
    pattern, and what the kiosk writes is personal data); the directory fsync makes the rename
    itself survive a power cut.
    """
    # Imported here: tempfile pulls in shutil, random, bz2 and lzma (~5 ms), and most commands
    # that import this module (`kiosk check`) never write (issue 16).
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make renames, creations and deletions in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
