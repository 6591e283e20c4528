"""The `zoo` command line through click's CliRunner (and once as the installed console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from zoo.cli import main
from zoo.cli.options import parse_duration


@pytest.fixture
def run():
    runner = CliRunner(env={"COLUMNS": "250"})

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_list_shows_every_model_with_parameter_counts(run):
    out = run("list")
    for name in ("simple-cnn", "pix2pix-unet-gan", "unet-resnet18", "unet-resnet18-gan"):
        assert name in out
    assert "54.41M" in out  # pix2pix unet_256
    assert "14.32M" in out  # smp U-Net ResNet18
    assert "2.77M" in out  # 70x70 PatchGAN


def test_list_pattern_and_architectures(run):
    out = run("list", "*resnet18*")
    assert "unet-resnet18-gan" in out and "simple-cnn" not in out
    out = run("list", "--arch")
    for arch in ("simple-cnn", "pix2pix-unet", "smp-unet", "patchgan"):
        assert arch in out


def test_info_reports_resolved_spec_params_and_flops(run):
    facts = json.loads(run("info", "unet-resnet18-gan", "--json"))
    assert facts["generator_params"] == 14_322_082
    # pix2pix's 70x70 PatchGAN (2,765,633 with BatchNorm) without norm: its three normed convs (128, 256, 512
    # channels) gain a bias each and lose BatchNorm's weight and bias: 896 fewer parameters.
    assert facts["discriminator_params"] == 2_765_633 - (128 + 256 + 512)
    assert [s["name"] for s in facts["spec"]["stages"]] == ["pretrain", "gan"]
    assert facts["spec"]["stages"][1]["optimizer"] == {"lr": 5e-5, "betas": [0.5, 0.999], "weight_decay": 0.0}
    # smp U-Net ResNet18: about 10.6 GFLOP per 256x256 forward at 3 input channels; at 1 channel a little less.
    assert 9.5 < facts["generator_gflops"] < 11.0
    out = run("info", "pix2pix-unet-gan")
    assert "54,409,858 parameters" in out and "2,765,633 parameters" in out


def test_unknown_model_is_a_one_line_error(run):
    out = run("info", "unet-resnet81-gan", code=1)
    assert "unknown model 'unet-resnet81-gan'; did you mean unet-resnet18-gan" in out


@pytest.mark.parametrize("command", ["list", "info", "train", "bench", "score", "colorize", "export", "report"])
def test_every_command_explains_itself_with_an_example(run, command):
    out = run(command, "--help")
    assert "Example:" in out and f"zoo {command}" in out


def test_installed_console_script_lists_the_plugin_model(example_plugin):
    zoo_script = Path(sys.executable).with_name("zoo")  # installed beside this interpreter
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run([zoo_script, "list", "example-*"], capture_output=True, text=True, check=True, env=env).stdout
    assert "example-residual-gan" in out and "example-residual" in out


def test_durations():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "1h30m", "2.5h")] == [90, 90, 900, 5400, 9000]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("15 minutes")


@given(st.lists(st.text(alphabet="abcdefghij()'=:.", min_size=1, max_size=15), min_size=1, max_size=80),
       st.integers(60, 300))
def test_a_shortened_message_keeps_whole_words_from_its_start_and_its_cause_at_the_end(words, limit):
    from zoo.errors import one_line

    text = " ".join(words)
    short = one_line(text, limit)
    if len(text) <= limit:
        assert short == text
        return
    head, _, tail = short.partition(" ... ")
    assert len(short) <= limit and head and tail
    assert text.startswith(head) and text[len(head)] == " "  # cut after a whole word
    assert text.endswith(tail) and text[-len(tail) - 1] == " "  # the last words, whole


def test_markdown_tables_hold_the_results_figures(tmp_path):
    """The README's tables are made with --format markdown: the same rows and figures as the results file."""
    from zoo.data import resolve_source

    photos = tmp_path / "photos.txt"
    photos.write_text("\n".join(str(p) for p in resolve_source("heldout")[:3]))
    result = CliRunner().invoke(main, ["score", "gray", "--data", str(photos), "--image-size", "64", "--workers", "0",
                                       "--results", str(tmp_path / "r"), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert lines[1].replace(" ", "").strip("|").split("|") == ["---"] * len(header)
    rows = {cells[0]: dict(zip(header, cells)) for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:])}
    saved = {row["model"]: row for row in json.loads(next((tmp_path / "r").glob("*.json")).read_text())["rows"]}
    assert set(rows) == {"gray", "truth"}
    assert float(rows["gray"]["PSNR (dB)"]) == pytest.approx(saved["gray"]["psnr"], abs=0.005)
    assert float(rows["gray"]["CIEDE2000"]) == pytest.approx(saved["gray"]["ciede2000"], abs=0.005)
