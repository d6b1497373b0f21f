"""Run an edge-pcam .tflite file in whichever TFLite interpreter this machine has.

Order for `runtime="auto"`: ai-edge-litert (the maintained LiteRT package),
else tflite-runtime (Coral's pycoral stack, older Raspberry Pi images).
TensorFlow's own `tf.lite` is used only when asked for (`runtime="tf"`):
importing TensorFlow costs seconds and gigabytes that a device does not have.

`load_model` reads the model card (edge_pcam.runtime.metadata) and checks the
flatbuffer against the digest in it before giving the file to an interpreter,
so a file that is not an edge-pcam model, a truncated or damaged one, or one
this interpreter cannot run gets a one-line error instead of a crash or a
wrong answer. The file runs exactly as it was written (its quantization is
settled at conversion). Tensors are found by their names in the file's
serving_default signature, with their shapes as a check (`signature_tensors`):
a classifier's image -> probability [B, 1] and features [B, 12, 12, 256].
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import os
import struct
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import EdgePcamError, EdgePcamWarning, ModelFileError, RuntimeUnavailableError
from edge_pcam.runtime.flatbuffer import check_model
from edge_pcam.runtime.metadata import NO_DIGEST, metadata_from_bytes, model_bytes, verify_integrity
from edge_pcam.runtime.signature import (CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, FEATURE_SHAPE, PATCH_SHAPE,
                                         signature_tensors)

LITERT = "ai-edge-litert"
TFLITE_RUNTIME = "tflite-runtime"
TF_LITE = "tf.lite"
AUTO_ORDER = (LITERT, TFLITE_RUNTIME)
RUNTIME_ALIASES = {
    "auto": "auto",
    "litert": LITERT, "ai-edge-litert": LITERT, "ai_edge_litert": LITERT,
    "tflite-runtime": TFLITE_RUNTIME, "tflite_runtime": TFLITE_RUNTIME, "tflite": TFLITE_RUNTIME,
    "tf": TF_LITE, "tf.lite": TF_LITE, "tensorflow": TF_LITE,
}
_MODULES = {LITERT: "ai_edge_litert", TFLITE_RUNTIME: "tflite_runtime", TF_LITE: "tensorflow"}

MAX_THREADS = 64  # well past any gain for one 96x96 patch; a box with more cores may use them all
EDGETPU_LIBRARY = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib", "win32": "edgetpu.dll"}


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads used when none are asked for: every core, up to 4 (a Raspberry Pi's count)."""
    return max(1, min(usable_cores(), 4))


def check_threads(threads: int) -> int:
    """`threads` when an interpreter can run with it: 1 to max(MAX_THREADS, cores).

    The interpreters start that many worker threads without checking: past what
    the system can start they crash the process (SIGSEGV with 100,000 on a 2-core
    machine with 24 GB), and an int beyond 32 bits makes them print a screenful
    of the model's bytes.
    """
    limit = max(MAX_THREADS, usable_cores())
    if not 1 <= threads <= limit:
        raise EdgePcamError(f"threads must be 1 to {limit} (this machine has {usable_cores()} cores), got {threads}")
    return threads


@dataclass(frozen=True)
class Backend:
    """One installed TFLite interpreter package."""

    name: str
    interpreter_class: type
    load_delegate: Callable[..., Any]
    version: str


def installed_runtimes() -> list[str]:
    """The interpreters that could be imported here (TensorFlow is checked without importing it)."""
    return [name for name, module in _MODULES.items() if importlib.util.find_spec(module) is not None]


def resolve_runtime(runtime: str = "auto") -> Backend:
    """The interpreter named by `runtime` (auto, litert, tflite-runtime or tf), imported."""
    key = RUNTIME_ALIASES.get(str(runtime).strip().lower())
    if key is None:
        raise RuntimeUnavailableError(f"unknown runtime '{runtime}' (use auto, litert, tflite-runtime or tf)")
    if key != "auto":
        return _import_backend(key)
    for name in AUTO_ORDER:
        if importlib.util.find_spec(_MODULES[name]) is not None:
            return _import_backend(name)
    raise RuntimeUnavailableError("no TFLite interpreter is installed: `pip install ai-edge-litert` "
                                  "(or tflite-runtime on platforms without ai-edge-litert wheels)")


