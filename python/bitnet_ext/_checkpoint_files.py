"""Reading an untrusted model directory (SRC) without ever leaving it.

A checkpoint names files itself (the index's ``weight_map``, shard names) and
may hold symlinks, FIFOs or symlink loops. Everything the converter reads goes
through :class:`SourceDir`, which enforces:

* a name that comes from the checkpoint is a plain file name: no path
  separator, not ``.`` or ``..``, not absolute;
* every path, after following symlinks, lies inside SRC (or, for a Hugging
  Face cache snapshot, inside that repository's ``blobs/`` directory, where the
  cache's own symlinks point);
* it is a regular file (a FIFO would block the reader forever, a device or
  socket is not model data), opened read-only and without following a symlink
  swapped in after the check;
* JSON files are UTF-8, of bounded size, and of the expected top-level type.

Every violation raises :class:`ConversionError` with a one-line reason.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

__all__ = ["ConversionError", "SourceDir", "MAX_JSON_BYTES"]

# config.json and the index of a 400B-parameter model are a few MB; anything
# far larger is not one of them (and is not read into memory to find out).
MAX_JSON_BYTES = 100 << 20


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


def resolve(path: Path, what: str) -> Path:
    """``path`` with every symlink followed; the last component need not exist."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: symlink loop (Python < 3.13)
        raise ConversionError(f"{what} {path}: cannot resolve its symlinks ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def check_plain_name(name: object, what: str) -> str:
    """``name`` if it is a plain file name; else ConversionError naming ``what``."""
    if not isinstance(name, str):
        raise ConversionError(f"{what} must be a file name (a string), got {type(name).__name__} {name!r}")
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or (os.altsep and os.altsep in name)
        or os.sep in name
        or "\0" in name
        or os.path.isabs(name)
    ):
        raise ConversionError(
            f"{what} is {name!r}, which is not a plain file name in the model directory "
            "(path separators, '..' and absolute paths are refused)"
        )
    return name


def _hf_cache_blobs(root: Path) -> Optional[Path]:
    """``models--org--name/blobs`` when ``root`` is ``models--org--name/snapshots/<revision>``.

    A Hugging Face cache snapshot is a directory of symlinks into the
    repository's ``blobs/``; refusing those would refuse every downloaded model.
    """
    if root.parent.name == "snapshots":
        blobs = root.parent.parent / "blobs"
        if blobs.is_dir() and not blobs.is_symlink():
            return blobs
    return None


class SourceDir:
    """A model directory read under the rules of the module doc."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists() and not path.is_symlink():
            raise ConversionError(f"SRC {path} does not exist")
        self.root = resolve(path, "SRC")
        if not self.root.is_dir():
            raise ConversionError(f"SRC {path} is not a directory (expected a model directory with config.json)")
        blobs = _hf_cache_blobs(self.root)
        self._roots: Tuple[Path, ...] = (self.root,) if blobs is None else (self.root, blobs.resolve())

    def _inside(self, p: Path) -> bool:
        return any(p == r or r in p.parents for r in self._roots)

    def entry(self, rel: Path, what: str) -> Tuple[Path, str]:
        """(resolved path, "file" or "dir") of ``rel`` under SRC, checked; "missing" if there is none."""
        p = self.root / rel
        if not p.is_symlink() and not p.exists():
            return p, "missing"
        try:
            real = p.resolve(strict=True)
        except FileNotFoundError:
            raise ConversionError(f"{what} {p} is a broken symlink") from None
        except (RuntimeError, OSError) as e:
            raise ConversionError(f"{what} {p}: cannot follow its symlinks ({_reason(e)}); a symlink loop?") from None
        if not self._inside(real):
            raise ConversionError(f"{what} {p} is a symlink to {real}, outside the model directory {self.root}")
        mode = os.stat(real).st_mode
        if stat.S_ISREG(mode):
            return real, "file"
        if stat.S_ISDIR(mode):
            return real, "dir"
        raise ConversionError(f"{what} {p} is not a regular file (a FIFO, socket or device is not model data)")

    def file(self, name: object, what: str) -> Optional[Path]:
        """The resolved path of the regular file ``name`` (a checkpoint-provided plain name); None if missing."""
        plain = check_plain_name(name, what)
        real, kind = self.entry(Path(plain), what)
        if kind == "missing":
            return None
        if kind != "file":
            raise ConversionError(f"{what} {self.root / plain} is a directory, expected a file")
        return real

    def read_json(self, name: str, what: str, expect: type = dict) -> Any:
        """The parsed JSON file ``name``, which must hold a value of type ``expect``; None if missing."""
        real = self.file(name, what)
        if real is None:
            return None
        with open_regular(real, what) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise ConversionError(f"{what} {real} is {size} bytes, too large to be a JSON file of a checkpoint")
            raw = f.read()
        return parse_json(raw, f"{what} {self.root / name}", expect)

    def listing(self, rel: Path = Path(".")) -> List[str]:
        """Sorted names in the (already checked) directory ``rel`` of SRC."""
        return sorted(os.listdir(self.root / rel))


def parse_json(raw: bytes, what: str, expect: type) -> Any:
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ConversionError(f"{what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # json.JSONDecodeError
        raise ConversionError(f"{what}: not valid JSON: {e}") from None
    except RecursionError:
        raise ConversionError(f"{what}: JSON nested too deeply") from None
    if not isinstance(value, expect):
        kinds: Dict[type, str] = {dict: "a JSON object", list: "a JSON array"}
        raise ConversionError(f"{what} must hold {kinds.get(expect, expect.__name__)}, got {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    kinds: Dict[type, str] = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), f"the number {value!r}")


def open_regular(real: Path, what: str) -> BinaryIO:
    """``real`` (a resolved path) opened read-only; refuses anything but a regular file.

    O_NOFOLLOW: a symlink put in its place after the checks is not followed.
    O_NONBLOCK: a FIFO put in its place does not block the open (fstat then
    refuses it); it has no effect on reading a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as e:
        raise ConversionError(f"{what} {real}: cannot open it ({_reason(e)})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConversionError(f"{what} {real} is not a regular file")
    return os.fdopen(fd, "rb")
