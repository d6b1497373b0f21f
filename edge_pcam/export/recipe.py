"""Conversion recipes: TOML files in `convert/` naming a set of formats and the gate's settings.

    formats = ["float32", "int8"]   # any of float32, float16, dynamic, int8, edgetpu
    companion = true                # also write the Grad-CAM companion
    representative = 500            # int8 calibration patches from the train split
    max_drop = 1.0                  # accuracy points an approximate format may lose
    batch = 1                       # fixed batch of the files
    limit = 1000                    # optional: validate on N patches only
    tune_from_train = 2000          # optional: thresholds on N patches carved from train (0: on valid)

`load_convert_recipe("edge")` finds convert/edge.toml (installed package first,
then the repository); a path to a .toml file works too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from edge_pcam.errors import RecipeError

ALL_FORMATS = ("float32", "float16", "dynamic", "int8", "edgetpu")
DEFAULT_RECIPE = "edge"
DEFAULTS: dict[str, Any] = {"formats": ["float32", "int8"], "companion": True, "representative": 500,
                            "max_drop": 1.0, "batch": 1, "limit": None, "tune_from_train": 0}
PACKAGE_RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "convert"
REPO_RECIPES = Path(__file__).resolve().parents[2] / "convert"


def recipe_dirs() -> list[Path]:
    return [PACKAGE_RECIPES, REPO_RECIPES]


def available_recipes() -> list[str]:
    return sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})


def load_convert_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A validated conversion recipe with defaults filled in, plus `source` (where it came from)."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and path.parent == Path("."):
        found = [d / f"{name_or_path}.toml" for d in recipe_dirs() if (d / f"{name_or_path}.toml").is_file()]
        if not found:
            raise RecipeError(f"unknown conversion recipe '{name_or_path}' (available: "
                              f"{', '.join(available_recipes()) or 'none'}; or give a .toml file)")
        path = found[0]
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    return {**validate(data, str(path)), "source": str(path)}


def validate(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Check keys and types; unknown keys and formats are RecipeErrors naming `where`."""
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise RecipeError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **data}
    formats = out["formats"]
    if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
        raise RecipeError(f"{where}: formats must be a non-empty list of names")
    check_formats(formats, where)
    if not isinstance(out["companion"], bool):
        raise RecipeError(f"{where}: companion must be true or false")
    for key in ("representative", "batch") + (("limit",) if out["limit"] is not None else ()):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1:
            raise RecipeError(f"{where}: {key} must be a positive integer, got {out[key]!r}")
    if not isinstance(out["tune_from_train"], int) or isinstance(out["tune_from_train"], bool) \
            or out["tune_from_train"] < 0:
        raise RecipeError(f"{where}: tune_from_train must be an integer >= 0, got {out['tune_from_train']!r}")
    if not isinstance(out["max_drop"], (int, float)) or isinstance(out["max_drop"], bool) or out["max_drop"] < 0:
        raise RecipeError(f"{where}: max_drop must be a number >= 0, got {out['max_drop']!r}")
    out["max_drop"] = float(out["max_drop"])
    out["formats"] = ordered_formats(formats)
    return out


def check_formats(formats: list[str], where: str = "formats") -> None:
    for fmt in formats:
        if fmt not in ALL_FORMATS:
            raise RecipeError(f"{where}: unknown format '{fmt}' (known: {', '.join(ALL_FORMATS)})")


def ordered_formats(formats: list[str]) -> list[str]:
    """Distinct formats in a fixed order; edgetpu brings int8 (it is compiled from the int8 file)."""
    chosen = set(formats) | ({"int8"} if "edgetpu" in formats else set())
    return [f for f in ALL_FORMATS if f in chosen]