def _import_backend(name: str) -> Backend:
    try:
        if name == LITERT:
            from ai_edge_litert import interpreter as mod
            import ai_edge_litert as pkg
        elif name == TFLITE_RUNTIME:
            from tflite_runtime import interpreter as mod
            import tflite_runtime as pkg
        else:
            import tensorflow as pkg
            mod = pkg.lite
            return Backend(name, mod.Interpreter, mod.experimental.load_delegate, pkg.__version__)
    except ImportError as exc:
        hint = {LITERT: "pip install ai-edge-litert", TFLITE_RUNTIME: "pip install tflite-runtime",
                TF_LITE: "pip install 'edge-pcam[train]'"}[name]
        raise RuntimeUnavailableError(f"runtime {name} is not installed ({exc}); {hint}") from None
    version = getattr(pkg, "__version__", None) or _dist_version(name)
    return Backend(name, mod.Interpreter, mod.load_delegate, version)


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def edgetpu_delegate(backend: Backend, device: str) -> Any:
    """The Edge TPU delegate for `device` (usb, pci, :N, usb:N or pci:N); a clear error without libedgetpu."""
    device = device.strip().lower()
    kind, _, index = device.partition(":")
    if kind not in ("", "usb", "pci") or (index and not index.isdigit()) or device in ("", ":"):
        raise RuntimeUnavailableError(f"--device '{device}': use usb, pci, :N, usb:N or pci:N (an Edge TPU)")
    library = EDGETPU_LIBRARY.get(sys.platform, "libedgetpu.so.1")
    try:
        ctypes.CDLL(library)  # fails cleanly when absent (load_delegate would leave a half-made object)
        return backend.load_delegate(library, {"device": device})
    except (ValueError, OSError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()
        raise RuntimeUnavailableError(
            f"Edge TPU '{device}' unavailable: cannot load {library} ({detail[-1] if detail else exc}); "
            "install Coral's libedgetpu1-std and connect the accelerator") from None


class PatchModel:
    """An edge-pcam classifier loaded in a TFLite interpreter.

    `predict(images)` takes uint8 patches (N, 96, 96, 3) and returns P(tumour)
    (N,); the model's fixed batch is handled by chunking and padding.
    """

    def __init__(self, path: Path, metadata: dict[str, Any], interpreter: Any, backend: Backend,
                 threads: int, device: str | None, content: bytes):
        self.path = path
        self.metadata = metadata
        self.runtime = backend.name
        self.runtime_version = backend.version
        self.threads = threads
        self.device = device
        self._interpreter = interpreter
        inputs, outputs = signature_tensors(interpreter, content, CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS,
                                            str(path), "patch classifier", optional=("features",))
        self._input = inputs["image"]
        self.batch = int(self._input["shape"][0])
        self._prob = outputs["probability"]
        self._feat = outputs.get("features")

    @property
    def format(self) -> str:
        return str(self.metadata.get("format", "unknown"))

    @property
    def thresholds(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metadata.get("thresholds", {}).items() if v is not None}

    @property
    def has_features(self) -> bool:
        return self._feat is not None

    @property
    def companion_path(self) -> Path | None:
        """The Grad-CAM companion file named in the metadata (beside the model), if any."""
        companion = self.metadata.get("companion") or {}
        return self.path.parent / companion["file"] if companion.get("file") else None

    def describe(self) -> str:
        where = f"Edge TPU {self.device}" if self.device else f"{self.threads} thread{'s' * (self.threads > 1)}"
        return f"{self.path.name} ({self.format}) on {self.runtime} {self.runtime_version}, {where}"

    def predict(self, images: np.ndarray) -> np.ndarray:
        """P(tumour) per patch, float32 (N,)."""
        return self._run(images, features=False)[0]

    def predict_with_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(tumour) (N,) and the dequantized pool3 feature maps float32 (N, 12, 12, 256)."""
        if self._feat is None:
            raise ModelFileError(f"{self.path}: this file has no pool3 feature output "
                                 "(convert it again with a current edge-pcam)")
        return self._run(images, features=True)

    def _run(self, images: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.dtype != np.uint8 or images.shape[1:] != PATCH_SHAPE:
            raise ValueError(f"patches must be uint8 (N, 96, 96, 3), got {images.dtype} {images.shape}")
        n, b = len(images), self.batch
        probs = np.empty(n, np.float32)
        feats = np.empty((n, *FEATURE_SHAPE), np.float32) if features else None
        it = self._interpreter
        for start in range(0, n, b):
            chunk = images[start:start + b]
            k = len(chunk)
            if k < b:
                chunk = np.concatenate([chunk, np.zeros((b - k, *PATCH_SHAPE), np.uint8)])
            it.set_tensor(self._input["index"], self._to_input(chunk))
            it.invoke()
            probs[start:start + k] = _dequantize(it.get_tensor(self._prob["index"]), self._prob)[:k, 0]
            if features:
                feats[start:start + k] = _dequantize(it.get_tensor(self._feat["index"]), self._feat)[:k]
        return probs, feats

    def _to_input(self, chunk: np.ndarray) -> np.ndarray:
        """uint8 pixels to what the input tensor takes: raw uint8 (scale 1/255), x/255, or quantized."""
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return chunk.astype(np.float32) / np.float32(255.0)
        scale, zero = self._input["quantization"]
        if dtype == np.uint8 and zero == 0 and abs(scale * 255.0 - 1.0) < 1e-6:
            return chunk
        info = np.iinfo(dtype)
        q = np.round(chunk.astype(np.float32) / np.float32(255.0) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if x.dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    return (x.astype(np.float32) - np.float32(zero)) * np.float32(scale)


def read_model_file(path: str | os.PathLike) -> tuple[Path, bytes, dict[str, Any]]:
    """The file's path, its flatbuffer (without the metadata archive) and its metadata.

    The flatbuffer is checked against the card's digest (ModelFileError when it
    does not match); a file without one, made by an earlier edge-pcam, gets a
    one-line EdgePcamWarning pointing to `edge-pcam upgrade`.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a .tflite file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    if len(data) >= 8 and data[4:8] == b"TFL3" and b"PK\x05\x06" not in data[-4096:]:
        raise ModelFileError(f"{path}: a TFLite file without edge-pcam metadata: truncated, or not "
                             "made by `edge-pcam convert`")
    meta = metadata_from_bytes(data, str(path))
    if verify_integrity(data, meta, str(path)) == NO_DIGEST:
        warnings.warn(EdgePcamWarning(
            f"{path}: made by an earlier edge-pcam (model card schema {meta.get('schema_version')}): no integrity "
            "digest to check, and its outputs may differ slightly from the metrics in its card; run "
            f"`edge-pcam upgrade {path} NEW.tflite`"), stacklevel=2)
    content = model_bytes(data)
    try:
        check_model(content)
    except (ValueError, struct.error) as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc}); copy or convert it again") from None
    return path, content, meta


