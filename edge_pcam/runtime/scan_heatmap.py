"""The scan's picture: P(tumour) over the tissue, regions outlined, a scale bar and a legend a person can read.

- Tissue stays visible where the model sees nothing: cells below the triage
  threshold are not painted at all; above it the colour runs from pale yellow
  to dark red and the opacity grows with P(tumour). Without a triage
  threshold the opacity grows from zero at P = 0.
- Suspicious regions (level-0 outlines, `runtime.regions`) are drawn in black
  on a white halo and numbered; the top tiles are boxed and ranked.
- Areas left out by quality control are hatched, one colour per reason,
  their area in mm² in the legend.
- A scale bar in mm (from the scan's µm per pixel), and a header and legend
  with the slide's name, the model, the colour bar with its thresholds, a
  key to the marks and "research use only".

`paint_overlay` draws on the picture itself (same size); `add_legend` frames
it; `render_heatmap` does both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A sequential map for the painted cells: pale yellow (the triage threshold) to dark red (P = 1).
_ANCHORS = np.array([
    [0.00, 255, 237, 160], [0.35, 254, 178, 76], [0.70, 240, 59, 32], [1.00, 128, 0, 38],
], np.float64)
ALPHA_RANGE = (0.3, 0.7)  # opacity at the triage threshold and at P = 1: the tissue shows through
QC_COLOURS = [(70, 70, 200), (0, 140, 140), (150, 60, 170), (90, 90, 90)]  # hatch colour per QC reason
HATCH_PERIOD = 6  # pixels between hatch lines
SCALE_BAR_STEPS_MM = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20)
OUTLINE, HALO = (0, 0, 0), (255, 255, 255)
THRESHOLD_NAMES = {"triage": "triage", "decision": "decision", "high_specificity": "high specificity"}
INTENDED_USE = "research use only: not a diagnostic device"


class RegionOutline(Protocol):
    """What the picture needs of a region (`runtime.regions.Region` has it)."""

    outline: Sequence[tuple[float, float]]
    holes: Sequence[Sequence[tuple[float, float]]]


def colormap(values: np.ndarray) -> np.ndarray:
    """uint8 RGB for values in [0, 1] (0: the lowest painted P, 1: P = 1)."""
    v = np.clip(np.asarray(values, np.float64), 0, 1)
    return np.stack([np.interp(v, _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.uint8)


def cell_colours(probabilities: np.ndarray, floor: float | None) -> np.ndarray:
    """RGBA (rows, cols, 4) for each cell: transparent below `floor` (the triage threshold) and where NaN."""
    p = np.nan_to_num(probabilities, nan=-1.0)
    low = floor if floor is not None else 0.0
    t = np.clip((p - low) / max(1e-9, 1 - low), 0, 1)
    start = ALPHA_RANGE[0] if floor is not None else 0.0
    alpha = np.where(p >= low, 255 * (start + (ALPHA_RANGE[1] - start) * t), 0)
    return np.dstack([colormap(t), np.rint(alpha).astype(np.uint8)])


def scale_bar(mm_per_pixel: float, max_pixels: float) -> tuple[float, float]:
    """(length in mm, length in pixels) of the longest SCALE_BAR_STEPS_MM bar that fits in `max_pixels`."""
    fitting = [mm for mm in SCALE_BAR_STEPS_MM if mm / mm_per_pixel <= max_pixels]
    mm = fitting[-1] if fitting else SCALE_BAR_STEPS_MM[0]
    return mm, mm / mm_per_pixel


def paint_overlay(picture: np.ndarray, probabilities: np.ndarray, stride: int, tile: int, scale: float,
                  origin: tuple[float, float], triage: float | None = None, top: Sequence[tuple[int, int]] = (),
                  *, regions: Sequence[RegionOutline] = (), level0_per_scan_pixel: float = 1.0,
                  excluded: Mapping[str, np.ndarray] | None = None, scan_mpp: float | None = None) -> Image.Image:
    """`picture` with the probabilities, QC hatching, region outlines, top tiles and scale bar drawn on it.

    `probabilities` is the scan grid (rows, cols), NaN where no tile was
    classified; cell (r, c) is the stride square centred on tile (r, c).
    `scale` is picture pixels per scan pixel, `origin` the scan-pixel (x, y)
    of the picture's top-left; region outlines are in level-0 pixels
    (`level0_per_scan_pixel` of them per scan pixel). `excluded` maps a QC
    reason to a boolean (rows, cols) grid of the cells it left out.
    `scan_mpp` (µm per scan pixel) gives the scale bar.
    """
    base = Image.fromarray(picture).convert("RGBA")
    grid = _grid_placement(probabilities.shape, stride, tile, scale, origin, base.size)
    if grid is not None:
        (r0, r1, c0, c1), size, corner = grid
        overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
        cells = Image.fromarray(cell_colours(probabilities[r0:r1, c0:c1], triage), "RGBA")
        overlay.paste(cells.resize(size, Image.NEAREST), corner)
        base = Image.alpha_composite(base, overlay)
        for index, (reason, mask) in enumerate((excluded or {}).items()):
            hatch = _hatch_layer(mask[r0:r1, c0:c1], size, corner, base.size, QC_COLOURS[index % len(QC_COLOURS)])
            base = Image.alpha_composite(base, hatch)
    image = base.convert("RGB")
    draw = ImageDraw.Draw(image)
    line = max(2, image.width // 400)
    ox, oy = origin

    def to_picture(point: tuple[float, float]) -> tuple[float, float]:
        return ((point[0] / level0_per_scan_pixel - ox) * scale, (point[1] / level0_per_scan_pixel - oy) * scale)

    font = _font(max(11, image.width // 60))
    for number, region in enumerate(regions, start=1):
        for ring in (region.outline, *region.holes):
            points = [to_picture(p) for p in ring]
            draw.line(points, fill=HALO, width=line + 2, joint="curve")
            draw.line(points, fill=OUTLINE, width=line, joint="curve")
        x, y = min(to_picture(p)[0] for p in region.outline), min(to_picture(p)[1] for p in region.outline)
        draw.text((x, y - 2), str(number), fill=OUTLINE, font=font, anchor="ld", stroke_width=2, stroke_fill=HALO)
    for rank, (r, c) in enumerate(top, start=1):
        x0, y0 = (c * stride - ox) * scale, (r * stride - oy) * scale
        draw.rectangle((x0, y0, x0 + tile * scale, y0 + tile * scale), outline=(40, 40, 40), width=max(1, line // 2))
        draw.text((x0 + 3, y0 + 2), f"#{rank}", fill=(0, 0, 0), font=font, stroke_width=2, stroke_fill=HALO)
    if scan_mpp:
        _draw_scale_bar(draw, image.size, scan_mpp / 1000 / scale, font)
    return image


def add_legend(image: Image.Image, thresholds: Mapping[str, float], *, title: str | None = None,
               model: str | None = None, qc_reasons: Sequence[str] = (), regions: int = 0,
               top: int = 0, qc_mm2: Mapping[str, float] | None = None) -> Image.Image:
    """`image` under a header (slide, model) and above a legend: colour bar with thresholds, marks, QC key
    (with each reason's area from `qc_mm2` where given), and the intended use."""
    width = image.width
    pad = max(6, width // 120)
    font, small = _font(max(12, width // 45)), _font(max(11, width // 60))
    line_h = small.getbbox("Ag")[3] + pad // 2
    header_h = font.getbbox("Ag")[3] + 2 * pad if title or model else 0
    keys = ([("outline", f"suspicious region ({regions})")] if regions else []) + \
        ([("box", f"top tiles ({top}), ranked")] if top else []) + \
        [("hatch", f"left out: {reason}" + (f", {qc_mm2[reason]:.3g} mm^2" if reason in (qc_mm2 or {}) else ""))
         for reason in qc_reasons]
    bar_h = max(10, width // 50)
    legend_h = pad + bar_h + 3 * line_h + pad + (len(keys) + 1) * line_h + pad
    out = Image.new("RGB", (width, header_h + image.height + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    if header_h:
        draw.text((pad, pad), title or "", fill=(0, 0, 0), font=font)
        if model:
            draw.text((width - pad, pad), f"model {model}", fill=(60, 60, 60), font=small, anchor="ra")
    out.paste(image, (0, header_h))
    y = header_h + image.height + pad
    _draw_colour_bar(out, draw, (pad, y, width - pad, y + bar_h), thresholds, small, line_h)
    y += bar_h + 3 * line_h + pad
    qc = iter(QC_COLOURS * (len(qc_reasons) // len(QC_COLOURS) + 1))
    for kind, label in keys:
        box = (pad, y + 2, pad + 2 * line_h, y + line_h - 2)
        if kind == "outline":
            draw.rectangle(box, outline=OUTLINE, width=2)
        elif kind == "box":
            draw.rectangle(box, outline=(40, 40, 40), width=1)
        else:
            size = (box[2] - box[0], box[3] - box[1])
            hatch = _hatch_layer(np.ones((1, 1), bool), size, (0, 0), size, next(qc))
            out.paste(Image.alpha_composite(Image.new("RGBA", size, (255, 255, 255, 255)), hatch).convert("RGB"),
                      box[:2])
            draw.rectangle(box, outline=(120, 120, 120), width=1)
        draw.text((box[2] + pad, y), label, fill=(0, 0, 0), font=small)
        y += line_h
    draw.text((pad, y), INTENDED_USE, fill=(0, 0, 0), font=small)
    return out


def render_heatmap(picture: np.ndarray, probabilities: np.ndarray, stride: int, tile: int, scale: float,
                   origin: tuple[float, float], thresholds: Mapping[str, float],
                   top: Sequence[tuple[int, int]] = (), *, title: str | None = None, model: str | None = None,
                   regions: Sequence[RegionOutline] = (), level0_per_scan_pixel: float = 1.0,
                   excluded: Mapping[str, np.ndarray] | None = None, excluded_mm2: Mapping[str, float] | None = None,
                   scan_mpp: float | None = None) -> Image.Image:
    """The whole picture: `paint_overlay` (triage threshold from `thresholds`) framed by `add_legend`."""
    painted = paint_overlay(picture, probabilities, stride, tile, scale, origin, thresholds.get("triage"), top,
                            regions=regions, level0_per_scan_pixel=level0_per_scan_pixel, excluded=excluded,
                            scan_mpp=scan_mpp)
    return add_legend(painted, thresholds, title=title, model=model, qc_reasons=list(excluded or {}),
                      regions=len(regions), top=len(top), qc_mm2=excluded_mm2)


def _grid_placement(shape: tuple[int, int], stride: int, tile: int, scale: float, origin: tuple[float, float],
                    size: tuple[int, int]):
    """The grid cells inside the picture ((r0, r1, c0, c1)), their size in picture pixels and top-left corner."""
    rows, cols = shape
    ox, oy = origin
    r0, c0 = max(0, int((oy - tile) // stride)), max(0, int((ox - tile) // stride))
    r1 = min(rows, int((oy + size[1] / scale) // stride) + 2)
    c1 = min(cols, int((ox + size[0] / scale) // stride) + 2)
    if r1 <= r0 or c1 <= c0:
        return None
    pixels = (max(1, round((c1 - c0) * stride * scale)), max(1, round((r1 - r0) * stride * scale)))
    corner = (round((c0 * stride + (tile - stride) / 2 - ox) * scale),
              round((r0 * stride + (tile - stride) / 2 - oy) * scale))
    return (r0, r1, c0, c1), pixels, corner


def _hatch_layer(mask: np.ndarray, size: tuple[int, int], corner: tuple[int, int], canvas: tuple[int, int],
                 colour: tuple[int, int, int]) -> Image.Image:
    """An RGBA layer of `canvas` size: diagonal lines of `colour` over the cells of `mask` (placed like the grid)."""
    cells = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    area = Image.new("L", canvas, 0)
    area.paste(cells, corner)
    yy, xx = np.mgrid[:canvas[1], :canvas[0]]
    lines = ((xx + yy) % HATCH_PERIOD) < 2
    alpha = np.where(lines & (np.asarray(area) > 0), 220, 0).astype(np.uint8)
    rgb = np.broadcast_to(np.array(colour, np.uint8), (*alpha.shape, 3))
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _draw_scale_bar(draw: ImageDraw.ImageDraw, size: tuple[int, int], mm_per_pixel: float,
                    font: ImageFont.ImageFont) -> None:
    """A black bar with its length in mm, bottom left, on a white box."""
    mm, length = scale_bar(mm_per_pixel, size[0] / 4)
    pad, thick = max(6, size[0] // 100), max(4, size[0] // 200)
    label = f"{mm:g} mm"
    text_h = font.getbbox(label)[3]
    x0, y1 = 2 * pad, size[1] - 2 * pad
    draw.rectangle((x0 - pad, y1 - thick - text_h - 2 * pad, x0 + max(length, font.getlength(label)) + pad, y1 + pad),
                   fill=(255, 255, 255))
    draw.rectangle((x0, y1 - thick, x0 + round(length) - 1, y1 - 1), fill=(0, 0, 0))
    draw.text((x0, y1 - thick - pad // 2), label, fill=(0, 0, 0), font=font, anchor="ld")


def _draw_colour_bar(image: Image.Image, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                     thresholds: Mapping[str, float], font: ImageFont.ImageFont, line_h: int) -> None:
    """The P(tumour) scale from 0 to 1: plain (unpainted) below the triage threshold, then the colours;
    every threshold marked and named."""
    x0, y0, x1, y1 = box
    width = x1 - x0
    p = np.linspace(0, 1, width)
    rgba = cell_colours(p[None, :], thresholds.get("triage"))[0]
    alpha = rgba[:, 3:4].astype(np.float64) / 255
    row = (rgba[:, :3] * alpha + np.array([232, 220, 232]) * (1 - alpha)).astype(np.uint8)  # over a tissue tint
    image.paste(Image.fromarray(np.repeat(row[None], y1 - y0, axis=0)), (x0, y0))
    draw.rectangle(box, outline=(120, 120, 120), width=1)
    draw.text((x0, y1 + 2), "P(tumour) 0", fill=(0, 0, 0), font=font)
    draw.text((x1, y1 + 2), "1", fill=(0, 0, 0), font=font, anchor="ra")
    for i, (name, value) in enumerate(sorted(thresholds.items(), key=lambda kv: kv[1])):
        x = x0 + value * width
        draw.line((x, y0 - 2, x, y1 + 2), fill=(0, 0, 0), width=2)
        label = f"{THRESHOLD_NAMES.get(name, name)} {value:.2f}"
        half = font.getlength(label) / 2
        draw.text((min(max(x, x0 + half), x1 - half), y1 + 2 + (1 + i % 2) * line_h), label,
                  fill=(0, 0, 0), font=font, anchor="ma")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()
