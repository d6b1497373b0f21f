"""The rule that chooses the shipped int8 file (benchmarks/int8_choice.py; README "Which int8 file ships")."""

from __future__ import annotations

import pytest
from script_support import benchmark_script


@pytest.fixture(scope="module")
def int8_choice():
    return benchmark_script("int8_choice")


@pytest.fixture(scope="module")
def choose(int8_choice):
    return int8_choice.choose


def row(name, shift, auc, accepted=True):
    return {"name": name, "accepted": accepted, "shift_mean_accuracy": shift, "valid_auc": auc, "file": name}


def test_the_best_shift_mean_among_files_that_pass_the_gate(choose):
    rows = [row("float32", 0.99, 0.99), row("ptq", 0.850, 0.93), row("qat-2ep", 0.860, 0.92),
            row("qat-1ep", 0.900, 0.95, accepted=False)]
    assert choose(rows)["name"] == "qat-2ep"  # not the float reference, not the file that failed its gate


def test_under_a_tenth_of_a_point_is_a_tie_decided_by_auc_then_ptq(choose):
    assert choose([row("ptq", 0.8600, 0.930), row("qat", 0.8609, 0.935)])["name"] == "qat"   # tie: AUC decides
    assert choose([row("ptq", 0.8600, 0.935), row("qat", 0.8609, 0.930)])["name"] == "ptq"
    assert choose([row("qat", 0.8609, 0.930), row("ptq", 0.8600, 0.930)])["name"] == "ptq"   # equal AUC: PTQ
    assert choose([row("ptq", 0.8600, 0.940), row("qat", 0.8611, 0.930)])["name"] == "qat"   # 0.11 pt: no tie


def test_no_candidate_when_every_file_fails(choose):
    assert choose([row("float32", 0.9, 0.9), row("ptq", 0.8, 0.9, accepted=False)]) is None


def test_a_candidate_row_names_the_converted_file_inside_its_folder(tmp_path, int8_choice):
    folder = tmp_path / "runs" / "ptq"
    conversion = {"source_model": {"file": "best.h5", "sha256": "ab" * 32},
                  "files": [{"format": "int8", "file": "edge_pcam_int8.tflite", "accepted": True,
                             "parity": {"converted": {"accuracy": 0.86, "auc": 0.93},
                                        "keras": {"accuracy": 0.87, "auc": 0.94}}}]}
    got = int8_choice.candidate_row("ptq", tmp_path / "best.h5", conversion, folder)
    assert got["file"] == str(folder / "edge_pcam_int8.tflite")  # where convert wrote it, not the bare name
    assert (got["valid_accuracy"], got["keras_accuracy"], got["accepted"]) == (0.86, 0.87, True)
    assert got["source_sha256"] == "ab" * 32  # what ties the shipped file to the candidate the rule chose
