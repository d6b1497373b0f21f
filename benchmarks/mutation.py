"""Mutation score of the device side's decision code: mutmut over the functions in SCOPE.

    make mutation                                            # nice -n 10, one worker (MUTATION_WORKERS=2 for two)
    .venv/bin/python benchmarks/mutation.py --workers 2
    .venv/bin/python benchmarks/mutation.py --report-only    # the report again from mutants/ of the last run

mutmut 3 copies edge_pcam/ into mutants/ and writes every mutant of the files that pyproject's
[tool.mutmut] `only_mutate` names (the keys of SCOPE); it runs the fast tests listed there as
`pytest_add_cli_args_test_selection` once to learn which test reaches which function, then runs each
mutant of SCOPE against the tests that reach it, fastest first, stopping at the first failure. Never
the whole suite. A mutant that fails a test is killed; one that passes them all survives, and the
team kills it with a test or justifies it in benchmarks/mutation_equivalent.toml (an equivalent
mutant: the same behaviour for every input). A justification names the function and the changed
line, so it lapses when the code changes. mutmut mutates function bodies only: module constants
(PCam's saturation cut, the operating points' targets) are pinned by tests of their own.

Results: benchmarks/results/mutation.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_pcam.runtime.fileio import atomic_write_text  # noqa: E402
from edge_pcam.runtime.machine import describe_machine, summary_line  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "mutation.md"
EQUIVALENT = REPO / "benchmarks" / "mutation_equivalent.toml"
MUTANTS = REPO / "mutants"
RUN_INFO = MUTANTS / "edge-pcam-run.json"
TARGET = 0.90

# File -> the functions mutated (empty: all of them; a capitalised name: every method of that class;
# Class.method: that method).
SCOPE: dict[str, tuple[str, ...]] = {
    "edge_pcam/runtime/metrics.py": (),
    "edge_pcam/runtime/cam.py": (),
    "edge_pcam/runtime/tta.py": (),
    "edge_pcam/export/parity.py": (),
    "edge_pcam/runtime/scan/store.py": ("slide_digest", "_sample_spans", "_tiff_tile_tables", "ResumeKey"),
    "edge_pcam/runtime/tissue.py": ("saturation", "footprints", "tile_maximum", "tile_mean", "_over_footprints",
                                    "tissue_tiles", "hue", "ink_pixels", "thumbnail_reasons", "sharpness",
                                    "_sharpness", "_variance_in_place", "blurred", "TissueQC.excluded_mm2",
                                    "TissueQC.with_blur", "TissueQC.with_sharpness"),
}
KILLED = {"killed", "timeout", "segfault", "caught by type check"}  # the tests noticed the mutant


@dataclass
class Mutant:
    name: str
    file: str
    status: str
    diff: str = ""
    why: str = ""  # the justification, when an equivalent mutant survives

    @property
    def function(self) -> str:
        return self.name.rsplit("__mutmut_", 1)[0]


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def globs(path: str, names: tuple[str, ...]) -> list[str]:
    """mutmut's names for the mutants of `names` in `path` (functions: x_name, methods: xǁClassǁname)."""
    module = module_of(path)
    if not names:
        return [f"{module}.*"]
    return [f"{module}.xǁ{n.replace('.', 'ǁ')}__mutmut_*" if "." in n else
            f"{module}.xǁ{n}ǁ*" if n[0].isupper() else f"{module}.x_{n}__mutmut_*" for n in names]


def check_config() -> list[str]:
    """The test selection in pyproject; fails when its `only_mutate` is not SCOPE's files."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    if sorted(config["only_mutate"]) != sorted(SCOPE):
        raise SystemExit(f"pyproject.toml [tool.mutmut] only_mutate {config['only_mutate']} differs from "
                         f"benchmarks/mutation.py SCOPE {list(SCOPE)}: make them the same files")
    return config["pytest_add_cli_args_test_selection"]


def run_mutmut(workers: int) -> float:
    """A fresh mutmut run over SCOPE (mutants/ rebuilt); its wall time in seconds."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    patterns = [g for path, names in SCOPE.items() for g in globs(path, names)]
    start = time.monotonic()
    mutmut = Path(sys.executable).with_name("mutmut")
    done = subprocess.run([str(mutmut), "run", "--max-children", str(workers), *patterns], cwd=REPO)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"mutmut run failed (exit {done.returncode}); see its output above")
    RUN_INFO.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                    "seconds": seconds, "workers": workers, "machine": describe_machine()}))
    return seconds


def collect() -> list[Mutant]:
    """Every mutant of SCOPE with its status, from the .meta files mutmut leaves in mutants/."""
    from mutmut.stats import status_by_exit_code

    found = []
    for path, names in SCOPE.items():
        meta = MUTANTS / f"{path}.meta"
        if not meta.is_file():
            raise SystemExit(f"{meta.relative_to(REPO)} missing: run mutmut first (make mutation)")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        patterns = globs(path, names)
        found += [Mutant(key, path, status_by_exit_code[code]) for key, code in sorted(codes.items(), key=_natural)
                  if any(fnmatch.fnmatchcase(key, p) for p in patterns)]
    return found


