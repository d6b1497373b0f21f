"""Option definitions shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Data = Annotated[str, typer.Option("--data", help="synthetic:N[:SEED], tfds:patch_camelyon, or a folder "
                                   "(PCam HDF5 files, {split}/{label}/ images, or Kaggle's train/ + train_labels.csv).")]
OptionalData = Annotated[Optional[str], typer.Option("--data", help="As for --data elsewhere.")]
Split = Annotated[str, typer.Option("--split", help="train, valid or test.")]
Out = Annotated[Path, typer.Option("--out", help="Output folder.")]
ModelFile = Annotated[Optional[Path], typer.Option("--model", help="A .tflite file made by edge-pcam convert "
                                                   "(default: the bundled model).")]
Runtime = Annotated[str, typer.Option("--runtime", help="auto (ai-edge-litert, else tflite-runtime), litert, tflite-runtime or tf.")]
