"""`edge-pcam convert` and `edge-pcam qat` on the command line: success output, one-line errors, recipes."""

from __future__ import annotations

import pytest

from cli_support import one_line_error, run_cli

from edge_pcam.errors import RecipeError

pytestmark = pytest.mark.tf


def test_convert_float32_from_the_command_line(tiny_model_h5, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["convert", tiny_model_h5, "--data", "synthetic:30", "--out", tmp_path / "out",
                              "--float32", "--no-companion"], monkeypatch, capsys)
    assert code == 0, err
    assert "edge_pcam_float32.tflite" in out and "summary.md" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "conversion.json", "edge_pcam_float32.tflite", "summary.md"]


def test_unknown_format_flag(tiny_model_h5, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["convert", tiny_model_h5, "--data", "synthetic:30", "--out", tmp_path, "--int4"],
                           monkeypatch, capsys)
    assert code != 0 and "--int4" in err
    assert not list(tmp_path.iterdir())


def test_not_an_edge_pcam_model(tmp_path, monkeypatch, capsys):
    import tf_keras as keras

    other = tmp_path / "other.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(other, save_format="h5")
    for command in (["convert", other, "--data", "synthetic:30", "--out", tmp_path / "o", "--float32"],
                    ["qat", other, "--data", "synthetic:30", "--out", tmp_path / "q"]):
        code, _, err = run_cli(command, monkeypatch, capsys)
        assert code == 2
        assert "not an edge-pcam model" in one_line_error(err) and str(other) in err


def test_unwritable_output_folder(tiny_model_h5, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["convert", tiny_model_h5, "--data", "synthetic:30", "--out", blocker / "sub",
                            "--float32"], monkeypatch, capsys)
    assert code == 2 and "cannot write the output folder" in one_line_error(err)


def test_edgetpu_without_compiler(tiny_model_h5, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    code, _, err = run_cli(["convert", tiny_model_h5, "--data", "synthetic:30", "--out", tmp_path / "o",
                            "--edgetpu"], monkeypatch, capsys)
    assert code == 2 and "Coral's apt repository" in one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_missing_data_is_a_one_line_error(tiny_model_h5, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["convert", tiny_model_h5, "--data", tmp_path / "nowhere", "--out", tmp_path / "o",
                            "--int8"], monkeypatch, capsys)
    assert code == 2 and "nowhere" in one_line_error(err)


def test_recipes_in_the_repository():
    from edge_pcam.export.recipe import ALL_FORMATS, available_recipes, load_convert_recipe

    assert {"edge", "all", "coral", "scan"} <= set(available_recipes())
    assert load_convert_recipe("edge")["formats"] == ["float32", "int8"]
    assert load_convert_recipe("all")["formats"] == [f for f in ALL_FORMATS if f != "edgetpu"]
    assert load_convert_recipe("scan")["batch"] > 1
    assert load_convert_recipe("coral")["formats"] == ["int8", "edgetpu"]


def test_bad_recipes(tmp_path):
    from edge_pcam.export.recipe import load_convert_recipe

    cases = {'formats = ["int4"]': "unknown format 'int4'", "speed = 3": "unknown key 'speed'",
             "formats = []": "non-empty", 'formats = ["int8"]\nbatch = 0': "batch must be a positive integer",
             'formats = ["int8"]\nmax_drop = -1': "max_drop"}
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"r{i}.toml"
        path.write_text(text)
        with pytest.raises(RecipeError, match=message):
            load_convert_recipe(path)
    with pytest.raises(RecipeError, match="unknown conversion recipe 'nope'"):
        load_convert_recipe("nope")
