"""The equal-budget leaderboard: models trained for the same wall-clock budget on the same photos and split, then
scored on the held-out photos beside gray (DAWNBench's time-to-accuracy, read the other way: accuracy at equal
time).

One path through it::

    for each budget, for each model:  zoo.train.train(model, max_time=budget, data, seed)   -> run folder
    zoo.harness.scoring.score_models(every trained predictor, heldout[, hints])             -> rows + gray, truth
    results/leaderboard-DATE.json/.csv, samples/, plots/...-quality-vs-budget.png (and -hints.png), the table

A run folder that already holds a finished run of the same model, budget, data and seed is scored again, not
retrained, so an interrupted leaderboard continues where it stopped. Budgets are wall-clock: compare
leaderboards only from quiet machines of one kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo import runs
from zoo.harness import plots
from zoo.harness import results as results_files
from zoo.harness.scoring import load_model, score_models
from zoo.runtime import pick_device
from zoo.train import TrainOptions, read_summary, train


def budget_label(seconds: float) -> str:
    """``15m``, ``90s``, ``1h30m``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"


def _finished(run_dir: Path, model: str, options: TrainOptions) -> bool:
    """Whether ``run_dir`` holds a finished run of ``model`` with these data, seed and budget."""
    try:
        run = runs.read_json(run_dir, runs.RUN_FILE)
    except (OSError, ValueError):
        return False
    wanted = {"data": options.data, "seed": options.seed, "max_time": options.max_time}
    return (run.get("model") == model and (run_dir / runs.SUMMARY_FILE).is_file()
            and all(run.get("options", {}).get(k) == v for k, v in wanted.items()))


def train_at_budget(model: str, budget: float, out: Path, data: str, seed: int, device: str,
                    echo: Callable[[str], None]) -> dict[str, Any]:
    """Train ``model`` for ``budget`` seconds into ``out/runs/<model>-<budget>`` (or reuse a finished run);
    returns its row: model, budget, steps and the checkpoint (or the error)."""
    run_dir = out / "runs" / f"{model}-{budget_label(budget)}"
    options = TrainOptions(data=data, out=run_dir, max_time=budget, seed=seed, device=device, progress=False)
    row: dict[str, Any] = {"model": f"{model}@{budget_label(budget)}", "error": None, "registry_model": model,
                           "budget_s": budget}
    if _finished(run_dir, model, options):
        echo(f"{model} at {budget_label(budget)}: using the finished run in {run_dir}")
    else:
        echo(f"{model}: training for {budget_label(budget)} ...")
        try:
            train(model, options, echo=lambda line: None)
        except Exception as exc:  # noqa: BLE001 (one model failing is a row with its error; the others still run)
            return row | {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    summary = read_summary(run_dir)
    row["steps"] = summary.steps
    row["checkpoint"] = str(summary.generator)
    return row


def run_leaderboard(models: Sequence[str], budgets: Sequence[float], out: Path, data: str = "sample-train",
                    score_data: str = "heldout", image_size: int = 256, seed: int = 0, device: str = "auto",
                    echo: Callable[[str], None] = print, hints: Sequence[int] = ()) -> Path:
    """Train every model at every budget, score them all on ``score_data`` (with ``hints``, their hint curves
    too: rows of their own); returns the results JSON path."""
    torch_device = pick_device(device)
    rows = [train_at_budget(m, b, out, data, seed, device, echo) for b in budgets for m in models]
    scored = {r["model"]: r for r in rows if r["error"] is None}
    echo(f"scoring {len(scored)} runs on {score_data} ...")
    predictors = {key: load_model(r["registry_model"], Path(r["checkpoint"]), torch_device) for key, r in scored.items()}
    scores = score_models(predictors, data=score_data, image_size=image_size, device=torch_device, echo=echo,
                          hints=hints)
    added = results_files.merge_scores(rows, scores.rows, run_keys=("registry_model", "budget_s", "steps", "checkpoint"))
    doc = results_files.document(
        "leaderboard", results_files.machine_info(torch_device),
        {"budgets_s": list(budgets), "data": data, "score_data": score_data, "seed": seed,
         "device": str(torch_device), "image_size": image_size, "hints": list(hints)},
        rows + added, protocol=scores.protocol,
    )
    doc |= results_files.write_sample_grids(scores.shown, out, results_files.run_stem(doc))
    path = results_files.write_results(doc, out)
    figure = plots.quality_plot(rows + added, "budget_s", "psnr", "quality at equal training time",
                                log_x=False, series="registry_model")
    if figure is not None:
        plots.save_png(figure, out / "plots" / f"{path.stem}-quality-vs-budget.png")
    curve = plots.hint_curve_plot(rows + added)
    if curve is not None:
        plots.save_png(curve, out / "plots" / f"{path.stem}-hints.png")
    return path