def _natural(item: tuple[str, object]) -> tuple[str, int]:
    name, _, number = item[0].rpartition("__mutmut_")
    return name, int(number) if number.isdigit() else 0


def show(mutant: Mutant) -> str:
    """The mutant's change as a unified diff of its function (`mutmut show`), headers dropped."""
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "show", mutant.name], cwd=REPO, capture_output=True, text=True, check=True)
    return "\n".join(line for line in out.stdout.splitlines()
                     if not line.startswith(("# ", "--- ", "+++ "))).strip("\n")


def changed_lines(diff: str) -> set[str]:
    return {line[1:].strip() for line in diff.splitlines() if line.startswith("+")}


def justify(survivors: list[Mutant], entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """Attach each survivor's justification; returns the entries no survivor matched (stale)."""
    used = set()
    for mutant in survivors:
        for i, entry in enumerate(entries):
            if entry["function"] == mutant.function and entry["mutant"].strip() in changed_lines(mutant.diff):
                mutant.why = entry["why"]
                used.add(i)
                break
    return [e for i, e in enumerate(entries) if i not in used]


def score_row(label: str, mutants: list[Mutant]) -> str:
    killed = sum(m.status in KILLED for m in mutants)
    justified = sum(m.status not in KILLED and bool(m.why) for m in mutants)
    open_ = len(mutants) - killed - justified
    score = f"{100 * killed / len(mutants):.1f}%" if mutants else "n/a"
    return f"| {label} | {len(mutants)} | {killed} | {justified} | {open_} | {score} |"


def markdown(mutants: list[Mutant], stale: list[dict[str, str]], tests: list[str], run: dict) -> str:
    killed = sum(m.status in KILLED for m in mutants)
    survivors = [m for m in mutants if m.status not in KILLED]
    justified = [m for m in survivors if m.why]
    open_ = [m for m in survivors if not m.why]
    score = killed / len(mutants)
    versions = ", ".join(f"{p} {version(p)}" for p in ("mutmut", "pytest", "numpy"))
    lines = [
        "# Mutation score: the device side's decision code", "",
        f"`make mutation` (benchmarks/mutation.py), run {run['date']} on {summary_line(run['machine'])}; "
        f"{versions}; {run['workers']} worker(s) at nice 10, {run['seconds'] / 60:.0f} min of wall time.", "",
        f"**Score: {killed} of {len(mutants)} mutants killed, {100 * score:.1f}%** "
        f"(target {100 * TARGET:.0f}%: {'met' if score >= TARGET else 'NOT met'}). "
        f"Of the {len(survivors)} survivors, {len(justified)} are justified as equivalent below "
        f"(they change no result for any input) and {len(open_)} are neither killed nor justified.", "",
        "A mutant is one small change to the code (an operator, a constant, an argument dropped); it is killed "
        "when one of the tests below fails on it. Each mutant runs only the listed tests that reach its function.",
        "", "| code | mutants | killed | survived, justified | survived, open | killed |",
        "|---|---:|---:|---:|---:|---:|"]
    for path, names in SCOPE.items():
        label = f"`{path}`" + (f" ({', '.join(names)})" if names else "")
        lines.append(score_row(label, [m for m in mutants if m.file == path]))
    lines += [score_row("**all**", mutants), "", "Tests run against the mutants:", ""]
    lines += [f"- `{t}`" for t in tests]
    for title, group in (("Survivors neither killed nor justified", open_), ("Equivalent survivors", justified)):
        if group:
            lines += ["", f"## {title}", ""]
            for m in group:
                lines += [f"`{m.name}` ({m.status})" + (f": {m.why}" if m.why else ""), "", "```diff", m.diff,
                          "```", ""]
    if stale:
        lines += ["", "## Stale justifications (no survivor matches them: remove from mutation_equivalent.toml)", ""]
        lines += [f"- `{e['function']}`: `{e['mutant'].strip()}`" for e in stale]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from mutants/ of the last run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tests = check_config()
    if not args.report_only:
        run_mutmut(args.workers)
    if not RUN_INFO.is_file():
        raise SystemExit(f"{RUN_INFO.relative_to(REPO)} missing: run `make mutation` first")
    mutants = collect()
    survivors = [m for m in mutants if m.status not in KILLED]
    for m in survivors:
        m.diff = show(m)
    entries = tomllib.loads(EQUIVALENT.read_text()).get("equivalent", []) if EQUIVALENT.is_file() else []
    stale = justify(survivors, entries)
    report = markdown(mutants, stale, tests, json.loads(RUN_INFO.read_text()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, report)
    print(report.split("\n\n", 3)[2])  # the score line
    open_ = [m.name for m in survivors if not m.why]
    print(f"{len(open_)} survivor(s) neither killed nor justified" + (f": {', '.join(open_)}" if open_ else ""))
    print(f"report: {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
