"""The scan's picture: tile probabilities over the slide thumbnail, top tiles boxed, and a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A perceptually ordered map from dark blue (0) through teal and yellow-green to red (1).
_ANCHORS = np.array([
    [0.00, 48, 18, 59], [0.15, 70, 107, 227], [0.30, 40, 188, 235], [0.45, 50, 241, 152],
    [0.60, 164, 252, 60], [0.75, 251, 185, 56], [0.90, 228, 70, 10], [1.00, 122, 4, 3],
], np.float64)
ALPHA = 0.6


def colormap(values: np.ndarray) -> np.ndarray:
    """uint8 RGB for values in [0, 1]."""
    v = np.clip(np.asarray(values, np.float64), 0, 1)
    return np.stack([np.interp(v, _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.uint8)


def render_heatmap(picture: np.ndarray, probabilities: np.ndarray, stride: int, tile: int, scale: float,
                   origin: tuple[float, float], thresholds: dict[str, float],
                   top: list[tuple[int, int]] = ()) -> Image.Image:
    """`picture` with each scanned tile's probability painted over its stride cell.

    `probabilities` is the scan grid (rows, cols), NaN where no tile was
    scanned (glass); `scale` is picture pixels per scan pixel and `origin` the
    scan-pixel (x, y) of the picture's top-left; `top` lists (row, col) to box.
    """
    base = Image.fromarray(picture).convert("RGB")
    rows, cols = probabilities.shape
    ox, oy = origin
    # Cells that fall inside the picture; cell (r, c) is the stride square centred on tile (r, c).
    r0, c0 = max(0, int((oy - tile) // stride)), max(0, int((ox - tile) // stride))
    r1 = min(rows, int((oy + base.height / scale) // stride) + 2)
    c1 = min(cols, int((ox + base.width / scale) // stride) + 2)
    if r1 > r0 and c1 > c0:
        visible = probabilities[r0:r1, c0:c1]
        colours = colormap(np.nan_to_num(visible))
        alpha = np.where(np.isnan(visible), 0, int(255 * ALPHA)).astype(np.uint8)
        grid = Image.fromarray(np.dstack([colours, alpha]), "RGBA")
        size = (max(1, round((c1 - c0) * stride * scale)), max(1, round((r1 - r0) * stride * scale)))
        left = round((c0 * stride + (tile - stride) / 2 - ox) * scale)
        upper = round((r0 * stride + (tile - stride) / 2 - oy) * scale)
        overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
        overlay.paste(grid.resize(size, Image.NEAREST), (left, upper))
        base = Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(base)
    font = _font(max(10, base.width // 50))
    for rank, (r, c) in enumerate(top, start=1):
        x0, y0 = (c * stride - ox) * scale, (r * stride - oy) * scale
        x1, y1 = x0 + tile * scale, y0 + tile * scale
        draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0), width=max(1, base.width // 500))
        draw.text((x0 + 3, y0 + 2), str(rank), fill=(0, 0, 0), font=font, stroke_width=2, stroke_fill=(255, 255, 255))
    return _with_legend(base, thresholds, font)


def _with_legend(image: Image.Image, thresholds: dict[str, float], font: ImageFont.ImageFont) -> Image.Image:
    """`image` above a colour bar from 0 to 1 with the model's thresholds marked."""
    width = image.width
    bar_h, pad = max(8, width // 60), max(4, width // 150)
    text_h = font.getbbox("0")[3] + pad
    legend = Image.new("RGB", (width, pad + bar_h + 3 * text_h + pad), (255, 255, 255))
    bar = colormap(np.linspace(0, 1, width - 2 * pad))[None].repeat(bar_h, axis=0)
    legend.paste(Image.fromarray(bar), (pad, pad))
    draw = ImageDraw.Draw(legend)
    draw.text((pad, pad + bar_h + 2), "P(tumour) 0", fill=(0, 0, 0), font=font)
    draw.text((width - pad, pad + bar_h + 2), "1", fill=(0, 0, 0), font=font, anchor="ra")
    for i, (name, value) in enumerate(sorted(thresholds.items(), key=lambda kv: kv[1])):
        x = pad + value * (width - 2 * pad)
        draw.line((x, pad, x, pad + bar_h), fill=(0, 0, 0), width=2)
        label = f"{name} {value:.2f}"
        half = font.getlength(label) / 2 if hasattr(font, "getlength") else 0
        draw.text((min(max(x, pad + half), width - pad - half), pad + bar_h + 2 + (1 + i % 2) * text_h),
                  label, fill=(0, 0, 0), font=font, anchor="ma")
    out = Image.new("RGB", (width, image.height + legend.height), (255, 255, 255))
    out.paste(image, (0, 0))
    out.paste(legend, (0, image.height))
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()
