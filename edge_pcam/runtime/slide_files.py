"""Which files under a folder are slides, the files each consists of, its name, and its content digest.

Shared by `edge-pcam scan FOLDER` and `edge-pcam watch INBOX`: slides are
files with a whole-slide suffix (`SLIDE_SUFFIXES`), in the folder and its
subfolders; hidden files and folders and the usual partial-download names
are skipped. An MRXS slide is its .mrxs file and the data folder of the same
name beside it (not searched for slides itself).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide")
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", "~")
HASH_CHUNK = 8 << 20


def find_slides(root: Path, onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[Path]]]:
    """(path relative to `root`, the slide's files) for every slide under `root`, in name order.

    `onerror` gets the OSError of a folder that cannot be listed (the walk goes on).
    """
    for folder, dirs, names in os.walk(root, onerror=onerror):
        stems = {Path(n).stem for n in names if n.lower().endswith(".mrxs")}
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in stems)
        for name in sorted(names):
            lower = name.lower()
            if name.startswith(".") or lower.endswith(PARTIAL_SUFFIXES) or not lower.endswith(SLIDE_SUFFIXES):
                continue
            path = Path(folder) / name
            yield path.relative_to(root).as_posix(), slide_parts(path)


def slide_parts(path: Path) -> list[Path]:
    """The files a slide consists of: itself, and for MRXS the files of its data folder."""
    parts = [path]
    data = path.with_suffix("")
    if path.suffix.lower() == ".mrxs" and data.is_dir():
        parts += sorted(p for p in data.iterdir() if p.is_file())
    return parts


def content_digest(files: list[Path]) -> str:
    """SHA-256 of the slide's bytes (for MRXS, of each file's name and bytes in turn)."""
    digest = hashlib.sha256()
    for i, path in enumerate(files):
        if i:
            digest.update(path.name.encode("utf-8", errors="surrogateescape") + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def slide_stem(name: str) -> str:
    """The file name without its folders and slide suffixes: 'a/b.ome.tif' -> 'b'."""
    stem = Path(name).name
    for suffix in (".ome.tif", ".ome.tiff", *SLIDE_SUFFIXES):
        if stem.lower().endswith(suffix):
            return stem[:-len(suffix)] or stem
    return stem
