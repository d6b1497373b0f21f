"""`edge-pcam scan`: triage a whole slide (or a large image) on the device, in bounded memory.

The slide is resampled to PCam's 0.972 µm/px (or read straight from a pyramid
level within 1% of it), cut into 96-pixel tiles at `stride` over the tissue
found by PCam's saturation rule with pen ink left out (`runtime.tissue`), and
classified in batches, each tile's sharpness measured beside (the blur check).
Each batch's results are appended to the progress log `.scan-progress.csv` as they come, so
a scan that is killed continues where it stopped when started again on the
same slide (by content) with the same model and settings; the outputs, and
last the report `scan.json`, are written (atomically) once every tile is done.
Only tiles that pass quality control count: in the outputs, the burden and the regions.

Outputs in the output folder:
  tiles.csv        x, y, width, height (level-0 pixels), probability, row, col: plain CSV
  scan.geojson     the tiles and suspicious regions for QuPath (File > Import objects)
  annotations.xml  the suspicious regions for ASAP (Camelyon16's XML)
  heatmap.png      P(tumour) over the tissue, regions outlined, QC hatched, scale bar, slide, model, thresholds
  thumbnail.png    the thumbnail alone
  top/NN.png       the top-k tiles at scan scale (and NN_gradcam.png with `explain`)
  scan.json        slide, settings, model (SHA-256, thresholds), raw counts, slide_result (burden with its
                   interval, regions in mm, size class, tissue QC), top tiles, warnings, timings, files

Modules, in the order a scan uses them:
  geometry   the grid at PCam's µm/px, the tissue mask, reading tiles and pictures
  store      the progress log, the resume key and the slide's content digest
  inference  the models that run and the loop (tiles read ahead in a thread)
  findings   the slide as a whole (`runtime.slide_result`: burden, regions, QC): `slide_findings`
  report     the typed `ScanReport` (scan.json), tumour burden, top tiles
  outputs    viewer files, thumbnail, heatmap, top-tile pictures, scan.json, written atomically
  pipeline   `scan_slide`, which ties them together and returns a `ScanResult`
  batch      many slides per run into one folder with summary.csv; the per-slide step the watch folder shares
"""

from edge_pcam.runtime.scan.pipeline import ScanResult, scan_slide
from edge_pcam.runtime.scan.report import ScanReport

__all__ = ["ScanReport", "ScanResult", "scan_slide"]
