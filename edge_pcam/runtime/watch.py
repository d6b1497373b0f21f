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

The scanning itself is injected: `scan_one(slide, out_dir) -> summary fields`
(`runtime.scan.batch.SlideScanner`, the same step as `edge-pcam scan FOLDER`);
the results folder (lock, folder names, summary, events) is `runtime.results`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.results import ResultsFolder, ScanOne, one_line
from edge_pcam.runtime.slide_files import content_digest, find_slides

RETRY_SECONDS = (60, 300, 900)  # waits before scanning again after a machine error; the last one repeats
SLEEP_STEP = 0.2  # seconds: how soon a stop request is noticed between polls

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
        self.clock = clock
        self.folder = ResultsFolder(out, on_event)
        self.done: dict[str, str] = {}  # digest -> file of its summary row
        self.digests: dict[Fingerprint, str] = {}  # a file's fingerprint -> its content digest
        self.reported: set[Fingerprint] = set()  # duplicates (and unreadable paths) already logged
        self.settling: dict[str, _Settling] = {}
        self.retry: dict[str, tuple[float, int]] = {}  # digest -> (clock time to try again, attempts)
        self.unsettled = 0
        self._stop: str | None = None
        self._scanning = False
        self._load()

    def _load(self) -> None:
        """What an earlier run did: summary rows are done; events give the fingerprints seen."""
        for row in self.folder.rows:
            self.done[row["sha256"]] = row["file"]
        for event in self.folder.events():
            if "fingerprint" in event and "sha256" in event:
                fp = (event["file"], tuple(tuple(s) for s in event["fingerprint"]))
                self.digests[fp] = event["sha256"]
                if event["event"] == "duplicate":
                    self.reported.add(fp)

    def run(self, once: bool = False) -> None:
        """Poll until SIGTERM/SIGINT (or, with `once`, until every slide now in the inbox is handled)."""
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.folder.event("watching", inbox=str(self.inbox), pid=os.getpid())
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
            self.folder.event("stopped", reason=self._stop or "inbox handled")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.folder.close()

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
        for rel, files in find_slides(self.inbox, onerror=self._unlisted):
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
                self.folder.event("duplicate", file=rel, sha256=digest, same_as=self.done[digest], fingerprint=fp[1])
                self.reported.add(fp)
            return
        if self.retry.get(digest, (0.0, 0))[0] > now:
            return
        self._scan(rel, files[0], digest, fp)

    def _scan(self, rel: str, path: Path, digest: str, fp: Fingerprint) -> None:
        started = time.perf_counter()
        if self._stop:
            raise WatchStopped(self._stop)
        self._scanning = True
        try:
            self.folder.scan_slide(rel, path, digest, self.scan_one, by_content=True, record_machine_errors=False,
                                   fingerprint=fp[1])
        except OSError as exc:  # the machine, not the slide: try again later
            attempts = self.retry.get(digest, (0.0, 0))[1] + 1
            wait = RETRY_SECONDS[min(attempts, len(RETRY_SECONDS)) - 1]
            self.retry[digest] = (self.clock() + wait, attempts)
            self.folder.event("failed", file=rel, sha256=digest, seconds=round(time.perf_counter() - started, 2),
                              error=one_line(exc), retry_in_seconds=wait)
            return
        finally:
            self._scanning = False
        self.done[digest] = rel
        self.retry.pop(digest, None)

    def _fingerprint(self, rel: str, files: list[Path]) -> Fingerprint | None:
        try:
            stats = [f.stat() for f in files]
        except OSError as exc:
            self._unreadable(rel, exc)
            return None
        return rel, tuple((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for s in stats)

    def _unlisted(self, exc: OSError) -> None:
        self._unreadable(os.path.relpath(exc.filename, self.inbox) if exc.filename else ".", exc)

    def _unreadable(self, rel: str, exc: OSError) -> None:
        key = (rel, ())
        if key not in self.reported:
            self.reported.add(key)
            self.folder.event("unreadable", file=rel, error=one_line(exc))
