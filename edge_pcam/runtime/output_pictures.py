"""Pictures edge-pcam writes are marked as its own, so that no command reads them back as patches.

`gradcam` writes overlays and heatmaps that look like patches (96 x 96 RGB
PNGs); run into a folder that is also an input (`--out` the input folder, or
inside it), a second run would classify the first run's pictures. Each such
PNG carries a text chunk `edge-pcam` naming what it is; `is_output_picture`
reads only the PNG header (the chunk comes before the pixels).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, PngImagePlugin

MARK_KEY = "edge-pcam"
MARKED_SUFFIXES = ("_overlay.png", "_heatmap.png")  # the names gradcam gives; other names are never opened here


def output_mark(kind: str) -> PngImagePlugin.PngInfo:
    """The PNG text chunk for a picture of `kind` (e.g. "gradcam overlay"); pass as `pnginfo=` to Image.save."""
    info = PngImagePlugin.PngInfo()
    info.add_text(MARK_KEY, kind)
    return info


def is_output_picture(path: Path) -> bool:
    """True for a PNG edge-pcam wrote as an output picture (by its name, then its mark)."""
    if not path.name.lower().endswith(MARKED_SUFFIXES):
        return False
    try:
        with Image.open(path) as picture:
            return MARK_KEY in picture.info
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False  # not a readable PNG: the image loader says why
