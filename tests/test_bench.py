"""`zoo bench`: the image-size rule, timing and memory measurement, OOM retries, error rows, results files, reports.

No test asserts an absolute speed: the machine is shared. Timings are checked for consistency (p90 >= median,
agreement with torch.utils.benchmark.Timer within a loose band) and the bookkeeping against hand computation.
"""

from __future__ import annotations

import csv
import json
import math
import time

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo import checkpoint, get_spec
from zoo.cli.harness import bench
from zoo.data import resolve_source
from zoo.factory import create_models, list_models
from zoo.harness import plots
from zoo.harness import results as report
from zoo.harness import timing as harness
from zoo.harness.timing import BenchSettings, Timing, bench_model, bench_models, peak_memory
from zoo.spec import adapt_to_image_size

SMALL = BenchSettings(device="cpu", batch_size=2, image_size=64, iters=2, warmup=1)
TOP_KEYS = {"kind", "created", "machine", "settings", "rows", "samples", "grids"}


def tiny_cnn():
    return get_spec("simple-cnn").with_overrides(generator={"width": 8, "depth": 2})


def tiny_gan():
    return get_spec("pix2pix-unet-gan").with_overrides(generator={"ngf": 8}, discriminator={"ndf": 8})


# ------------------------------------------------------------------------------------------- image size


@pytest.mark.parametrize(("size", "num_downs"), [(64, 6), (96, 5), (128, 7), (256, 8), (512, 8)])
def test_pix2pix_num_downs_follows_the_image_size(size, num_downs):
    spec, note = adapt_to_image_size(tiny_gan(), size)
    assert spec.generator.settings["num_downs"] == num_downs
    assert note == (None if num_downs == 8 else f"num_downs 8 -> {num_downs} for {size} px")
    assert spec.generator.settings["ngf"] == 8 and spec.discriminator == tiny_gan().discriminator


def test_adapted_pix2pix_runs_where_the_registry_setting_cannot():
    original, _ = create_models(tiny_gan())
    adapted, _ = create_models(adapt_to_image_size(tiny_gan(), 64)[0])
    x = torch.zeros(1, 1, 64, 64)
    with pytest.raises(ValueError, match="divisible by 256"):
        original.eval()(x)
    assert adapted.eval()(x).shape == (1, 2, 64, 64)


def test_generators_without_num_downs_are_left_alone():
    spec = get_spec("unet-resnet18")
    assert adapt_to_image_size(spec, 64) == (spec, None)


# ------------------------------------------------------------------------------------------- timing


def test_timing_statistics_by_hand():
    timing = Timing([0.4, 0.1, 0.3, 0.2], batch_size=2)
    assert timing.images_per_s == pytest.approx(8 / 1.0)  # 4 batches of 2 in 1 s
    assert timing.median_ms == pytest.approx(250.0)
    assert timing.p90_ms == pytest.approx(370.0)  # 0.3 + 0.7 * (0.4 - 0.3), linear interpolation


def test_time_iterations_warms_up_then_times_each_call():
    calls = []

    def fn() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.01)

    seconds = harness.time_iterations(fn, torch.device("cpu"), warmup=1, iters=3)
    assert len(calls) == 4 and len(seconds) == 3  # one warm-up call cannot be compared, so it is not extended
    assert all(s >= 0.01 for s in seconds)  # a timer that misses the call's own sleep is broken


def test_warm_up_goes_on_while_calls_still_speed_up():
    """Like a model whose first calls generate kernels: slow, slower, then steady; none of the slow ones is timed."""
    delays = iter([0.2, 0.1, 0.05, 0.02])
    calls = []

    def fn() -> None:
        calls.append(None)
        time.sleep(next(delays, 0.02))

    harness.time_iterations(fn, torch.device("cpu"), warmup=2, iters=3)
    assert 4 + 3 <= len(calls) <= harness.WARMUP_CAP * 2 + 3


def test_harness_agrees_with_torch_utils_benchmark_timer():
    """Self-check on one callable: the harness's median agrees with Timer's within a loose band (shared machine)."""
    a, b = torch.randn(384, 384), torch.randn(384, 384)

    def fn() -> None:
        for _ in range(4):
            torch.mm(a, b)

    ours, theirs = [], []
    for _ in range(3):  # interleaved rounds; the best of each, since other load only ever adds time
        ours.append(Timing(harness.time_iterations(fn, torch.device("cpu"), warmup=3, iters=10), 1).median_ms / 1e3)
        theirs.append(harness.timer_median(fn, 10))
    assert 0.5 < min(ours) / min(theirs) < 2.0


def test_matmul_peak_counts_two_flops_per_multiply_add(monkeypatch):
    monkeypatch.setattr(harness, "time_iterations", lambda fn, device, warmup, iters: [0.5, 0.25])
    assert harness.matmul_peak(torch.device("cpu"), torch.float32, size=64) == pytest.approx(2 * 64**3 / 0.25)


# ------------------------------------------------------------------------------------------- memory


@pytest.mark.skipif(harness.memory_method(torch.device("cpu")) is None, reason="no /proc/self/clear_refs here")
def test_peak_memory_sees_what_the_block_allocates_and_not_what_came_before():
    mib = 2**20
    held = torch.ones(96 * mib // 4)  # 96 MiB in use before the block
    with peak_memory(torch.device("cpu")) as inside:
        block = torch.ones(128 * mib // 4)
        block += 1
        del block
    with peak_memory(torch.device("cpu")) as idle:
        torch.ones(16)
    assert 120 < inside.mib < 200
    assert idle.mib < 32
    del held


# ------------------------------------------------------------------------------------------- rows


@pytest.fixture(scope="module")
def measured():
    """One harness run over a model that cannot be built, a tiny regression model and a tiny GAN, at 64 px."""
    broken = get_spec("simple-cnn").with_overrides(generator={"nonsense": 1})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "MATMUL_SIZE", 512)  # the peak's size does not matter here; its time does
        return bench_models([broken, tiny_cnn(), tiny_gan()], SMALL, echo=lambda message: None)


def test_a_model_that_fails_to_build_is_a_row_with_its_error_and_the_others_run(measured):
    rows, _ = measured
    assert [row["model"] for row in rows] == ["simple-cnn", "simple-cnn", "pix2pix-unet-gan"]
    assert "nonsense" in rows[0]["error"] and rows[0].get("infer_img_s") is None
    assert rows[1]["error"] is None and rows[2]["error"] is None


def test_rows_hold_consistent_figures(measured):
    rows, used = measured
    peak = used["matmul_peak_gflops_s"]
    for row, spec in zip(rows[1:], [tiny_cnn(), tiny_gan()]):
        generator, discriminator = create_models(adapt_to_image_size(spec, 64)[0])
        assert row["params"] == sum(p.numel() for p in generator.parameters())
        d_params = None if discriminator is None else sum(p.numel() for p in discriminator.parameters())
        assert row["d_params"] == d_params
        assert row["gflops"] > 0 and row["infer_img_s"] > 0 and row["train_g_img_s"] > 0
        assert row["latency_ms_p90"] >= row["latency_ms_median"] > 0
        assert row["achieved_gflops_s"] == pytest.approx(row["gflops"] * row["infer_img_s"])
        assert row["peak_fraction"] == pytest.approx(row["achieved_gflops_s"] / peak)
        assert row["batch_size"] == 2 and row["oom_retries"] == 0
        assert row["peak_mem_train_mib"] is None or row["peak_mem_train_mib"] >= 0
    assert rows[1]["train_gd_img_s"] is None and rows[1]["note"] is None
    assert rows[2]["train_gd_img_s"] > 0 and rows[2]["note"] == "num_downs 8 -> 6 for 64 px"
    assert used["device"] == "cpu" and used["dtype"] == "float32" and peak > 0 and used["image_size"] == 64
    assert used["matmul_size"] == 512


def test_gflops_per_image_do_not_depend_on_the_batch(measured):
    rows, _ = measured
    generator, _ = create_models(tiny_cnn())
    one = harness.count_flops(generator, (1, 1, 64, 64))
    assert rows[1]["gflops"] == pytest.approx(one / 1e9)
    assert harness.count_flops(generator, (3, 1, 64, 64)) == 3 * one


def test_a_flip_averaged_model_counts_the_two_passes_it_runs():
    """FLOPs are what inference runs: the mirrored view is a second forward pass (share of peak follows)."""
    spec = tiny_cnn().with_inference({"flip_average": True})
    [row], _ = bench_models([spec], SMALL, echo=lambda message: None)
    generator, _ = create_models(spec)
    assert row["gflops"] == pytest.approx(2 * harness.count_flops(generator, (1, 1, 64, 64)) / 1e9)


def test_out_of_memory_halves_the_batch_and_is_recorded(monkeypatch):
    tried = []

    def fake_measure(spec, settings, runtime, batch):
        tried.append(batch)
        if batch > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"gflops": 1.0, "infer_img_s": 4.0}

    monkeypatch.setattr(harness, "measure", fake_measure)
    settings = BenchSettings(device="cpu", batch_size=4, image_size=64)
    row = bench_model(tiny_cnn(), settings, settings.runtime(), peak_flops=8e9)
    assert tried == [4, 2, 1]
    assert row["error"] is None and row["batch_size"] == 1 and row["oom_retries"] == 2
    assert row["peak_fraction"] == pytest.approx(4e9 / 8e9)


def test_out_of_memory_at_batch_one_is_an_error_row(monkeypatch):
    def always_oom(spec, settings, runtime, batch):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(harness, "measure", always_oom)
    settings = BenchSettings(device="cpu", batch_size=2, image_size=64)
    row = bench_model(tiny_cnn(), settings, settings.runtime(), peak_flops=None)
    assert row["error"].startswith("OutOfMemoryError: out of memory even at batch size 1")
    assert row["oom_retries"] == 1


# ------------------------------------------------------------------------------------------- results files


def _doc(rows, **settings):
    machine = {"cpu": "test cpu", "gpu": None, "torch": "x"}
    return report.document("bench", machine, {"image_size": 64, **settings}, rows)


def test_results_are_new_json_and_csv_files_with_inf_as_null(tmp_path):
    rows = [{"model": "a", "error": None, "infer_img_s": 2.0, "psnr": math.inf}, {"model": "b", "error": "Boom: x"}]
    first = report.write_results(_doc(rows), tmp_path)
    second = report.write_results(_doc(rows), tmp_path)
    assert first != second and first.is_file() and second.is_file()
    doc = json.loads(first.read_text())
    assert set(doc) == TOP_KEYS and doc["kind"] == "bench"
    assert doc["rows"][0]["psnr"] is None and doc["rows"][1]["error"] == "Boom: x"
    with first.with_suffix(".csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["a", "b"]
    assert table[0]["infer_img_s"] == "2.0" and table[0]["psnr"] == "" and table[0]["created"] == doc["created"]
    assert report.read_results(first)["rows"] == doc["rows"]


def test_compare_gives_new_over_old_and_names_changed_settings():
    old = _doc([{"model": "a", "error": None, "infer_img_s": 2.0, "latency_ms_median": 10.0},
                {"model": "b", "error": None, "infer_img_s": 1.0}])
    new = _doc([{"model": "a", "error": None, "infer_img_s": 4.0, "latency_ms_median": 5.0},
                {"model": "b", "error": "Boom: x"}, {"model": "c", "error": None, "infer_img_s": 9.0}], batch_size=4)
    ratios, differ = report.compare(old, new)
    assert [r["model"] for r in ratios] == ["a"]
    assert ratios[0]["infer_img_s"] == pytest.approx(2.0) and ratios[0]["latency_ms_median"] == pytest.approx(0.5)
    assert ratios[0]["psnr"] is None
    assert differ == ["batch_size: None -> 4"]


def test_scatter_plot_draws_each_point_in_its_colour(tmp_path):
    rows = [{"model": "fast", "infer_img_s": 50.0, "psnr": 22.0}, {"model": "slow", "infer_img_s": 2.0, "psnr": 25.0},
            {"model": "gray", "psnr": 21.0}, {"model": "unscored", "infer_img_s": 9.0, "psnr": None}]
    path = plots.quality_speed_plot(rows, tmp_path / "plot.png")
    colours = {colour for _, colour in Image.open(path).convert("RGB").getcolors(1 << 20)}
    tab10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # matplotlib's C0, C1, C2
    assert tab10[0] in colours and tab10[1] in colours
    assert tab10[2] not in colours  # two points only: gray is the line, unscored is left out
    assert plots.quality_speed_plot(rows[3:], tmp_path / "none.png") is None


# ------------------------------------------------------------------------------------------- command


def test_bench_command_with_checkpoint_compare_and_cards(tmp_path, monkeypatch):
    """`zoo bench simple-cnn --checkpoints DIR --compare OLD`: quality merged, reference rows, plot, grid, card."""
    monkeypatch.setattr(harness, "MATMUL_SIZE", 512)
    spec = get_spec("simple-cnn")
    generator, _ = create_models(spec)
    ckpts = tmp_path / "ckpts"
    checkpoint.save(ckpts / "any-name.safetensors", checkpoint.prefixed("generator.", generator.state_dict()),
                    {"model": spec.name, "spec": spec.to_dict()})
    (ckpts / "broken.safetensors").write_bytes(b"not a checkpoint")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_doc([{"model": "simple-cnn", "error": None, "infer_img_s": 1e-3}], image_size=128)))
    photos = tmp_path / "photos.txt"
    photos.write_text("\n".join(str(p) for p in resolve_source("sample")[:6]))
    results = tmp_path / "results"
    args = ["simple-cnn", "--device", "cpu", "--image-size", "64", "--batch-size", "1", "--iters", "1", "--warmup", "1",
            "--checkpoints", str(ckpts), "--data", str(photos), "--results", str(results), "--compare", str(old)]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(bench, args)
    assert result.exit_code == 0, result.output
    [path] = results.glob("bench-*.json")
    doc = json.loads(path.read_text())
    assert set(doc) == TOP_KEYS | {"protocol"} and doc["protocol"]["images"] == 6
    rows = {row["model"]: row for row in doc["rows"]}
    assert list(rows) == ["simple-cnn", "gray", "truth"]
    model = rows["simple-cnn"]
    assert model["checkpoint"] == str(ckpts / "any-name.safetensors") and model["infer_img_s"] > 0 and model["psnr"] > 0
    assert rows["truth"]["psnr"] is None and rows["gray"].get("infer_img_s") is None
    assert (results / doc["samples"]["simple-cnn"]).is_file()
    assert (results / "plots" / f"{path.stem}-quality-vs-speed.png").is_file()
    card = (results / "cards" / "simple-cnn.md").read_text()
    assert "## Speed" in card and "## Quality" in card and "## Protocol" in card and "5.58M" in card
    assert "infer_img_s new/old" in result.output and "image_size: 128 -> 64" in result.output
    assert "broken.safetensors" in result.output  # the skipped file is named


def test_bench_needs_models_or_all(tmp_path):
    result = CliRunner().invoke(bench, ["--results", str(tmp_path)])
    assert result.exit_code != 0 and "--all" in result.output
    result = CliRunner().invoke(bench, ["unet-resnet81", "--results", str(tmp_path)])
    assert result.exit_code != 0 and "unknown model 'unet-resnet81'" in result.output


def test_bench_all_covers_every_registry_model(tmp_path, monkeypatch):
    """`zoo bench --all` at 64 px, one timed call: every model of the registry gets a row without error."""
    monkeypatch.setattr(harness, "MATMUL_SIZE", 512)
    args = ["--all", "--device", "cpu", "--image-size", "64", "--batch-size", "1", "--iters", "1", "--warmup", "0",
            "--results", str(tmp_path)]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(bench, args)
    assert result.exit_code == 0, result.output
    [path] = tmp_path.glob("bench-*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [row["model"] for row in rows] == list_models()
    assert all(row["error"] is None and row["infer_img_s"] > 0 for row in rows), rows
    assert len(list((tmp_path / "cards").glob("*.md"))) == len(rows)
