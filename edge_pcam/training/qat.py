"""Quantization-aware fine-tuning: a trained float model in, a QAT run folder out.

The QAT model itself (TFMOT's configuration for the attention's `Dot` and
`Rescaling` layers, the scope a saved QAT model loads in) is
edge_pcam.training.qat_model; this module runs the fine-tuning through the
training loop (edge_pcam.training.fit), so a QAT run has the same run folder,
resume behaviour and reports as `edge-pcam train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_pcam.errors import ModelFileError
from edge_pcam.model import is_edge_pcam_model
from edge_pcam.runtime.fileio import atomic_write_json
from edge_pcam.runtime.metadata import sha256_file
from edge_pcam.training import fit
from edge_pcam.training.modelio import load_model
from edge_pcam.training.qat_model import is_qat_model, quantize_model
from edge_pcam.training.recipe import Recipe, load_recipe

QAT_EPOCHS = 3
QAT_LR_FACTOR = 0.1
SOURCE_FILE = "qat_source.json"


def qat_recipe(model_path: Path, recipe: str | Path | None = None, *, epochs: int | None = None,
               lr: float | None = None, batch_size: int | None = None,
               overrides: dict[str, Any] | None = None) -> Recipe:
    """The fine-tuning recipe: `recipe`, else the source run's recipe.toml, else `pcam`;
    a tenth of its learning rate and QAT_EPOCHS epochs unless given; then `overrides`
    ({"section.key": value}, as `--set` gives them) on top."""
    beside = model_path.parent / "recipe.toml"
    base = load_recipe(recipe if recipe is not None else (beside if beside.is_file() else "pcam"))
    return base.with_overrides({
        "training.epochs": epochs if epochs is not None else QAT_EPOCHS,
        "optimizer.lr": lr if lr is not None else base["optimizer"]["lr"] * QAT_LR_FACTOR,
        "training.batch_size": batch_size,
        **(overrides or {}),
    })


def qat_finetune(model_path: str | Path, data: str | None, out: str | Path, *,
                 recipe: str | Path | None = None, epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, overrides: dict[str, Any] | None = None, resume: bool = False,
                 overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, log=None):
    """Quantization-aware fine-tuning of the trained float model `model_path` into the run folder `out`.

    Runs edge_pcam.training.fit.train with the QAT model as its starting point:
    the same callbacks, history, TensorBoard logs, best.h5 / final.h5 (QAT .h5
    files), metrics.json and resume behaviour as `edge-pcam train`. The run
    folder also gets qat_source.json naming the source model and its SHA-256.
    On `resume` with nothing else given, the run folder's own recipe is used.
    """
    model_path = Path(model_path)
    source = load_model(model_path)
    if not is_edge_pcam_model(source):
        raise ModelFileError(f"{model_path}: not an edge-pcam model (no pool3/logit/q/k/v/o layers)")
    if is_qat_model(source):
        raise ModelFileError(f"{model_path}: already quantization-aware; give the float model it came from")
    del source
    given = (recipe, epochs, lr, batch_size, *(overrides or {}).values())
    chosen = None if resume and all(v is None for v in given) \
        else qat_recipe(model_path, recipe, epochs=epochs, lr=lr, batch_size=batch_size, overrides=overrides)

    def builder(_recipe):
        return quantize_model(load_model(model_path))

    kwargs = {"log": log} if log is not None else {}
    result = fit.train(data, out, chosen, strategy=strategy, resume=resume, overwrite=overwrite,
                       verbose=verbose, model_builder=builder, **kwargs)
    if result.is_chief:
        atomic_write_json(Path(out) / SOURCE_FILE, {"source_model": str(model_path.resolve()),
                                                    "sha256": sha256_file(model_path)}, indent=2)
    return result
