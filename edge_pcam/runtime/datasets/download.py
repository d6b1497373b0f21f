"""Download the official PCam files listed in the package's manifest, resumably, checking MD5s.

Each file is fetched into `NAME.part`; an interrupted transfer resumes from the
part file's length with an HTTP Range request. Only when the whole file's MD5
(and size, where the manifest knows it) matches is it renamed to `NAME`; a file
whose MD5 does not match is deleted and reported as an error, never as done.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import SPLITS
from edge_pcam.runtime.datasets.progress import ByteProgress, rich_bar
from edge_pcam.runtime.fileio import commit_file

MANIFEST = "pcam_manifest.json"
PCAM_PREFIX = "camelyonpatch_level_2_split_"  # left out of progress descriptions
CHUNK = 1 << 20
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ManifestFile:
    """One file the manifest lists."""

    name: str
    split: str
    md5: str
    size: int | None


@dataclass(frozen=True)
class Manifest:
    """The official files and where they are hosted."""

    base_url: str
    files: tuple[ManifestFile, ...]

    def for_splits(self, splits: Sequence[str]) -> list[ManifestFile]:
        unknown = sorted(set(splits) - {f.split for f in self.files})
        if unknown:
            raise DataError(f"unknown split(s) {', '.join(unknown)} (choose from {', '.join(SPLITS)})")
        return [f for f in self.files if f.split in splits]


@dataclass(frozen=True)
class Downloaded:
    """What happened to one file: status is 'downloaded', 'resumed' or 'present' (already there, MD5 checked)."""

    name: str
    path: Path
    status: str
    size: int


def load_manifest(path: str | Path | None = None) -> Manifest:
    """The manifest at `path`, or the one shipped in the package."""
    try:
        if path is None:
            text = resources.files("edge_pcam.runtime.datasets").joinpath(MANIFEST).read_text("utf-8")
            source = MANIFEST
        else:
            text, source = Path(path).read_text("utf-8"), str(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text)
        files = tuple(ManifestFile(name=f["name"], split=f["split"], md5=f["md5"].lower(),
                                   size=None if f.get("size") is None else int(f["size"]))
                      for f in raw["files"])
        return Manifest(base_url=raw["base_url"], files=files)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}: not a valid manifest ({type(exc).__name__}: {exc})") from None


def download(dest: str | Path, splits: Sequence[str] = SPLITS, base_url: str | None = None,
             manifest: Manifest | None = None, progress: ByteProgress = rich_bar) -> list[Downloaded]:
    """Fetch the manifest's files for `splits` into `dest` (created if needed); returns what was done."""
    manifest = manifest or load_manifest()
    base = (base_url or manifest.base_url).rstrip("/")
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest}: cannot create folder ({exc.strerror or exc})") from None
    return [download_file(f"{base}/{f.name}", dest / f.name, f.md5, f.size, progress)
            for f in manifest.for_splits(list(splits))]


def download_file(url: str, target: Path, md5: str, size: int | None = None,
                  progress: ByteProgress = rich_bar) -> Downloaded:
    """Fetch `url` to `target` through `target.part`, resuming a partial file, then check the MD5."""
    target = Path(target)
    if target.exists():
        _check(target, md5, size, url, target, delete=False)
        return Downloaded(target.name, target, "present", target.stat().st_size)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    status = "resumed" if offset else "downloaded"
    if size is None or offset < size:
        _fetch(url, part, offset, size, progress)
    _check(part, md5, size, url, target, delete=True)
    commit_file(part, target)
    return Downloaded(target.name, target, status, target.stat().st_size)


def md5_file(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, part: Path, offset: int, size: int | None, progress: ByteProgress) -> None:
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if offset and getattr(response, "status", 200) != 206:
                offset = 0  # the server ignored the Range header: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            with part.open("ab" if offset else "wb") as out, \
                    progress(f"downloading {part.name[:-5].removeprefix(PCAM_PREFIX)}", total, offset) as advance:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
            if total is not None and offset + received < total:
                # http.client ends a body cut short quietly: compare with the announced length.
                raise http.client.IncompleteRead(b"", total - offset - received)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # nothing left to fetch: the part file is already whole; the MD5 check decides
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (http.client.HTTPException, urllib.error.URLError, OSError) as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
        if not received:
            raise DataError(f"{url}: download failed ({reason})") from None
        raise DataError(f"{url}: transfer interrupted after {offset + received:,} bytes ({reason}); "
                        f"run the same command again to resume from {part.name}") from None


def _check(path: Path, md5: str, size: int | None, url: str, target: Path, delete: bool) -> None:
    """Raise a DataError unless `path` has the expected size and MD5; a bad download is deleted."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        if actual_size < size:
            raise DataError(f"{path}: {actual_size:,} of {size:,} bytes; run the same command again to resume")
        raise DataError(f"{path}: {actual_size:,} bytes, more than the manifest's {size:,}"
                        + _bad_file(path, delete))
    actual = md5_file(path)
    if actual != md5:
        raise DataError(f"{target}: MD5 {actual} does not match the manifest's {md5} (from {url})"
                        + _bad_file(path, delete))


def _bad_file(path: Path, delete: bool) -> str:
    if delete:
        path.unlink()
        return "; the download was deleted: run the command again to retry"
    return f"; delete {path.name} (or move it away) and run the command again"
