"""README.md's figures traceable (issue 17; docs/figures.md lists every figure, its file and its command).

Links and cited paths point at committed files; the figures quoted from committed reports (conversion
reports, the TTA evaluations, the bundled model card, the training runs, the install sizes) equal them
at the precision shown. Expected values are read from those files, never written here, so a rerun
benchmark and a README rewritten from it keep being checked. MODEL_CARD.md's tables:
tests/runtime/test_bundled.py.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import pytest
from figure_support import REPO, assert_shown, committed_files, numbers, row, table

from edge_pcam.runtime.metadata import read_metadata

DOCS = ("README.md", "MODEL_CARD.md", "docs/figures.md")
CITED = re.compile(r"`((?:benchmarks|edge_pcam|tests|devices|scripts|docs)/[^`\s]*)`")
README = (REPO / "README.md").read_text(encoding="utf-8")
SHIPPED = REPO / "edge_pcam" / "models" / "edge_pcam_int8.tflite"


def _json(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def _expand(pattern: str) -> list[str]:
    """`a/{b,c}/d` -> a/b/d, a/c/d (globs stay globs)."""
    m = re.search(r"\{([^}]*)\}", pattern)
    return [q for alt in m.group(1).split(",") for q in _expand(pattern[:m.start()] + alt + pattern[m.end():])] \
        if m else [pattern]


@pytest.mark.parametrize("doc", DOCS)
def test_links_and_cited_paths_are_committed_files(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    files = committed_files()
    folders = {str(p) for f in files for p in Path(f).parents}
    links = [(REPO / doc).parent.joinpath(link).resolve().relative_to(REPO).as_posix()
             for link in re.findall(r"\]\(([^)#\s]+)", text) if not re.match(r"[a-z]+:", link)]
    cited = [p.rstrip("/.,") for raw in CITED.findall(text) for p in _expand(raw)]
    for path in links + cited:
        hits = [f for f in files | folders if glob.fnmatch.fnmatch(f, path)] if "*" in path else \
            [path] if path in files or path in folders else []
        assert hits, f"{doc} cites {path}, which is not a committed file or folder"


@pytest.mark.parametrize("doc", ("README.md", "MODEL_CARD.md"))
def test_no_figure_cites_a_file_outside_the_repository(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    assert "SPEC.md" not in text, f"{doc} cites SPEC.md, which is not in the repository"


def _results_sources() -> dict[str, tuple[dict, int, float | None, float | None]]:
    """First-cell text of the results table -> (metrics at 0.5, size in bytes, agreement, max |dp|)."""
    def files(kind):
        return {f["format"]: f for f in _json(f"benchmarks/results/conversion/{kind}/conversion.json")["files"]}
    ptq, qat = files("ptq"), files("qat")
    card = read_metadata(SHIPPED)

    def converted(f):
        return f["metrics"]["decision"], f["size_bytes"], f["parity"]["agreement"], f["parity"]["max_abs_dprob"]

    def size(path):
        return (REPO / path).stat().st_size
    return {
        "Keras float": (ptq["float32"]["parity"]["keras"], size("benchmarks/models/mix-hed/best.h5"), None, None),
        "TFLite float32": converted(ptq["float32"]),
        "TFLite float16": converted(ptq["float16"]),
        "TFLite dynamic range": converted(ptq["dynamic"]),
        "TFLite int8, post-training": converted(ptq["int8"]),
        "Keras QAT": (qat["int8"]["parity"]["keras"], size("benchmarks/models/mix-hed-qat/best.h5"), None, None),
        "(shipped)": (card["metrics"]["decision"], SHIPPED.stat().st_size, card["parity"]["agreement"], None),
        "--tta": (_json("benchmarks/results/tta/int8_tta.json")["metrics"]["decision"], SHIPPED.stat().st_size,
                  None, None),
    }


def test_results_table_quotes_the_conversion_reports_the_card_and_the_tta_evaluation():
    rows = table(README, "size", "accuracy", "AUC", "sensitivity", "specificity", "agreement with Keras")
    sources = _results_sources()
    assert len(rows) == len(sources), "a results row without a source here: add it to _results_sources"
    for label, (metrics, size, agreement, max_dp) in sources.items():
        r = row(rows, label)
        assert_shown(r["size"], size / 1e6)  # MB = 10^6 bytes, as the conversion reports write them
        assert_shown(r["accuracy"], metrics["accuracy"], 100)
        assert_shown(r["AUC"], metrics["auc"])
        assert_shown(r["sensitivity"], metrics["recall"], 100)
        assert_shown(r["specificity"], metrics["specificity"], 100)
        cell = r["agreement with Keras"]
        if agreement is None:
            assert not numbers(cell), f"{label}: agreement {cell!r} has no source"
            continue
        assert_shown(cell, agreement, 100)
        if "Δp" in cell:
            assert_shown(cell.split("Δp")[1], max_dp)


def test_the_shipped_files_triage_point_on_valid():
    card = read_metadata(SHIPPED)["metrics"]["triage"]
    m = re.search(r"stored\s+triage threshold \(([\d.]+)\) the shipped file reaches ([\d.]+)% sensitivity and "
                  r"([\d.]+)% specificity", README)
    assert m, "README no longer quotes the shipped file's triage point on valid: update this test"
    assert_shown(m.group(1), card["threshold"])
    assert_shown(m.group(2), card["recall"], 100)
    assert_shown(m.group(3), card["specificity"], 100)


def test_the_30_epoch_runs_best_epoch_and_tuning_auc():
    metrics = _json("benchmarks/models/subset-best/metrics.json")
    m = re.search(r"tuning AUC ([\d.]+) at epoch (\d+)", README)
    assert m, "README no longer quotes the 30-epoch run's best epoch: update this test"
    assert_shown(m.group(1), metrics["selection"]["best"])
    assert int(m.group(2)) == metrics["best_epoch"]


def test_the_long_runs_best_epoch_and_tuning_auc():
    metrics = _json("benchmarks/models/mix-hed/metrics.json")
    m = re.search(r"`mix-hed` run's best epoch was its last \(tuning AUC ([\d.]+)\)", README)
    assert m, "README no longer quotes the mix-hed run's best epoch: update this test"
    assert_shown(m.group(1), metrics["selection"]["best"])
    assert metrics["best_epoch"] == metrics["epochs_run"]


def test_issue_16s_targets_quote_the_int8_choice():
    result = _json("benchmarks/results/int8-choice/results.json")
    rows = {r["name"]: r for r in result["rows"]}
    shipped, ref, ptq = rows[result["chosen"]["name"]], rows["float32"], rows["ptq"]
    text = re.sub(r"\s+", " ", README)
    m = re.search(r"within 0\.3 points of its float model on valid \(([-+\d.]+)\) and on the shift mean "
                  r"\(([-+\d.]+)\).*?Valid accuracy 87\.5% and AUC 0\.945: (\w+) \(([\d.]+)% and ([\d.]+)\)\. "
                  r"Shift mean within 2 points of valid: (\w+) \(([\d.]+) points\)\. Post-training int8 scored "
                  r"higher on valid \(([\d.]+)% / ([\d.]+)\) but ([\d.]+) points lower on the shift mean", text)
    assert m, "README no longer states issue 16's targets as this test reads them: update it"
    assert_shown(m.group(1), shipped["valid_accuracy"] - ref["valid_accuracy"], 100)
    assert_shown(m.group(2), shipped["shift_mean_accuracy"] - ref["shift_mean_accuracy"], 100)
    close = all(abs(shipped[k] - ref[k]) <= 0.003 for k in ("valid_accuracy", "shift_mean_accuracy"))
    assert re.search(r"on the shift mean \([-+\d.]+\): " + ("met" if close else "missed"), text)
    met = shipped["valid_accuracy"] >= 0.875 and shipped["valid_auc"] >= 0.945
    assert m.group(3) == ("met" if met else "missed")
    assert_shown(m.group(4), shipped["valid_accuracy"], 100)
    assert_shown(m.group(5), shipped["valid_auc"])
    gap = shipped["valid_accuracy"] - shipped["shift_mean_accuracy"]
    assert m.group(6) == ("met" if gap <= 0.02 else "missed")
    assert_shown(m.group(7), gap, 100)
    assert_shown(m.group(8), ptq["valid_accuracy"], 100)
    assert_shown(m.group(9), ptq["valid_auc"])
    assert_shown(m.group(10), shipped["shift_mean_accuracy"] - ptq["shift_mean_accuracy"], 100)
    models = result["shift"]["models"]
    lead = {s: models[shipped["name"]][s]["accuracy"] - models["ptq"][s]["accuracy"] for s in result["shift"]["shifts"]}
    top = max(lead, key=lead.get)
    others = [v for s, v in lead.items() if s != top]
    m = re.search(r"That lead comes from one shift, (\S+) \(([\d.]+)% against ([\d.]+)%\); on the other (\w+) the "
                  r"QAT file is between ([\d.]+) points behind and ([\d.]+) point ahead", text)
    assert m, "README no longer says where the shipped file's shift lead comes from: update this test"
    assert m.group(1) == top and m.group(4) == {8: "eight"}.get(len(others))
    assert_shown(m.group(2), models[shipped["name"]][top]["accuracy"], 100)
    assert_shown(m.group(3), models["ptq"][top]["accuracy"], 100)
    assert_shown(m.group(5), -min(others), 100)
    assert_shown(m.group(6), max(others), 100)


INSTALL_ROWS = {"Linux x86-64": ("x86_64", "base"), "Linux aarch64": ("aarch64", "base"),
                "tflite-runtime stack": ("aarch64", "tflite-runtime stack")}


def test_install_size_table_quotes_install_size_json():
    platforms = _json("benchmarks/results/install_size.json")["platforms"]
    rows = table(README, "platform", "imagecodecs", "whole base install")
    assert len(rows) == len(INSTALL_ROWS)
    for label, (machine, stack) in INSTALL_ROWS.items():
        r, s = row(rows, label), platforms[machine][stack]
        dist = s["distributions"]
        openslide = {k: dist["openslide-bin"][k] + dist["openslide-python"][k] for k in ("installed", "wheel")}
        for column, sizes in (("base without slide readers", s["without_slide_readers"]),
                              ("openslide-bin + openslide-python", openslide),
                              ("imagecodecs", dist["imagecodecs"]), ("whole base install", s["total"])):
            assert_shown(r[column], sizes["installed"] / 1e6, index=0)
            assert_shown(r[column], sizes["wheel"] / 1e6, index=1)


def test_recipe_rows_quote_the_committed_run_they_link():
    rows = table(README, "recipe", "valid accuracy", "valid AUC")
    checked = 0
    for r in rows:
        run = re.search(r"\((benchmarks/models/[^/)]+)/metrics\.json\)", " ".join(r.values()))
        if run:
            valid = _json(f"{run.group(1)}/metrics.json")["valid"]["decision"]
            assert_shown(r["valid accuracy"], valid["accuracy"], 100)
            assert_shown(r["valid AUC"], valid["auc"])
            checked += 1
    assert checked, "no recipe row links a committed run's metrics.json"


def test_the_10_epoch_variants_quote_the_recipe_comparison():
    result = _json("benchmarks/results/recipes-10ep/results.json")
    rows = table(README, "variant", "valid accuracy (10 ep)", "shift mean accuracy")
    assert len(rows) == len(result["rows"])
    for r in result["rows"]:
        shown, mean = row(rows, r["name"]), r["shift"]["mean"]
        assert_shown(shown["train patches"], r["train_patches"])
        assert_shown(shown["valid accuracy (10 ep)"], r["valid_accuracy"], 100)
        assert_shown(shown["valid AUC (10 ep)"], r["valid_auc"])
        assert_shown(shown["shift mean accuracy"], mean["accuracy"], 100)
        assert_shown(shown["shift mean AUC"], mean["auc"])


def test_the_aarch64_summary_counts_and_quotes_the_emulation_report():
    report = (REPO / "benchmarks" / "results" / "arm64-emulated.md").read_text(encoding="utf-8")
    rows = [r for r in table(report, "Run", "Verdict") if r["Run"].split(" vs ")[0].endswith("tflite-runtime")]
    verdicts = [r["Verdict"] for r in rows]
    start = README.index("On the emulated aarch64")
    summary = README[start:README.index("Details:", start)]
    m = re.search(r"of its (\d+) comparisons (\d+) fail, (\d+) did\s+not run and (\d+) are not supported", summary)
    assert m, "README's aarch64 summary no longer counts tflite-runtime's rows: update this test"
    assert [int(x) for x in m.groups()] == [len(rows), sum("FAIL" in v for v in verdicts),
                                           sum("did not run" in v for v in verdicts),
                                           sum("not supported" in v for v in verdicts)]
    cells = {float(c) for r in table(report, "Run", "Verdict") for c in r.values() if re.fullmatch(r"[\d.e+-]+", c)}
    for token in re.findall(r"\d+\.\d+|\d+e-\d+", summary):
        assert token in report or float(token) in cells, f"README's aarch64 summary quotes {token}, not in the report"


def test_the_demo_time_quotes_the_committed_demo_timing():
    timing = REPO / "benchmarks" / "results" / "demo-timing.json"
    if "demo-timing.md" not in README:
        pytest.skip("README quotes no demo time yet (benchmarks/demo_timing.py writes it after `make demo`)")
    m = re.search(r"([\d.]+) minutes[^.]*demo-timing\.md", README)
    assert m, "README links demo-timing.md without the minutes it quotes"
    assert_shown(m.group(1), json.loads(timing.read_text())["total_minutes"])


@pytest.mark.real_data
def test_the_subsets_jpegs_carry_libjpegs_quality_75_tables(subset_dir):
    """MODEL_CARD.md: the subset was re-encoded as JPEG at libjpeg quality 75 (by its quantization tables)."""
    import io

    from PIL import Image

    assert "libjpeg quality 75" in (REPO / "MODEL_CARD.md").read_text(encoding="utf-8")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", quality=75)
    tables_75 = Image.open(buffer).quantization
    files = sorted((subset_dir / "train").glob("*/*.jpg"))[::997] + sorted((subset_dir / "valid").glob("*/*.jpg"))[::301]
    assert len(files) > 20
    for f in files:
        assert Image.open(f).quantization == tables_75, f


def test_the_mutation_score_quotes_the_committed_mutation_report():
    report = (REPO / "benchmarks" / "results" / "mutation.md").read_text(encoding="utf-8")
    measured = re.search(r"\*\*Score: (\d+) of (\d+) mutants killed, ([\d.]+)%\*\*", report)
    quoted = re.search(r"(\d+) of (\d+) mutants are killed \(([\d.]+)%\)", README)
    assert measured and quoted, "README or benchmarks/results/mutation.md no longer states the mutation score"
    assert quoted.groups() == measured.groups()
    assert "make mutation" in README


def test_what_a_scan_tells_you_quotes_the_burden_report():
    """README's burden table is the report's "Chosen method" table, row for row."""
    report = (REPO / "benchmarks" / "results" / "burden.md").read_text(encoding="utf-8")
    chosen = report.split("## Chosen method", 1)[1].split("\n## ", 1)[0]

    def block_rows(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if re.match(r"\|\s*\d+x\d+\s*\|", line)]
    expected = block_rows(chosen)
    section = README.split("## What a scan tells you", 1)[1].split("\n## ", 1)[0]
    assert expected and block_rows(section) == expected


def test_what_a_scan_tells_you_quotes_the_burden_figures():
    def chosen(summary, key):
        return [size["estimators"]["mixture ML (chosen)"][key] for size in summary["sizes"].values()]

    def oracle_worst(summary):
        return max(abs(size["estimators"][ORACLE]["worst_error_points"]) for size in summary["sizes"].values())
    nearest = _json("benchmarks/results/burden.json")["summary"]
    bicubic = _json("benchmarks/results/burden-bicubic/burden.json")["summary"]
    text = re.sub(r"\s+", " ", README.split("## What a scan tells you", 1)[1].split("\n## ", 1)[0])
    m = re.search(r"the count at 0\.5 reads ([\d.]+)% on average", text)
    assert m, "README no longer quotes the raw count on tumour-free mosaics: update this test"
    assert_shown(m.group(1), nearest["sizes"]["0"]["estimators"]["raw count at decision"]["mean_error_points"])
    m = re.search(r"mean error stays within ([\d.]+) points .*? miss by up to ([\d.]+) points .*?sensitivity "
                  r"([\d.]+) against ([\d.]+) at 0\.5.*?the worst miss is ([\d.]+) points", text)
    assert m, "README no longer quotes the burden report as this test reads it: update it"
    assert_shown(m.group(1), max(abs(e) for e in chosen(nearest, "mean_error_points")))
    assert_shown(m.group(2), max(abs(e) for e in chosen(nearest, "worst_error_points")))
    decision = nearest["rates"]["points"]["decision"]
    assert_shown(m.group(3), decision["scanned_tpr"])
    assert_shown(m.group(4), decision["card_tpr"])
    assert_shown(m.group(5), oracle_worst(nearest))
    m = re.search(r"one of 20 16 × 16 blocks \(([\d.]+) mm corner to corner.*?measured ([\d.]+) mm", text)
    assert m, "README no longer quotes the 16 x 16 blocks' diameters: update this test"
    assert_shown(m.group(1), nearest["sizes"]["16"]["true_diameter_mm"])
    assert_shown(m.group(2), nearest["sizes"]["16"]["regions"]["chosen"]["min_mm"])
    m = re.search(r"sensitivity of ([\d.]+) against the card's ([\d.]+), and the burden is underestimated by up "
                  r"to ([\d.]+) points on average at 16 × 16, with coverage down to (\d+)%.*?mean error back to "
                  r"([\d.]+) points at most", text)
    assert m, "README no longer quotes the bicubic burden report as this test reads it: update it"
    assert_shown(m.group(1), bicubic["rates"]["points"]["decision"]["scanned_tpr"])
    assert_shown(m.group(2), bicubic["rates"]["points"]["decision"]["card_tpr"])
    assert_shown(m.group(3), -bicubic["sizes"]["16"]["estimators"]["mixture ML (chosen)"]["mean_error_points"])
    assert_shown(m.group(4), min(chosen(bicubic, "coverage")), 100)
    assert_shown(m.group(5), max(abs(s["estimators"][ORACLE]["mean_error_points"]) for s in bicubic["sizes"].values()))


ORACLE = "mixture ML, rates of the other mosaics' tiles (oracle)"


def test_the_scan_sections_quote_the_softness_report():
    """The enlargement filter's cost in sensitivity and where the soft-slide line falls (softness.json)."""
    from edge_pcam.runtime.tissue import SOFT_SLIDE_RATIO
    soft = _json("benchmarks/results/softness.json")
    rows = soft["rows"]
    text = re.sub(r"\s+", " ", README)
    m = re.search(r"a bilinear enlargement of 3% brought the tiles' median sharpness to (\d+)% of the patches' and "
                  r"lowered the model's sensitivity from ([\d.]+) to ([\d.]+) on valid patches", text)
    assert m, "README no longer quotes the enlargement filter's evidence as this test reads it: update it"
    assert_shown(m.group(1), rows["enlarged, bilinear"]["median_sharpness"] / rows["unchanged"]["median_sharpness"], 100)
    assert_shown(m.group(2), rows["unchanged"]["sensitivity"])
    assert_shown(m.group(3), rows["enlarged, bilinear"]["sensitivity"])
    assert soft["scan_enlarges_with"] == "nearest"
    # the report's line is the scan's: its reference and ratio are the constants the scan uses
    from edge_pcam.runtime.tissue import PCAM_SHARPNESS_MEDIAN
    assert (soft["pcam_sharpness_median"], soft["soft_slide_ratio"]) == (PCAM_SHARPNESS_MEDIAN, SOFT_SLIDE_RATIO)
    m = re.search(r"below (\d+)% of it, warns.*?every kind the warning catches shifts a 25% burden by ([\d.]+) "
                  r"points or more, and every milder one it lets pass by ([\d.]+) or less", text)
    assert m, "README no longer quotes the soft-slide line as this test reads it: update it"
    assert_shown(m.group(1), SOFT_SLIDE_RATIO, 100)
    line = soft["soft_slide_ratio"] * soft["pcam_sharpness_median"]
    caught = [abs(r["burden_bias"]["0.25"]) for r in rows.values() if r["median_sharpness"] < line]
    passed = [abs(r["burden_bias"]["0.25"]) for name, r in rows.items()
              if name != "unchanged" and r["median_sharpness"] >= line]
    assert caught and passed
    assert_shown(m.group(2), min(caught))
    assert_shown(m.group(3), max(passed))