def open_interpreter(content: bytes, backend: Backend, threads: int, delegates: list[Any] | None = None,
                     name: str = "model") -> Any:
    """An interpreter for the flatbuffer `content` with tensors allocated; ModelFileError if it cannot load.

    The interpreter's own chatter on stderr ("Created TensorFlow Lite XNNPACK
    delegate") is kept out of the terminal; when loading fails, its last lines
    go into the error message.
    """
    kwargs: dict[str, Any] = {"model_content": content, "num_threads": check_threads(threads)}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    with _captured_stderr() as captured:
        try:
            interpreter = backend.interpreter_class(**kwargs)
            interpreter.allocate_tensors()
            error = None
        except (ValueError, RuntimeError) as exc:
            error = exc
    if error is not None:
        lines = [ln.strip() for ln in captured().splitlines() if ln.strip() and not ln.startswith("INFO:")]
        detail = " ".join((lines[-2:] if lines else []) + [" ".join(str(error).split())])[:400]
        raise ModelFileError(f"{name}: {backend.name} {backend.version} cannot load this model ({detail})")
    return interpreter


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file for the duration; yields a reader of what was written."""
    text = ""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        yield lambda: text
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")


def load_model(path: str | os.PathLike | None = None, runtime: str = "auto", threads: int | None = None,
               device: str | None = None) -> PatchModel:
    """Load an edge-pcam .tflite classifier (None: the bundled model) in a TFLite interpreter.

    `runtime`: auto (ai-edge-litert, else tflite-runtime), litert, tflite-runtime or tf.
    `threads`: interpreter threads (default: every core, up to 4).
    `device`: an Edge TPU (usb, pci, :N) for a file compiled with the Edge TPU compiler.
    The file's bytes run unchanged: what was measured at conversion is what runs.
    """
    if path is None:
        from edge_pcam.runtime.bundled import default_model_path
        path = default_model_path()
    path, content, meta = read_model_file(path)
    fmt = str(meta.get("format"))
    if fmt == "gradcam":
        raise ModelFileError(f"{path}: a Grad-CAM companion, not a classifier; give the classifier "
                             "file that names it")
    if fmt == "edgetpu" and not device:
        raise ModelFileError(f"{path}: compiled for the Edge TPU; pass --device usb|pci|:N "
                             "(or use the int8 file on the CPU)")
    backend = resolve_runtime(runtime)
    if fmt == "dynamic" and backend.name == TFLITE_RUNTIME:
        raise RuntimeUnavailableError(
            f"{path}: dynamic-range models made by TensorFlow 2.21 use FULLY_CONNECTED version 12, which "
            f"tflite-runtime {backend.version} cannot run; use ai-edge-litert, or the int8 or float32 file")
    threads = default_threads() if threads is None else check_threads(int(threads))
    delegates = [edgetpu_delegate(backend, device)] if device else None
    interpreter = open_interpreter(content, backend, threads, delegates, str(path))
    return PatchModel(path, meta, interpreter, backend, threads, device, content)
