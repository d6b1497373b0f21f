"""What the scan's resume check costs: the sampled slide digest against SHA-256 of the whole file.

    .venv/bin/python benchmarks/slide_digest.py            # writes a ~1.8 GiB tiled TIFF to a temporary folder
    .venv/bin/python benchmarks/slide_digest.py FILE.svs   # a slide of your own (left in place)

Prints the best of three runs of each, in ms, and the bytes each read (Linux's /proc/self/io).
The page cache is not dropped, so the whole-file figure is a lower bound: a slide read from an SD
card or a USB disk costs its size divided by that disk's read speed on top.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_pcam.runtime.scan.store import slide_digest

SIDE, TILE = 25_600, 256  # 1.83 GiB of uncompressed RGB tiles: the size of a typical 40x slide file


def write_noise_tiff(path: Path) -> None:
    import tifffile

    block = np.random.default_rng(0).integers(0, 256, (64, TILE, TILE, 3), dtype=np.uint8)
    tiles = (block[i % 64] for i in range((SIDE // TILE) ** 2))
    tifffile.imwrite(path, tiles, shape=(SIDE, SIDE, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     bigtiff=True)


def whole_file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_read() -> int:
    return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])


def measure(path: Path) -> None:
    print(f"{path.name}: {path.stat().st_size / 2**30:.2f} GiB; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    for name, digest in (("sampled slide digest", slide_digest), ("whole-file SHA-256", whole_file_sha256)):
        seconds, read = [], 0
        for _ in range(3):
            before, started = bytes_read(), time.perf_counter()
            digest(path)
            seconds.append(time.perf_counter() - started)
            read = bytes_read() - before
        print(f"  {name}: {1000 * min(seconds):.1f} ms (best of 3), {read / 2**20:.1f} MiB read")


def main() -> None:
    if len(sys.argv) > 1:
        measure(Path(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory(prefix="edge-pcam-digest-") as tmp:
        path = Path(tmp) / "noise.tif"
        write_noise_tiff(path)
        measure(path)


if __name__ == "__main__":
    main()