def test_what_a_scan_tells_you_quotes_the_chance_and_the_soft_warnings():
    """The share of the outcome that is chance (the burden report's simulation) and the soft-slide warnings
    of the nearest and bicubic runs."""
    nearest = _json("benchmarks/results/burden.json")["summary"]
    bicubic = _json("benchmarks/results/burden-bicubic/burden.json")["summary"]
    text = re.sub(r"\s+", " ", README.split("## What a scan tells you", 1)[1].split("\n## ", 1)[0])
    m = re.search(r"probabilities for these patches, ([\d.]+)% of 16 × 16 mosaics miss the 2-point goal \(([\d.]+)% "
                  r"of 12 × 12, ([\d.]+)% of 8 × 8\) and ([\d.]+)% of 4 × 4 blocks are not found \(([\d.]+)% of "
                  r"16 × 16 ones fall a size class short\), so a run of (\d+) mosaics per size meets the "
                  r"worst-error goal with a chance of (\d+)% and the category goal with (\d+)%", text)
    assert m, "README no longer quotes the burden report's chance section as this test reads it: update it"
    chance = nearest["chance"]
    for group, size, goal in ((1, "16", "burden"), (2, "12", "burden"), (3, "8", "burden"), (4, "4", "category"),
                              (5, "16", "category")):
        assert_shown(m.group(group), chance["sizes"][size][goal], 100)
    # the sizes quoted are all that miss: the run's chance is the product of the quoted sizes' shares
    assert {(k, g) for k, v in chance["sizes"].items() for g in ("burden", "category") if v[g]} == {
        ("16", "burden"), ("12", "burden"), ("8", "burden"), ("4", "category"), ("16", "category")}
    assert int(m.group(6)) == chance["per_size"]
    assert_shown(m.group(7), chance["run_meets"]["burden"], 100)
    assert_shown(m.group(8), chance["run_meets"]["category"], 100)
    assert "no estimator the report compares keeps its worst error within 2 points at every size" in text
    assert all(any(abs(size["estimators"][name]["worst_error_points"]) > 2 for size in nearest["sizes"].values())
               for name in next(iter(nearest["sizes"].values()))["estimators"])
    m = re.search(r"every one of the (\d+) bicubic scans warned that the slide is soft \(median tile sharpness "
                  r"([\d.]+) to ([\d.]+) per planted size, below the line of ([\d.]+)\), and none of the (\d+) "
                  r"nearest ones did \(([\d.]+) to ([\d.]+)\)", text)
    assert m, "README no longer quotes the soft-slide warnings of the burden runs as this test reads it: update it"
    for summary, count, low, high in ((bicubic, 1, 2, 3), (nearest, 5, 6, 7)):
        sizes = summary["sizes"].values()
        assert int(m.group(count)) == sum(s["mosaics"] for s in sizes)
        assert_shown(m.group(low), min(s["median_sharpness"] for s in sizes))
        assert_shown(m.group(high), max(s["median_sharpness"] for s in sizes))
    assert all(s["soft_warnings"] == s["mosaics"] for s in bicubic["sizes"].values())
    assert all(s["soft_warnings"] == 0 for s in nearest["sizes"].values())
    from edge_pcam.runtime.tissue import PCAM_SHARPNESS_MEDIAN, SOFT_SLIDE_RATIO
    assert_shown(m.group(4), PCAM_SHARPNESS_MEDIAN * SOFT_SLIDE_RATIO)


