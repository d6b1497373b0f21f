"""Reading figures out of markdown (README.md, MODEL_CARD.md) to compare them with the committed files they quote.

A figure is compared at the precision it is shown with: "85.6%" against 0.8557 is 85.6 (one decimal)
against 85.57 rounded to one decimal. The expected value always comes from a committed file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def committed_files() -> set[str]:
    """Paths git tracks in this checkout (the files a fresh clone has); the working tree without git."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return set(out.splitlines())
    except (OSError, subprocess.CalledProcessError):
        return {str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts}


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table of `text` as rows of {header: cell}, emphasis and code marks removed."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([re.sub(r"[*`]", "", c).strip() for c in line.strip().strip("|").split("|")])
        elif block:
            if len(block) > 2:
                found.append([dict(zip(block[0], row)) for row in block[2:]])
            block = []
    return found


def table(text: str, *headers: str) -> list[dict[str, str]]:
    """The first table whose header holds all of `headers`."""
    for rows in tables(text):
        if all(h in rows[0] for h in headers):
            return rows
    raise AssertionError(f"no table with the columns {headers}")


def row(rows: list[dict[str, str]], first_cell_part: str) -> dict[str, str]:
    """The row whose first cell contains `first_cell_part`."""
    matches = [r for r in rows if first_cell_part in next(iter(r.values()))]
    assert len(matches) == 1, f"{len(matches)} rows whose first cell holds {first_cell_part!r}"
    return matches[0]


def numbers(cell: str) -> list[str]:
    return NUMBER.findall(cell)


def as_shown(value: float, shown: str) -> str:
    """`value` written with the decimals (or, in e-notation, the significant digits) of `shown`."""
    if "e" in shown:
        digits = len(shown.split("e")[0].split(".")[1]) if "." in shown else 0
        return f"{value:.{digits}e}"
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return f"{value:{',' if ',' in shown else ''}.{decimals}f}"


def assert_shown(cell: str, value: float, scale: float = 1.0, index: int = 0) -> None:
    """The `index`-th number of `cell` is `value * scale` at the precision shown."""
    shown = numbers(cell)[index]
    expected = as_shown(value * scale, shown)
    same = float(expected) == float(shown.replace(",", "")) if "e" in shown else expected == shown.lstrip("+")
    assert same, f"{cell!r} shows {shown}, the source says {expected} ({value * scale!r})"
