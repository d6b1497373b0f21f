"""Training recipes: TOML files in `train/`, validated into a `Recipe`.

A recipe names every knob of a training run. `load_recipe("pcam")` finds
`train/pcam.toml` (in the installed package first, then the repository's
top-level `train/` folder); a path to a .toml file works too. Every section and
key is checked against `SCHEMA`: an unknown key or a value of the wrong type
raises `RecipeError` with a one-line message naming the file and the key.
Missing keys take the design's defaults (train/pcam.toml).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_pcam.errors import RecipeError

PACKAGE_RECIPES = Path(__file__).resolve().parents[1] / "recipes"
REPO_RECIPES = Path(__file__).resolve().parents[2]

# section -> key -> (type check name, default)
SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "model": {"l2": ("float>=0", 1e-4), "dropout": ("fraction", 0.5)},
    "training": {"batch_size": ("int>0", 64), "epochs": ("int>0", 30), "seed": ("int>=0", 0),
                 "tune_from_train": ("int>=0", 0), "train_limit": ("int>=0", 0),
                 "label_smoothing": ("fraction", 0.0),
                 "precision": (("float32", "mixed_bfloat16", "mixed_float16"), "float32")},
    "data": {"sources": ("strings", []), "balance": (("none", "weights"), "none")},
    "optimizer": {"name": (("adam",), "adam"), "lr": ("float>0", 1e-3),
                  "lr_schedule": (("plateau", "cosine", "constant"), "plateau"),
                  "warmup_epochs": ("int>=0", 0), "min_lr": ("float>=0", 0.0)},
    "reduce_lr": {"factor": ("fraction", 0.3), "patience": ("int>=0", 1)},
    "early_stopping": {"enabled": ("bool", True), "patience": ("int>=0", 3)},
    "checkpoint": {"monitor": (("val_auc", "val_loss", "val_accuracy"), "val_auc"),
                   "mode": (("max", "min"), "max")},
    "augment": {"flips": ("bool", True), "brightness": ("float>=0", 0.1), "contrast": ("range", [0.8, 1.2]),
                "rotate90": ("bool", False), "hue": ("float>=0", 0.0), "saturation": ("range", [1.0, 1.0]),
                "hed": ("float>=0", 0.0), "jpeg": ("quality", [0, 0])},
}


@dataclass
class Recipe:
    """A validated recipe: `values[section][key]`, plus where it came from."""

    values: dict[str, dict[str, Any]]
    source: str = "defaults"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def with_overrides(self, overrides: dict[str, Any]) -> "Recipe":
        """A copy with `{"section.key": value}` replaced (checked like file values)."""
        values = copy.deepcopy(self.values)
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section not in SCHEMA or key not in SCHEMA[section]:
                raise RecipeError(f"override {dotted}: unknown recipe key (known: {', '.join(_all_keys())})")
            values[section][key] = _check(f"override {dotted}", SCHEMA[section][key][0], value)
        done = {**self.overrides, **{k: v for k, v in overrides.items() if v is not None}}
        return Recipe(values, self.source, done)

    def to_toml(self) -> str:
        """The recipe as TOML text (what `recipe.toml` in a run folder holds)."""
        lines = [f"# recipe used for this run: {self.source}"]
        if self.overrides:
            lines.append("# overridden: " + ", ".join(f"{k}={_toml_value(v)}" for k, v in self.overrides.items()))
        for section, keys in self.values.items():
            lines += ["", f"[{section}]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
        return "\n".join(lines) + "\n"

    def differences(self, other: "Recipe") -> list[str]:
        """`section.key: mine vs other` for every value that differs."""
        return [f"{s}.{k}: {other.values[s][k]!r} (saved) vs {v!r} (now)"
                for s, keys in self.values.items() for k, v in keys.items() if other.values[s][k] != v]


def defaults() -> Recipe:
    """The design's recipe as built into the schema."""
    return Recipe({s: {k: copy.deepcopy(d) for k, (_, d) in keys.items()} for s, keys in SCHEMA.items()})


