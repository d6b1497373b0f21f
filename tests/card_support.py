"""Helpers for the model-card tests: cards written raw (bypassing the writer's validation), old-format files.

`with_metadata` refuses to write a card that breaks the schema, so files with bad cards, and files
as an earlier edge-pcam wrote them (schema 1), are made here directly: the flatbuffer, then a stored
zip archive holding `edge_pcam/metadata.json`.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
COMPANION = FIXTURES / "models" / "tiny_gradcam.tflite"
LEGACY_INT8 = FIXTURES / "legacy" / "tiny_int8_schema1.tflite"


def raw_file(flatbuffer: bytes, card: dict[str, Any]) -> bytes:
    """`flatbuffer` with `card` appended as the edge-pcam card, unvalidated."""
    buf = io.BytesIO()
    buf.write(flatbuffer)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr("edge_pcam/metadata.json", json.dumps(card))
    return buf.getvalue()


def schema1_card(card: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 card as an earlier edge-pcam would have written it (no digest, no counts)."""
    old = {k: v for k, v in card.items() if k not in ("integrity", "operating_characteristics", "upgraded")}
    return {**old, "schema_version": 1}
