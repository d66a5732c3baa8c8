"""The converter's temporary output directory next to DST, and its clean-up.

The output is written into a hidden ``.<dst name>.bitnet_ext-convert.<8 hex>.tmp``
directory in DST's parent and renamed to DST when complete, so DST never holds
a partial model. The directory is made with ``os.mkdir(path, 0o777)``: it (and
so DST) gets the mode the umask gives, as any new directory does.

A run killed with SIGKILL cannot remove its directory. So that the next run
can tell such a leftover is *ours* and *stale*, and never deletes anything
else, the converter holds a ``flock`` on its directory for as long as it runs;
the kernel drops the lock when the process dies, however it dies. A run for
DST deletes every directory with that name pattern whose lock it can take.
The directory is locked under a name outside the pattern and only then renamed
into it, so a live run is never mistaken for a dead one.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import List, Optional

try:
    import fcntl
except ImportError:  # no flock (Windows): leftovers are never judged stale
    # mypy types the name as the module and has no spelling for "the module or None".
    fcntl = None  # type: ignore[assignment]

from ._checkpoint_files import ConversionError

__all__ = ["Staging", "remove_stale"]

_TAG = "bitnet_ext-convert"
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _lock(fd: int) -> bool:
    """Take the lock of ``fd`` without waiting; False when another process holds it (or flock is missing)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale(dst: Path) -> List[str]:
    """Delete the temporary directories killed runs for ``dst`` left behind; returns their names."""
    pattern = re.compile(r"\." + re.escape(dst.name) + r"\." + _TAG + r"\.[0-9a-f]{8}\.tmp")
    removed: List[str] = []
    try:
        names = sorted(os.listdir(dst.parent))
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        try:
            fd = os.open(dst.parent / name, _DIR_FLAGS)  # refuses a symlink or a file of that name
        except OSError:
            continue
        try:
            if _lock(fd):  # no converter holds it: its run is gone
                shutil.rmtree(dst.parent / name, ignore_errors=True)
                removed.append(name)
        finally:
            os.close(fd)
    return removed


class Staging:
    """A locked temporary directory for ``dst``; :meth:`commit` renames it to ``dst``."""

    def __init__(self, dst: Path):
        self.dst = dst
        self.path: Optional[Path] = None
        self._fd: Optional[int] = None
        try:
            self._create()
        except OSError as e:
            self.discard()
            raise ConversionError(
                f"cannot create a directory in DST's parent {dst.parent} ({e.strerror or e}); it must be writable"
            ) from None

    def _create(self) -> None:
        parent, tag = self.dst.parent, secrets.token_hex(4)
        new = parent / f".{self.dst.name}.{_TAG}.{tag}.new"
        os.mkdir(new, 0o777)  # the umask applies, as for any new directory
        self.path = new
        if fcntl is not None:  # (Windows cannot open a directory; nothing is judged stale there anyway)
            self._fd = os.open(new, _DIR_FLAGS)
            _lock(self._fd)
        final = parent / f".{self.dst.name}.{_TAG}.{tag}.tmp"
        if final.exists() or final.is_symlink():
            raise FileExistsError(f"{final} exists")
        os.rename(new, final)
        self.path = final

    def commit(self) -> None:
        """Replace ``dst`` (which may exist: --force) by the finished directory."""
        assert self.path is not None, "commit() after commit() or discard()"
        old = None
        if self.dst.exists():
            # Move the old DST into a locked directory of our own first (if we die
            # now, it is a stale leftover the next run removes), so that DST is
            # replaced by one rename.
            old = Staging(self.dst)
            assert old.path is not None  # Staging() raises unless it made its directory
            os.replace(self.dst, old.path / "old")
        os.replace(self.path, self.dst)
        self.path = None
        self.discard()
        if old is not None:
            old.discard()

    def discard(self) -> None:
        """Remove the directory (unless committed) and drop the lock."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None