def recipe_dirs() -> list[Path]:
    """Where named recipes are looked up: the installed package, then the repository."""
    return [PACKAGE_RECIPES / "train", REPO_RECIPES / "train"]


def available_recipes() -> list[str]:
    """Names of the recipes `load_recipe` can find."""
    return sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})


def find_recipe(name_or_path: str | Path) -> Path:
    """The .toml file for a recipe name (`pcam`) or a path (`my.toml`)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.parent != Path("."):
        if not path.is_file():
            raise RecipeError(f"{path}: no such recipe file")
        return path
    for folder in recipe_dirs():
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    raise RecipeError(f"unknown recipe '{name_or_path}' (available: {', '.join(available_recipes()) or 'none'}; "
                      "or give a path to a .toml file)")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and validate a recipe by name or path."""
    path = find_recipe(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    return parse_recipe(data, str(path))


def parse_recipe(data: dict[str, Any], source: str) -> Recipe:
    """Validate a parsed TOML document against `SCHEMA`, filling defaults."""
    recipe = defaults()
    for section, keys in data.items():
        if section not in SCHEMA:
            raise RecipeError(f"{source}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(keys, dict):
            raise RecipeError(f"{source}: '{section}' must be a [section] table")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise RecipeError(f"{source}: unknown key '{key}' in [{section}] "
                                  f"(known: {', '.join(SCHEMA[section])})")
            recipe.values[section][key] = _check(f"{source}: [{section}] {key}", SCHEMA[section][key][0], value)
    recipe.source = source
    return recipe


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` (value in TOML syntax, bare words taken as strings) -> (dotted key, value)."""
    dotted, sep, raw = text.partition("=")
    if not sep or "." not in dotted:
        raise RecipeError(f"--set {text}: expected section.key=value, e.g. augment.rotate90=true")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return dotted.strip(), value


def _check(where: str, kind: Any, value: Any) -> Any:
    """Return `value` (ints widened to float where a float is expected) or raise RecipeError."""
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(kind, tuple):
        if value not in kind:
            raise RecipeError(f"{where} = {value!r}: must be one of {', '.join(map(repr, kind))}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise RecipeError(f"{where} = {value!r}: must be true or false")
        return value
    if kind.startswith("int"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecipeError(f"{where} = {value!r}: must be an integer")
        if (kind == "int>0" and value <= 0) or (kind == "int>=0" and value < 0):
            raise RecipeError(f"{where} = {value!r}: must be {'positive' if kind == 'int>0' else 'zero or more'}")
        return value
    if kind in ("float>0", "float>=0", "fraction"):
        if not is_num:
            raise RecipeError(f"{where} = {value!r}: must be a number")
        value = float(value)
        if (kind == "float>0" and value <= 0) or (kind == "float>=0" and value < 0) or \
                (kind == "fraction" and not 0 <= value < 1):
            bound = {"float>0": "positive", "float>=0": "zero or more", "fraction": "in [0, 1)"}[kind]
            raise RecipeError(f"{where} = {value!r}: must be {bound}")
        return value
    if kind == "strings":
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise RecipeError(f"{where} = {value!r}: must be a list of non-empty strings")
        return list(value)
    if kind == "quality":
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise RecipeError(f"{where} = {value!r}: must be [low, high], two integer JPEG qualities")
        if value != [0, 0] and not 1 <= value[0] <= value[1] <= 100:
            raise RecipeError(f"{where} = {value!r}: need 1 <= low <= high <= 100 ([0, 0] = off)")
        return list(value)
    if kind == "range":
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise RecipeError(f"{where} = {value!r}: must be [low, high], two numbers")
        low, high = float(value[0]), float(value[1])
        if not 0 <= low <= high:
            raise RecipeError(f"{where} = {value!r}: need 0 <= low <= high")
        return [low, high]
    raise AssertionError(kind)


def _all_keys() -> list[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