def test_the_scan_speed_row_quotes_both_scan_reports():
    """README's scan-against-raw row: each host's CPU overheads, CPU-bound shares, wall shares and
    reading-thread costs equal its committed scan.json at the precision shown."""
    cell = row(table(README, "figure", "measured", "goal"), "scan of a JPEG-tiled 40x SVS")["measured"]
    amd_text, intel_text = cell.split("Intel Xeon host", 1)
    for text, path in ((amd_text, "benchmarks/results/scan-amd-epyc/scan.json"),
                       (intel_text, "benchmarks/results/scan.json")):
        result = _json(path)
        rows = sorted(result["rows"], key=lambda r: r["batch"])
        overheads = sorted(100 * r["overhead_cpu"] for r in rows)
        shares = sorted(100 / (1 + r["overhead_cpu"]) for r in rows)
        walls = sorted(100 * r["scan_tiles_per_second"] / r["raw_tiles_per_second"] for r in rows)
        profile = next(p for p in result["profiles"] if p["reader"] == result["scan_reader"])
        c = profile["cpu_ms_per_tile"]
        reading = c["decode"] + c["resample"] + c["cut"] + c["sharpness"]
        if path.endswith("scan-amd-epyc/scan.json"):  # figures per batch, in batch order
            m = re.search(r"\+([\d.]+)%, \+([\d.]+)% and \+([\d.]+)% CPU at batch 1, 16 and 64, "
                          r"so (\d+)%, (\d+)% and (\d+)% CPU-bound", text)
            assert m, text
            for i, r in enumerate(rows):
                assert_shown(m.group(1 + i), r["overhead_cpu"], 100)
                assert_shown(m.group(4 + i), 1 / (1 + r["overhead_cpu"]), 100)
            m = re.search(r"(\d+)–(\d+)% by wall time; the reading thread alone ([\d.]+) ms per tile "
                          r"\(decode ([\d.]+)\)", text)
            assert m, text
            assert_shown(m.group(1), walls[0])
            assert_shown(m.group(2), walls[-1])
            assert_shown(m.group(3), reading)
            assert_shown(m.group(4), c["decode"])
            allowed = sorted(r["raw_cpu_ms_per_tile"] * (1 / 0.9 - 1) for r in rows)
            m = re.search(r"within the ([\d.]+)–([\d.]+) ms allowed at every batch", text)
            assert m and reading < allowed[0], text
            assert_shown(m.group(1), allowed[0])
            assert_shown(m.group(2), allowed[-1])
        else:  # figures as ranges over the batches
            m = re.search(r"\+(\d+)–(\d+)%, (\d+)–(\d+)%, (\d+)–(\d+)% by wall time; reading thread ([\d.]+) ms", text)
            assert m, text
            for i, values in enumerate((overheads, shares, walls)):
                assert_shown(m.group(1 + 2 * i), values[0])
                assert_shown(m.group(2 + 2 * i), values[-1])
            assert_shown(m.group(7), reading)


def test_what_a_scan_tells_you_quotes_the_disjoint_burden_report():
    """The paragraph on rates from other patches (calibrate on one half of valid, mosaics from the other)."""
    text = re.sub(r"\s+", " ", README.split("## What a scan tells you", 1)[1].split("\n## ", 1)[0])
    result = _json("benchmarks/results/burden-disjoint/burden.json")
    sizes = result["summary"]["sizes"].values()
    chosen = [row["estimators"]["mixture ML (chosen)"] for row in sizes]
    m = re.search(r"on ([\d,]+) valid patches and builds the mosaics from the other ([\d,]+)\. .*? stores the "
                  r"counts of the rest \(here (\d+)\)", text)
    assert m, "README no longer describes the disjoint run as this test reads it: update it"
    assert int(m.group(1).replace(",", "")) == result["disjoint"]["card_patches"]
    assert int(m.group(2).replace(",", "")) == result["disjoint"]["mosaic_normal"] + result["disjoint"]["mosaic_tumour"]
    counted = re.search(r"([\d,]+) of ([\d,]+) labelled patches", result["model"]["rates"])  # the card's words
    assert counted and int(m.group(3)) == int(counted.group(1).replace(",", ""))
    assert int(counted.group(2).replace(",", "")) == result["disjoint"]["card_patches"]
    m = re.search(r"covers the truth in (\d+)% to (\d+)% of the mosaics at every size \(mean widths ([\d.]+) to "
                  r"([\d.]+) points\)", text)
    assert m, text
    assert_shown(m.group(1), min(c["coverage"] for c in chosen), 100)
    assert_shown(m.group(2), max(c["coverage"] for c in chosen), 100)
    assert_shown(m.group(3), min(c["mean_ci_width_points"] for c in chosen))
    assert_shown(m.group(4), max(c["mean_ci_width_points"] for c in chosen))
    decision = result["summary"]["rates"]["points"]["decision"]
    m = re.search(r"false-positive rate at the decision threshold is ([\d.]+) against ([\d.]+) on the mosaics' "
                  r"patches, and the burden comes out ([\d.]+) to ([\d.]+) points high on average", text)
    assert m, text
    assert_shown(m.group(1), decision["card_fpr"])
    assert_shown(m.group(2), decision["scanned_fpr"])
    assert_shown(m.group(3), min(c["mean_error_points"] for c in chosen))
    assert_shown(m.group(4), max(c["mean_error_points"] for c in chosen))
    assert min(c["mean_error_points"] for c in chosen) > 0  # "high"
