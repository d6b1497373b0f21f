"""The model shipped inside the package (edge_pcam/models/), used when no --model is given."""

from __future__ import annotations

from pathlib import Path

from edge_pcam.errors import ModelFileError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "edge_pcam_int8.tflite"


def default_model_path() -> Path:
    """The bundled int8 classifier; a clear error when this copy of edge-pcam has none."""
    path = MODELS_DIR / DEFAULT_MODEL
    if not path.is_file():
        raise ModelFileError(f"no bundled model in this edge-pcam installation ({path} is missing); "
                             "pass --model FILE.tflite (made by `edge-pcam convert`)")
    return path
