"""`edge-pcam scan`: triage a whole slide (or a large image) on the device, in bounded memory.

The slide is resampled to PCam's 0.972 µm/px (or read straight from a pyramid
level within 1% of it), cut into 96-pixel tiles at `stride` over the tissue
found by PCam's saturation rule, and classified in batches. Each batch's
results are appended to `tiles.csv` as they come, so a scan that is killed
continues where it stopped when started again on the same slide (by content)
with the same model and settings; the report `scan.json` (written atomically)
appears only once every tile is done.

Outputs in the output folder:
  tiles.csv       row, col, x, y (level-0 pixels of the tile's top-left), probability
  heatmap.png     probabilities over a thumbnail, top tiles boxed, thresholds on the legend
  thumbnail.png   the thumbnail alone
  top/NN.png      the top-k tiles at scan scale (and NN_gradcam.png with `explain`)
  scan.json       slide, settings, model (SHA-256, thresholds), tumour burden, top tiles, timings

Modules, in the order a scan uses them:
  geometry   the grid at PCam's µm/px, the tissue mask, reading tiles and pictures
  store      tiles.csv, the resume key and the slide's content digest
  inference  the models that run and the loop (tiles read ahead in a thread)
  report     the typed `ScanReport` (scan.json), tumour burden, top tiles
  outputs    thumbnail, heatmap, top-tile pictures, scan.json, written atomically
  pipeline   `scan_slide`, which ties them together and returns a `ScanResult`
"""

from edge_pcam.runtime.scan.pipeline import ScanResult, scan_slide
from edge_pcam.runtime.scan.report import ScanReport

__all__ = ["ScanReport", "ScanResult", "scan_slide"]
