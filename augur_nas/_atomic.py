"""Atomic file writes: a temporary file in the destination's folder, flushed to disk, then
``os.replace``. A reader (or a user who pressed Ctrl-C) sees the old file or the new one, never
half of one; on any failure the temporary file is removed and the old file is untouched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from ._errors import SpecError


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path, binary: bool = True):
    """``with atomic_file(path) as f: f.write(...)``: ``path`` is replaced when the block ends
    without an exception. The new file keeps the old one's permissions (default: 0o666 & ~umask)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, data) -> str:
    """Write ``data`` (str or bytes) to ``path`` atomically; creates the folder. Returns ``path``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def check_out_dir(path, what: str = "--out") -> str:
    """Make sure results can be written into folder ``path`` before any work starts: create it and
    write (then remove) a probe file. Raises ``SpecError`` (exit 2 at the CLI) naming the folder and
    the reason; returns the path."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SpecError(f"{what} {path} is an existing file, not a folder; give a folder for the results")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".augur-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SpecError(f"cannot write results into {what} {path}: {exc.strerror or exc}; give a folder you "
                        f"can write to") from None
    return path


def check_out_file(path, what: str = "--output") -> str:
    """``check_out_dir`` for the folder of an output file, and the file itself must not be a folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise SpecError(f"{what} {path} is a folder; give a file name")
    # the message names the file the user gave, then its folder
    check_out_dir(os.path.dirname(os.path.abspath(path)), f"the folder of {what} {path}:")
    return path


def fallback_dir(prefix: str = "augur-out-") -> str:
    """A fresh temporary folder for results whose folder could not be written at the end of a run."""
    return tempfile.mkdtemp(prefix=prefix)
