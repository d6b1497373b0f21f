"""The results folder of many slides: `DIR/<slide>/` each, `DIR/summary.csv`, `DIR/events.jsonl`, one writer.

Shared by `edge-pcam scan SLIDE... --out DIR` and `edge-pcam watch INBOX --out DIR`:

- One writer at a time: a lock file (`.edge-pcam.lock`) held while a batch
  or the watcher runs; a second one stops with a one-line error.
- Each slide gets the folder `DIR/<stem>/` (its file name without folders and
  slide suffix), or `DIR/<stem>-<first 8 hex digits of its SHA-256>/` when
  that name is taken by another slide or already exists (`output_name`).
  A slide keeps its folder: the `start` event records it, so after a kill the
  slide goes back into the same folder, where its scan resumes. The watcher
  knows a slide by its content (a renamed slide keeps its folder); a batch by
  file and content (two files with the same bytes get a folder each).
- `scan_slide` runs the per-slide step: a `start` event, the scan, then the
  summary row (the commit: `runtime.summary`, whole or absent after a kill)
  and a `done` or `failed` event. A slide's own fault (EdgePcamError) or an
  internal error becomes a row with the one-line reason; an OSError (a full
  disk, an I/O error: the machine, not the slide) is the caller's choice:
  a row (a batch) or raised to be tried again later (the watcher).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.slide_files import slide_stem
from edge_pcam.runtime.summary import OK, SUMMARY_FILE, append_line, append_summary_row, read_lines, read_summary

try:
    import fcntl
except ImportError:  # Windows: no lock, one writer per folder is the user's business
    fcntl = None

EVENTS_FILE, LOCK_FILE = "events.jsonl", ".edge-pcam.lock"

ScanOne = Callable[[Path, Path], Mapping[str, Any]]  # (slide, its output folder) -> summary fields

EVENT_LINES = {
    "watching": "watching {inbox} (pid {pid})",
    "batch": "scanning {slides} slides into {out}",
    "start": "scanning {file} into {out}/",
    "done": "done {file} in {seconds:.1f} s",
    "skipped": "skipped {file}: done in an earlier run ({out}/)",
    "duplicate": "skipped {file}: the same slide as {same_as}",
    "unreadable": "cannot read {file}: {error}",
    "interrupted": "interrupted {file} (resumed at the next start)",
    "stopped": "stopped ({reason})",
}


class ResultsFolder:
    """`out` locked for this process; its summary rows, the folder of each slide started, the event log."""

    def __init__(self, out: str | os.PathLike, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.out, self.on_event = Path(out), on_event
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.out / LOCK_FILE, "a+")
        except OSError as exc:
            raise EdgePcamError(f"{self.out}: cannot write the output folder ({exc.strerror or exc})") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise EdgePcamError(f"{self.out}: another edge-pcam watch or scan is writing here") from None
        self.rows = read_summary(self.out / SUMMARY_FILE)
        self.names: dict[tuple[str, str], str] = {}  # (file, SHA-256) -> the slide's folder, from `start` events
        self.by_content: dict[str, str] = {}  # SHA-256 -> the folder of the slide first started with it
        for event in self.events():
            if event.get("event") == "start":
                self.names[event["file"], event["sha256"]] = event["out"]
                self.by_content.setdefault(event["sha256"], event["out"])

    def events(self) -> Iterator[dict[str, Any]]:
        """The events logged so far (lines that are not whole JSON objects skipped)."""
        for line in read_lines(self.out / EVENTS_FILE):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event

    def event(self, name: str, **fields: Any) -> None:
        """Log an event (with the time) to events.jsonl, and hand it to `on_event`."""
        event = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": name, **fields}
        append_line(self.out / EVENTS_FILE, json.dumps(event, ensure_ascii=True))
        if self.on_event:
            self.on_event(event)

    def folder_name(self, rel: str, digest: str, by_content: bool) -> str:
        """The folder the slide had (the file `rel` with this content or, `by_content`, any file with it),
        else a new one by `output_name`."""
        name = self.names.get((rel, digest)) or (self.by_content.get(digest) if by_content else None)
        if name is None:
            name = output_name(rel, digest, set(self.names.values()), self.out)
        self.names[rel, digest] = name
        self.by_content.setdefault(digest, name)
        return name

    def scan_slide(self, rel: str, path: Path, digest: str, scan_one: ScanOne, *, by_content: bool,
                   record_machine_errors: bool, **start_fields: Any) -> dict[str, Any]:
        """Scan one slide into its folder (`folder_name`) and record it: a summary row and events; the row.

        An OSError from the scan is recorded as the row's status with
        `record_machine_errors`, else raised (no row: the slide is tried again).
        Anything that stops the process (KeyboardInterrupt, a stop signal) is
        logged as `interrupted` and raised.
        """
        name = self.folder_name(rel, digest, by_content)
        self.event("start", file=rel, sha256=digest, out=name, **start_fields)
        row: dict[str, Any] = {"file": rel, "sha256": digest, "out": name}
        folder = self.out / name
        started = time.perf_counter()
        try:
            folder.mkdir(exist_ok=True)  # here, so that a full disk is an OSError (the machine's), not the slide's
            row.update(scan_one(path, folder))
            row["status"] = OK
        except OSError as exc:
            if not record_machine_errors:
                _remove_if_empty(folder)
                raise
            row["status"] = one_line(exc)
        except EdgePcamError as exc:
            row["status"] = str(exc)
        except Exception as exc:  # a bug: recorded as this slide's failure, the others go on
            traceback.print_exc(file=sys.stderr)
            row["status"] = f"internal error: {type(exc).__name__}: {one_line(exc)}"
        except BaseException:
            self.event("interrupted", file=rel, sha256=digest, seconds=round(time.perf_counter() - started, 2))
            raise
        if row["status"] != OK:
            _remove_if_empty(folder)  # a slide that could not be opened leaves no folder behind
        row["seconds"] = round(time.perf_counter() - started, 2)
        self.record(row)
        self.event("done" if row["status"] == OK else "failed", file=rel, sha256=digest, seconds=row["seconds"],
                   status=row["status"], out=name)
        return row

    def record(self, row: Mapping[str, Any]) -> None:
        """Append a row to summary.csv."""
        append_summary_row(self.out / SUMMARY_FILE, row)
        self.rows.append({k: "" if v is None else str(v) for k, v in row.items()})

    def close(self) -> None:
        self._lock.close()

    def __enter__(self) -> ResultsFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def output_name(rel: str, digest: str, taken: Collection[str], out: Path) -> str:
    """`<stem>` for the slide `rel`, or `<stem>-<digest[:8]>` when another slide has it or `out/<stem>` exists
    (then `-2`, `-3`... if even that is taken): never a folder that exists."""
    stem = slide_stem(rel)
    numbered = (f"{stem}-{digest[:8]}-{n}" for n in itertools.count(2))
    candidates = itertools.chain([stem, f"{stem}-{digest[:8]}"], numbered)
    return next(name for name in candidates if name not in taken and not (out / name).exists())


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (results kept), or gone
        pass


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def describe_event(event: Mapping[str, Any]) -> str:
    """One line for the console (the journal, under systemd)."""
    if event["event"] == "failed":
        retry = f"; trying again in {event['retry_in_seconds']} s" if "retry_in_seconds" in event else ""
        return f"failed {event['file']}: {event.get('status') or event.get('error')}{retry}"
    return EVENT_LINES[event["event"]].format(**event)
