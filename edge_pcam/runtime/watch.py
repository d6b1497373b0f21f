"""`edge-pcam watch INBOX --out DIR`: scan every slide that lands in a folder, once, and keep going.

- A slide is read only once its size and modification time have stayed the
  same for `settle_seconds` (a file still being copied is left alone); for
  MRXS the companion data folder counts too. Hidden files and the usual
  partial-download names are skipped; subfolders are watched as well.
- Slides are keyed by content (SHA-256 of their bytes): a copy or a renamed
  slide is logged as a duplicate and not scanned again; a different slide
  under an old name is scanned, into `DIR/<stem>-<digest>/` when `DIR/<stem>/`
  holds another slide's results.
- Each slide ends as a row of `DIR/summary.csv` (`runtime.summary`), `ok` or
  its one-line error; `DIR/events.jsonl` logs watching, start, done, failed,
  duplicate, unreadable and stopped, with times. A bad slide is a row; the
  watcher goes on. Errors of the machine rather than the slide (disk full,
  I/O) are logged and retried later, so a slide is not lost to them.
- Kill-safe: the summary row is the commit. On restart the summary and the
  events say what is done (nothing is scanned twice) and what was started
  (scanned again, into the same folder, where the scan resumes).
- SIGTERM or SIGINT stop it cleanly: a scan in progress is interrupted, an
  event says so, and the next start takes it up again.

The scanning itself is injected: `scan_one(slide, out_dir) -> summary fields`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.summary import OK, SUMMARY_FILE, append_line, append_summary_row, read_lines, read_summary

try:
    import fcntl
except ImportError:  # Windows: no lock, one watcher per folder is the user's business
    fcntl = None

EVENTS_FILE, LOCK_FILE = "events.jsonl", ".watch.lock"
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide")
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", "~")
RETRY_SECONDS = (60, 300, 900)  # waits before scanning again after a machine error; the last one repeats
HASH_CHUNK = 8 << 20
SLEEP_STEP = 0.2  # seconds: how soon a stop request is noticed between polls

ScanOne = Callable[[Path, Path], Mapping[str, Any]]
Fingerprint = tuple[str, tuple[tuple[int, int, int, int], ...]]


class WatchStopped(BaseException):
    """Raised in a running scan when SIGTERM or SIGINT arrives (a BaseException, so scans let it through)."""


@dataclass
class _Settling:
    signature: tuple[int, int]  # total bytes, newest modification time (ns)
    since: float  # clock time the signature was first seen


class Watcher:
    """The watch loop over `inbox`, writing into `out`; `run()` until stopped, or `poll()` once."""

    def __init__(self, inbox: str | os.PathLike, out: str | os.PathLike, scan_one: ScanOne, *,
                 settle_seconds: float = 30.0, poll_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[dict[str, Any]], None] | None = None):
        self.inbox, self.out = Path(inbox), Path(out)
        if not self.inbox.is_dir():
            raise EdgePcamError(f"{self.inbox}: not a folder" if self.inbox.exists() else f"{self.inbox}: no such folder")
        self.scan_one, self.settle_seconds, self.poll_seconds = scan_one, settle_seconds, poll_seconds
        self.clock, self.on_event = clock, on_event
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
                raise EdgePcamError(f"{self.out}: another edge-pcam watch is writing here") from None
        self.done: dict[str, str] = {}  # digest -> file of its summary row
        self.outs: dict[str, str] = {}  # digest -> its output folder's name
        self.digests: dict[Fingerprint, str] = {}  # a file's fingerprint -> its content digest
        self.reported: set[Fingerprint] = set()  # duplicates (and unreadable paths) already logged
        self.settling: dict[str, _Settling] = {}
        self.retry: dict[str, tuple[float, int]] = {}  # digest -> (clock time to try again, attempts)
        self.unsettled = 0
        self._stop: str | None = None
        self._scanning = False
        self._load()

    def _load(self) -> None:
        """What an earlier run did: summary rows are done; events give fingerprints and folders."""
        for row in read_summary(self.out / SUMMARY_FILE):
            self.done[row["sha256"]] = row["file"]
        for line in read_lines(self.out / EVENTS_FILE):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "fingerprint" in event and "sha256" in event:
                fp = (event["file"], tuple(tuple(s) for s in event["fingerprint"]))
                self.digests[fp] = event["sha256"]
                if event["event"] == "duplicate":
                    self.reported.add(fp)
            if event["event"] == "start":
                self.outs[event["sha256"]] = event["out"]

    def run(self, once: bool = False) -> None:
        """Poll until SIGTERM/SIGINT (or, with `once`, until every slide now in the inbox is handled)."""
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._event("watching", inbox=str(self.inbox), pid=os.getpid())
        try:
            while not self._stop:
                try:
                    self.poll()
                except WatchStopped:
                    break
                except OSError as exc:  # the log or summary cannot be written (disk full): say so, wait, go on
                    print(f"edge-pcam watch: {self.out}: {exc.strerror or exc}; retrying", file=sys.stderr)
                if once and not self.unsettled:
                    break
                deadline = time.monotonic() + self.poll_seconds
                while not self._stop and time.monotonic() < deadline:
                    time.sleep(min(SLEEP_STEP, self.poll_seconds))
            self._event("stopped", reason=self._stop or "inbox handled")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._lock.close()

    def stop(self, reason: str = "stop requested") -> None:
        self._stop = reason

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = signal.Signals(signum).name
        if self._scanning:
            raise WatchStopped(self._stop)

    def poll(self) -> None:
        """One pass over the inbox: track sizes, handle each slide that has settled."""
        now = self.clock()
        seen, self.unsettled = set(), 0
        for rel, files in self._candidates():
            seen.add(rel)
            fp = self._fingerprint(rel, files)
            if fp is None:
                continue
            signature = (sum(s[0] for s in fp[1]), max(s[1] for s in fp[1]))
            state = self.settling.get(rel)
            if state is None or state.signature != signature:
                self.settling[rel] = _Settling(signature, now)
                self.unsettled += 1
            elif now - state.since < self.settle_seconds:
                self.unsettled += 1
            else:
                self._handle(rel, files, fp, now)
            if self._stop:
                return
        for rel in set(self.settling) - seen:  # moved away or deleted
            del self.settling[rel]

    def _handle(self, rel: str, files: list[Path], fp: Fingerprint, now: float) -> None:
        digest = self.digests.get(fp)
        if digest is None:
            try:
                digest = content_digest(files)
            except OSError as exc:
                self._unreadable(rel, exc)
                return
            if self._fingerprint(rel, files) != fp:  # changed while being read: let it settle again
                self.settling.pop(rel, None)
                return
            self.digests[fp] = digest
        if digest in self.done:
            if self.done[digest] != rel and fp not in self.reported:
                self._event("duplicate", file=rel, sha256=digest, same_as=self.done[digest], fingerprint=fp[1])
                self.reported.add(fp)
            return
        if self.retry.get(digest, (0.0, 0))[0] > now:
            return
        self._scan(rel, files[0], digest, fp)

    def _scan(self, rel: str, path: Path, digest: str, fp: Fingerprint) -> None:
        name = self.outs.get(digest) or self._new_out_name(rel, digest)
        self.outs[digest] = name
        self._event("start", file=rel, sha256=digest, out=name, fingerprint=fp[1])
        row: dict[str, Any] = {"file": rel, "sha256": digest, "out": name}
        started = time.perf_counter()
        self._scanning = True
        try:
            if self._stop:  # a signal that came just before the flag was set
                raise WatchStopped(self._stop)
            row.update(self.scan_one(path, self.out / name))
            row["status"] = OK
        except WatchStopped:
            self._event("interrupted", file=rel, sha256=digest, seconds=round(time.perf_counter() - started, 2))
            raise
        except EdgePcamError as exc:
            row["status"] = str(exc)
        except OSError as exc:  # the machine, not the slide: try again later
            attempts = self.retry.get(digest, (0.0, 0))[1] + 1
            wait = RETRY_SECONDS[min(attempts, len(RETRY_SECONDS)) - 1]
            self.retry[digest] = (self.clock() + wait, attempts)
            self._event("failed", file=rel, sha256=digest, seconds=round(time.perf_counter() - started, 2),
                        error=one_line(exc), retry_in_seconds=wait)
            return
        except Exception as exc:  # a bug: recorded as this slide's failure, the watcher goes on
            traceback.print_exc(file=sys.stderr)
            row["status"] = f"internal error: {type(exc).__name__}: {one_line(exc)}"
        finally:
            self._scanning = False
        row["seconds"] = round(time.perf_counter() - started, 2)
        append_summary_row(self.out / SUMMARY_FILE, row)
        self.done[digest] = rel
        self.retry.pop(digest, None)
        self._event("done" if row["status"] == OK else "failed", file=rel, sha256=digest, seconds=row["seconds"],
                    status=row["status"], out=name)

    def _candidates(self) -> Iterator[tuple[str, list[Path]]]:
        """(path relative to the inbox, the slide's files) for every slide-like file, in name order."""
        for folder, dirs, names in os.walk(self.inbox, onerror=lambda exc: self._unreadable(
                os.path.relpath(exc.filename, self.inbox) if exc.filename else ".", exc)):
            stems = {Path(n).stem for n in names if n.lower().endswith(".mrxs")}
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in stems)
            for name in sorted(names):
                lower = name.lower()
                if name.startswith(".") or lower.endswith(PARTIAL_SUFFIXES) or not lower.endswith(SLIDE_SUFFIXES):
                    continue
                path = Path(folder) / name
                files = [path]
                if lower.endswith(".mrxs") and path.with_suffix("").is_dir():
                    files += sorted(p for p in path.with_suffix("").iterdir() if p.is_file())
                yield path.relative_to(self.inbox).as_posix(), files

    def _fingerprint(self, rel: str, files: list[Path]) -> Fingerprint | None:
        try:
            stats = [f.stat() for f in files]
        except OSError as exc:
            self._unreadable(rel, exc)
            return None
        return rel, tuple((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for s in stats)

    def _unreadable(self, rel: str, exc: OSError) -> None:
        key = (rel, ())
        if key not in self.reported:
            self.reported.add(key)
            self._event("unreadable", file=rel, error=one_line(exc))

    def _new_out_name(self, rel: str, digest: str) -> str:
        stem = slide_stem(rel)
        taken = set(self.outs.values())
        return stem if stem not in taken and not (self.out / stem).exists() else f"{stem}-{digest[:8]}"

    def _event(self, name: str, **fields: Any) -> None:
        event = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": name, **fields}
        append_line(self.out / EVENTS_FILE, json.dumps(event, ensure_ascii=True))
        if self.on_event:
            self.on_event(event)


def content_digest(files: list[Path]) -> str:
    """SHA-256 of the slide's bytes (for MRXS, of each file's name and bytes in turn)."""
    digest = hashlib.sha256()
    for i, path in enumerate(files):
        if i:
            digest.update(path.name.encode("utf-8", errors="surrogateescape") + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def slide_stem(name: str) -> str:
    """The file name without its folders and slide suffixes: 'a/b.ome.tif' -> 'b'."""
    stem = Path(name).name
    for suffix in (".ome.tif", ".ome.tiff", *SLIDE_SUFFIXES):
        if stem.lower().endswith(suffix):
            return stem[:-len(suffix)] or stem
    return stem


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def report_scanner(model: str | os.PathLike | None = None, **options: Any) -> ScanOne:
    """`scan_one` with `edge-pcam scan`'s engine (`scan_slide`); `options` are its keyword arguments."""
    def scan_one(path: Path, out: Path) -> Mapping[str, Any]:
        from edge_pcam.runtime.scan import scan_slide
        from edge_pcam.runtime.summary import summary_row_from_report

        return summary_row_from_report(scan_slide(path, out, model, **options).report.to_json())

    return scan_one


EVENT_LINES = {
    "watching": "watching {inbox} (pid {pid})",
    "start": "scanning {file} into {out}/",
    "done": "done {file} in {seconds:.1f} s",
    "duplicate": "skipped {file}: the same slide as {same_as}",
    "unreadable": "cannot read {file}: {error}",
    "interrupted": "interrupted {file} (scanned again at the next start)",
    "stopped": "stopped ({reason})",
}


def describe_event(event: Mapping[str, Any]) -> str:
    """One line for the console (the journal, under systemd)."""
    if event["event"] == "failed":
        retry = f"; trying again in {event['retry_in_seconds']} s" if "retry_in_seconds" in event else ""
        return f"failed {event['file']}: {event.get('status') or event.get('error')}{retry}"
    return EVENT_LINES[event["event"]].format(**event)
