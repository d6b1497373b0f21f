"""`summary.csv`: one row per slide of a batch scan or of the watch folder, appended as each slide ends.

Columns (`SUMMARY_COLUMNS`): the slide's file and content digest, its status
(`ok`, or the one-line reason it failed), the reader, tissue tiles, the tumour
burden figures, the largest suspicious region, the top tile probability,
seconds, the model's SHA-256, the slide's output folder, when it finished, and
every warning of the slide's scan.json (a soft slide, no stored rates, no
tissue, ...; WARNINGS_SEPARATOR between them). A summary.csv begun by an
earlier version without the warnings column (EARLIER_COLUMNS) keeps its
columns: rows are appended to it as it is.

Appending is safe against a kill at any moment: each row is one write of a
whole line, flushed and fsync'd; a line cut short by a kill (no newline at the
end of the file) is removed before the next append and ignored when reading,
so a row is either there whole or not at all. The header is written with the
first row. `append_line` does the same for any line-based log (the watch
folder's events.jsonl).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError

try:
    import fcntl
except ImportError:  # Windows: one writer at a time is the caller's business
    fcntl = None

SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = (
    "file", "sha256", "status", "reader", "tissue_tiles",
    "burden_decision", "burden_high_specificity", "burden_adjusted", "burden_adjusted_low", "burden_adjusted_high",
    "largest_region_mm", "largest_region_class", "top_probability", "seconds", "model_sha256", "out", "finished",
    "warnings",
)
EARLIER_COLUMNS = SUMMARY_COLUMNS[:-1]  # before the warnings column
WARNINGS_SEPARATOR = " | "
OK = "ok"


def append_line(path: str | os.PathLike, line: str, header: str | None = None) -> None:
    """Append `line` (and, to an empty or new file, `header` first) as one write, fsync'd.

    A last line cut short by an earlier kill is removed first.
    """
    if "\n" in line or (header and "\n" in header):
        raise ValueError("a log line must not contain a newline")
    with open(path, "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            if end:
                keep = _complete_length(f, end)
                if keep != end:
                    f.truncate(keep)
                    end = keep
            text = (f"{header}\n" if header and end == 0 else "") + f"{line}\n"
            f.write(text.encode("utf-8", errors="surrogateescape"))
            f.flush()
            os.fsync(f.fileno())
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_lines(path: str | os.PathLike) -> list[str]:
    """The complete lines of a log written by `append_line` (a last line cut short is left out)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    complete = data[:data.rfind(b"\n") + 1]
    return complete.decode("utf-8", errors="surrogateescape").splitlines()


def append_summary_row(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append one slide's row to summary.csv (columns missing from `row` stay empty; a file with
    EARLIER_COLUMNS gets the row in those).

    Refuses a summary.csv with other columns (one-line error), since a row
    with different columns would be misread.
    """
    unknown = set(row) - set(SUMMARY_COLUMNS)
    if unknown:
        raise ValueError(f"not summary.csv columns: {sorted(unknown)}")
    columns = _file_columns(path)
    values = {**row, "status": " ".join(str(row.get("status", "")).split()),
              "warnings": " ".join(str(row.get("warnings") or "").split())}
    values.setdefault("finished", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    append_line(path, _csv_line([_text(values.get(column)) for column in columns]), header=_csv_line(columns))


def read_summary(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of summary.csv as dicts of text, in the order written ([] if there is none; rows of
    a file with EARLIER_COLUMNS have no "warnings")."""
    _file_columns(path)
    lines = read_lines(path)
    return list(csv.DictReader(lines)) if lines else []


def _file_columns(path: str | os.PathLike) -> tuple[str, ...]:
    """The columns of the summary.csv at `path` (SUMMARY_COLUMNS for a new one)."""
    lines = read_lines(path)
    if not lines:
        return SUMMARY_COLUMNS
    for columns in (SUMMARY_COLUMNS, EARLIER_COLUMNS):
        if lines[0] == _csv_line(columns):
            return columns
    raise EdgePcamError(f"{path}: written with other columns (another edge-pcam version?); "
                        "move it away to start a new one")


def _csv_line(values: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).splitlines())  # a row is one line, whatever a file name holds


def _complete_length(f: Any, end: int) -> int:
    """The length of the file up to and including its last newline."""
    block = 4096
    position = end
    while position > 0:
        start = max(0, position - block)
        f.seek(start)
        chunk = f.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0
