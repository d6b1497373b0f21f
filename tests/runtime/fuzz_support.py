"""The loaders' fuzz targets, run one per child process: `python fuzz_support.py TARGET WORKDIR`.

Each target takes a well-formed file (a committed fixture, or one written
here from synthetic patches), damages it with a few mutations drawn by
hypothesis (bit flips, truncation, inserted, deleted or overwritten bytes;
half of the positions in the first and last 4 KiB, where the headers and
indexes are) and reads it the way edge-pcam does. The only exceptions that
may leave a loader are edge-pcam's typed errors (EdgePcamError); anything
else fails the target with hypothesis' smallest example. A native crash
(the C libraries under Pillow, h5py, tifffile, OpenSlide, the interpreters)
kills the child: the parent test sees the signal, and the file that did it
is left in WORKDIR (`current.*`).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
MAX_EXAMPLES = int(os.environ.get("EDGE_PCAM_FUZZ_EXAMPLES", "60"))
HUNT_SEED = os.environ.get("EDGE_PCAM_FUZZ_SEED")  # a hunt beyond the fixed examples: another sequence
EDGE = 4096  # bytes at each end where mutations are drawn half of the time

Mutation = tuple[str, int, int]


def mutations(size: int) -> st.SearchStrategy[list[Mutation]]:
    """One to four (kind, position, value) edits of a file of `size` bytes."""
    anywhere = st.integers(0, max(size - 1, 0))
    ends = st.one_of(st.integers(0, min(EDGE, size) - 1), st.integers(max(size - EDGE, 0), max(size - 1, 0)))
    position = st.one_of(ends, anywhere)
    edit = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), position, st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=4)


def mutate(data: bytes, edits: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, pos, value in edits:
        pos = min(pos, max(len(out) - 1, 0))
        if not out and kind != "insert":
            continue
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "set":
            out[pos] = value
        elif kind == "insert":
            out[pos:pos] = bytes([value]) * (1 + value % 16)
        elif kind == "delete":
            del out[pos:pos + 1 + value % 64]
        else:
            del out[pos:]
    return bytes(out)


def fuzz(original: bytes, target: Path, load: Callable[[Path], object], found: list[list[Mutation]]) -> None:
    """Run `load(target)` on the mutations that once broke it (`found`), then on new mutations of
    `original`, written to `target`; only EdgePcamError may escape."""
    from edge_pcam.errors import EdgePcamError

    def with_found(test):
        for edits in found:
            test = example(edits)(test)
        return test

    @settings(max_examples=MAX_EXAMPLES, derandomize=HUNT_SEED is None, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @seed(int(HUNT_SEED or 0))
    @with_found
    @given(mutations(len(original)))
    def run(edits: list[Mutation]) -> None:
        target.write_bytes(mutate(original, edits))
        try:
            load(target)
        except EdgePcamError:
            pass

    run()


# --- targets: (well-formed bytes, file name, load) ---------------------------------------

def image_target(name: str) -> Callable[[Path], tuple[bytes, str, Callable[[Path], object]]]:
    def build(work: Path):
        from edge_pcam.runtime.images import load_patch
        source = FIXTURES / "patches" / name
        return source.read_bytes(), "current" + source.suffix, load_patch
    return build


def model_target(work: Path):
    from edge_pcam.runtime.interpreter import load_model
    return (FIXTURES / "models" / "tiny_int8.tflite").read_bytes(), "current.tflite", lambda p: load_model(p, threads=1)


def restamped_model_target(work: Path):
    """Mutations of the flatbuffer itself, with the card's digest made to match (a converter's bug, a
    deliberate file): the digest cannot catch them, the flatbuffer check must."""
    from edge_pcam.runtime.interpreter import load_model
    from edge_pcam.runtime.metadata import metadata_from_bytes, model_bytes, with_metadata

    data = (FIXTURES / "models" / "tiny_int8.tflite").read_bytes()
    flatbuffer, meta = model_bytes(data), metadata_from_bytes(data)
    work_file = work / "current.tflite"

    def load(path: Path) -> None:
        path.write_bytes(with_metadata(path.read_bytes(), meta))
        load_model(path, threads=1)

    return flatbuffer, work_file.name, load


def hdf5_target(work: Path):
    """A PCam valid split (x and y files) of 12 synthetic patches; x is mutated, y too in a copy."""
    import h5py

    from edge_pcam.runtime.classify import expand_inputs, iter_patches
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.runtime.datasets.synthetic import synthetic_patch

    folder = work / "pcam"
    folder.mkdir(exist_ok=True)
    patches = [synthetic_patch(5, i) for i in range(12)]
    x_file = folder / "camelyonpatch_level_2_split_valid_x.h5"
    with h5py.File(x_file, "w") as f:
        f.create_dataset("x", data=np.stack([p for p, _ in patches]), chunks=(4, 96, 96, 3), compression="gzip")
    with h5py.File(folder / "camelyonpatch_level_2_split_valid_y.h5", "w") as f:
        f["y"] = np.array([y for _, y in patches], np.uint8).reshape(-1, 1, 1, 1)

    def load(path: Path) -> None:
        os.replace(path, x_file)
        try:
            split = open_dataset(str(folder)).split("valid")
            split.read(np.arange(len(split)))
            sources, _ = expand_inputs([x_file])
            for _ in iter_patches(sources):
                pass
        finally:
            os.replace(x_file, path)

    original = x_file.read_bytes()
    x_file.rename(work / "current.h5")
    return original, "current.h5", load


def slide_target(container: str, compression: str):
    def build(work: Path):
        from edge_pcam.runtime.slide import open_slide
        from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

        made = write_synthetic_slide(work / f"made.{'svs' if container == 'svs' else 'tif'}", 1100, 900, mpp=0.486,
                                     tissue=(100, 100, 1000, 800), tumour=(300, 300, 600, 600), tile=256,
                                     container=container, compression=compression, min_level_size=256)

        def load(path: Path) -> None:
            with open_slide(path) as slide:
                for level, size in enumerate(slide.levels):
                    slide.read_region(level, 0, 0, min(size.width, 300), min(size.height, 300))

        return made.path.read_bytes(), "current" + made.path.suffix, load
    return build


TARGETS = {
    "png": image_target("synthetic_000.png"),
    "jpeg": image_target("synthetic_005.jpg"),
    "tiff": image_target("synthetic_012.tif"),
    "hdf5": hdf5_target,
    "model": model_target,
    "model-restamped": restamped_model_target,
    "slide-tiff": slide_target("tiff", "zlib"),
    "slide-svs": slide_target("svs", "jpeg"),
}


# Mutations the fuzzing found that broke a loader, run first every time (what each did before its fix).
FOUND: dict[str, list[list[Mutation]]] = {
    "model-restamped": [[("set", 255, 0x7F)]],  # the metadata table's vtable offset: SIGSEGV in tflite-runtime
    "hdf5": [[("flip", 706, 0)]],  # a name that reads as bytes: TypeError while saying what the file has
    "slide-tiff": [[("insert", 77, 0)],  # fewer tile offsets than tiles: IndexError
                   [("flip", 306, 0)]],  # a damaged size tag: TypeError or ZeroDivisionError
    "slide-svs": [[("insert", 269, 0)]],
}


def main(target: str, work: Path) -> None:
    warnings.simplefilter("ignore")  # edge-pcam's one-line warnings (an old card, a dubious file) are fine
    original, name, load = TARGETS[target](work)
    fuzz(original, work / name, load, FOUND.get(target, []))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
