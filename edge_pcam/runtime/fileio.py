"""Writing output files: atomically, into folders checked before any work, JSON with numpy values.

Every file edge-pcam writes goes through `atomic_path` (or the `atomic_write_*`
helpers built on it). Its guarantees:

- the data goes to a new temporary file in the target's own folder (same file
  system, so the rename below is atomic), named `.NAME.<random>.tmp`;
- the temporary file is flushed and fsync'd, then renamed over the target with
  `os.replace`: a reader (or a run after a kill or a power cut) sees the old
  file or the whole new one, never a part;
- the folder is fsync'd after the rename (POSIX), so the rename itself is on
  disk when the call returns;
- the file gets the mode of any new file there: it is created with 0666 and
  the kernel applies the umask (not the 0600 of `tempfile.mkstemp`; no
  process-wide umask change, so it is safe beside other threads);
- on an error (or a KeyboardInterrupt) the temporary file is removed and the
  target is left as it was.

`check_output_folder`, `prepare_output_folder` and `check_output_file` turn a
missing or read-only destination into a one-line error before the work starts;
`check_not_input` refuses an output that would overwrite an input.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import EdgePcamError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without error.

    For writers that want a file name (Pillow, Keras, h5py); the guarantees are the module's.
    """
    path = Path(path)
    tmp = _create_new(path.parent, f".{path.name}.", ".tmp")
    try:
        yield tmp
        commit_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def commit_files(moves: list[tuple[Path, Path]]) -> None:
    """fsync each finished file, rename it over its target (same file system), then fsync the target folders once."""
    for written, _ in moves:
        with open(written, "rb") as f:
            os.fsync(f.fileno())
    for written, path in moves:
        os.replace(written, path)
    for folder in {Path(path).parent for _, path in moves}:
        sync_folder(folder)


def commit_file(written: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync the finished file `written`, rename it to `path` (same folder) and fsync the folder."""
    commit_files([(Path(written), Path(path))])


def sync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so that renames and new names in it survive a power cut (a no-op off POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module's guarantees)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically; names that are not valid UTF-8 keep their bytes."""
    atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> None:
    """Write `obj` as JSON (numpy values allowed, see `to_json`) and a newline to `path` atomically."""
    atomic_write_text(path, to_json(obj, indent=indent) + "\n")


def to_json(obj: Any, indent: int | None = 1, allow_nan: bool = True) -> str:
    """`json.dumps` that also takes numpy scalars and arrays and paths (`json_default`).

    Output is ASCII (`ensure_ascii`): a file name that is not valid UTF-8 is written
    as escapes instead of failing.
    """
    return json.dumps(obj, indent=indent, default=json_default, allow_nan=allow_nan)


def json_default(obj: Any) -> Any:
    """The JSON value of a numpy scalar (its Python number), a numpy array (lists) or a path (str)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def prepare_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder `path` if needed and prove a file can be written there; a one-line error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _create_new(path, ".edge-pcam-write-test-", "").unlink()
    except OSError as exc:
        raise EdgePcamError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check, before any work and creating nothing, that the folder `path` can be written: it is a folder
    that takes files, or it does not exist yet and its nearest existing parent is one (it is made later)."""
    path = Path(path)
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        which = "it" if existing == path else str(existing)
        raise EdgePcamError(f"{path}: cannot write the {what}: {which} is a file, not a folder")
    _probe(existing, f"{path}: cannot write the {what}")
    return path


def check_not_input(output: str | os.PathLike, inputs: list[str | os.PathLike], option: str) -> None:
    """A one-line error when the output file `output` is one of the input files (it would be overwritten)."""
    for given in inputs:
        if os.path.isfile(given) and os.path.exists(output) and os.path.samefile(given, output):
            raise EdgePcamError(f"{output}: {option} would overwrite the input file {given}; name another file")


def check_output_file(path: str | os.PathLike) -> Path:
    """Check, before any work, that the file `path` can be written: its folder exists and takes files,
    and it is not a folder. The folder is not created (a mistyped folder is an error, not a surprise)."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise EdgePcamError(f"{path}: is a folder, not a file")
    if not folder.is_dir():
        raise EdgePcamError(f"{path}: the folder {folder} does not exist")
    _probe(folder, f"{path}: cannot write in {folder}")
    return path


def _probe(folder: Path, failure: str) -> None:
    """Create and remove a file in `folder`; EdgePcamError `failure (reason)` when it cannot be."""
    try:
        _create_new(folder, ".edge-pcam-write-test-", "").unlink()
    except OSError as exc:
        raise EdgePcamError(f"{failure} ({exc.strerror or exc})") from None


def _create_new(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file `folder/prefix<random>suffix`, created 0666 & ~umask."""
    while True:
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue
