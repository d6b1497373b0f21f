"""summary.csv: header once, rows whole or not at all after a kill, other columns refused."""

from __future__ import annotations

import csv

import pytest

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.summary import SUMMARY_COLUMNS, append_summary_row, read_summary


def test_rows_read_back_as_written_with_the_header_once(tmp_path):
    path = tmp_path / "summary.csv"
    append_summary_row(path, {"file": "a, b.svs", "status": "ok", "tissue_tiles": 12, "top_probability": 0.912345678,
                              "seconds": 3.5, "burden_decision": float("nan")})
    append_summary_row(path, {"file": "c.svs", "status": "c.svs: truncated\n(copy it again)"})
    append_summary_row(path, {"file": "line\nbreak.svs", "status": "ok"})  # a file name can hold anything
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(SUMMARY_COLUMNS) and len(lines) == 4
    rows = list(csv.DictReader(lines))  # a plain CSV reader sees the same
    assert rows == read_summary(path)
    assert (rows[0]["file"], rows[0]["tissue_tiles"], rows[0]["top_probability"]) == ("a, b.svs", "12", "0.912346")
    assert rows[0]["burden_decision"] == "" and rows[0]["finished"]
    assert rows[1]["status"] == "c.svs: truncated (copy it again)"  # one line
    assert rows[2]["file"] == "line break.svs"


def test_a_row_cut_by_a_kill_is_dropped(tmp_path):
    path = tmp_path / "summary.csv"
    append_summary_row(path, {"file": "a.svs", "status": "ok"})
    with open(path, "ab") as f:
        f.write(b"b.svs,0123,o")  # a kill in the middle of the next row
    assert [r["file"] for r in read_summary(path)] == ["a.svs"]
    append_summary_row(path, {"file": "c.svs", "status": "ok"})
    assert [r["file"] for r in read_summary(path)] == ["a.svs", "c.svs"]
    assert b"b.svs" not in path.read_bytes()


def test_a_summary_begun_before_the_warnings_column_keeps_its_columns(tmp_path):
    """A file without the warnings column (an earlier version) is appended to in its own columns, not refused:
    a watch service upgraded in place goes on; a new file has the column, one line per row's warnings."""
    earlier = ("file,sha256,status,reader,tissue_tiles,burden_decision,burden_high_specificity,burden_adjusted,"
               "burden_adjusted_low,burden_adjusted_high,largest_region_mm,largest_region_class,top_probability,"
               "seconds,model_sha256,out,finished")
    old = tmp_path / "old.csv"
    old.write_text(earlier + "\nx.svs,ab,ok,,,,,,,,,,,,,x,2026-01-01T00:00:00+00:00\n")
    append_summary_row(old, {"file": "a.svs", "status": "ok", "warnings": "soft slide"})
    assert old.read_text().splitlines()[0] == earlier and len(old.read_text().splitlines()) == 3
    assert [r["file"] for r in read_summary(old)] == ["x.svs", "a.svs"] and "warnings" not in read_summary(old)[1]
    new = tmp_path / "new.csv"
    append_summary_row(new, {"file": "a.svs", "status": "ok", "warnings": "soft slide | no stored\nrates"})
    assert new.read_text().splitlines()[0] == earlier + ",warnings"
    assert read_summary(new)[0]["warnings"] == "soft slide | no stored rates"


def test_other_columns_are_refused(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("file,status\nx.svs,ok\n")
    with pytest.raises(EdgePcamError, match="written with other columns"):
        append_summary_row(path, {"file": "a.svs", "status": "ok"})
    assert path.read_text() == "file,status\nx.svs,ok\n"
    with pytest.raises(ValueError, match="not summary.csv columns"):
        append_summary_row(tmp_path / "new.csv", {"file": "a.svs", "colour": "red"})
