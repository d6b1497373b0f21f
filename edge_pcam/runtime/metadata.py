"""The model card carried inside every .tflite file edge-pcam writes.

Mechanism: a small zip archive appended after the TFLite flatbuffer (as
Ultralytics does). Interpreters read the flatbuffer through offsets from the
start of the buffer and never see the trailing bytes, so the file stays
loadable by ai-edge-litert, tflite-runtime and tf.lite alike; the archive is
read here with nothing but the standard library. The exporter writes it with
`write_metadata`; the runtime reads it with `read_metadata`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edge_pcam.errors import ModelFileError

SCHEMA_VERSION = 1
MEMBER = "edge_pcam/metadata.json"
TFLITE_IDENTIFIER = b"TFL3"
REQUIRED_KEYS = ("schema_version", "format", "source", "input", "labels", "thresholds")


def model_bytes(data: bytes) -> bytes:
    """The flatbuffer alone: `data` without an appended metadata archive."""
    start = _archive_start(data)
    return data if start is None else data[:start]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an edge-pcam .tflite file; a clear error for anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    return metadata_from_bytes(data, str(path))


def metadata_from_bytes(data: bytes, name: str = "model") -> dict[str, Any]:
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{name}: not a TFLite model file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            meta = json.loads(zf.read(MEMBER))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise ModelFileError(f"{name}: a TFLite file without edge-pcam metadata "
                             "(convert it with `edge-pcam convert`)") from None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelFileError(f"{name}: edge-pcam metadata lacks {', '.join(missing)}")
    if int(meta["schema_version"]) > SCHEMA_VERSION:
        raise ModelFileError(f"{name}: metadata schema {meta['schema_version']} is newer than this "
                             f"edge-pcam understands ({SCHEMA_VERSION}); upgrade edge-pcam")
    return meta


def with_metadata(data: bytes, meta: dict[str, Any]) -> bytes:
    """`data` (a .tflite, with or without metadata) carrying `meta` instead."""
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    buf = io.BytesIO()
    buf.write(model_bytes(data))
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, json.dumps(meta, indent=1, sort_keys=True, default=_json_default))
    return buf.getvalue()


def write_metadata(path: str | os.PathLike, meta: dict[str, Any], source: str | os.PathLike | None = None) -> None:
    """Write `source` (default: `path` itself) to `path` with `meta`, atomically."""
    data = Path(source or path).read_bytes()
    atomic_write_bytes(path, with_metadata(data, meta))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp alone gives 0600; readable as any new file here
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _archive_start(data: bytes) -> int | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            return min(i.header_offset for i in infos) if infos else None
    except zipfile.BadZipFile:
        return None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
