"""Model cards: one Markdown page per benchmarked model (spec, speed, quality beside the references, protocol,
machine), written by ``zoo bench`` under ``RESULTS/cards/``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zoo.harness.schema import field
from zoo.spec import ArchSpec, ModelSpec

QUALITY_COLUMNS = ("psnr", "ssim", "ciede2000", "cf", "dcf")


def _fmt(key: str, row: Mapping[str, Any]) -> str:
    return field(key).format(row.get(key))


def _table(rows: Iterable[tuple[str, str]]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def _arch(arch: ArchSpec | None) -> str:
    return "none" if arch is None else f"`{arch.arch}` {json.dumps(dict(arch.settings))}"


def _recipe(spec: ModelSpec) -> str:
    def terms(loss: Mapping[str, float]) -> str:
        return " + ".join(f"{weight:g} {name}" for name, weight in loss.items())

    return " > ".join(f"{st.name} ({terms(st.loss)}, {st.epochs} epochs, lr {st.optimizer.lr:g})" for st in spec.stages)


def _spec_section(spec: ModelSpec, row: Mapping[str, Any], size: int | None) -> list[str]:
    params = f"G {_fmt('params', row)}"
    if row.get("d_params"):
        params += f", D {_fmt('d_params', row)}"
    return ["## Spec", "", *_table([
        ("generator", _arch(spec.generator) + (f" ({row['note']})" if row.get("note") else "")),
        ("discriminator", _arch(spec.discriminator)),
        ("parameters", params),
        ("GFLOPs per image", f"{_fmt('gflops', row)} at {size} px (generator forward)"),
        ("recipe", _recipe(spec)),
    ])]


def _speed_section(row: Mapping[str, Any], s: Mapping[str, Any]) -> list[str]:
    lines = ["## Speed", ""]
    if row.get("error"):
        return [*lines, f"Not measured: {row['error']}"]
    if row.get("infer_img_s") is None:
        return [*lines, "Not measured (run `zoo bench`)."]
    gd = row.get("train_gd_img_s")
    lines += _table([
        ("inference", f"{_fmt('infer_img_s', row)} img/s; latency median {_fmt('latency_ms_median', row)} ms,"
                      f" p90 {_fmt('latency_ms_p90', row)} ms per batch of {row['batch_size']}"),
        ("training step (G)", f"{_fmt('train_g_img_s', row)} img/s"),
        ("training step (G+D)", "no stage with a discriminator" if gd is None else f"{_fmt('train_gd_img_s', row)} img/s"),
        ("peak memory", f"inference {_fmt('peak_mem_infer_mib', row)} MiB,"
                        f" training {_fmt('peak_mem_train_mib', row)} MiB ({s.get('memory_method')})"),
        ("achieved", f"{_fmt('achieved_gflops_s', row)} GFLOP/s = {_fmt('peak_fraction', row)} of the"
                     f" measured {field('achieved_gflops_s').format(s.get('matmul_peak_gflops_s'))} GFLOP/s"
                     f" {s.get('dtype')} matmul peak"),
        ("settings", f"{s.get('device')}, {s.get('dtype')}, {s.get('image_size')} px, {s.get('iters')} timed"
                     f" iterations after {s.get('warmup')} warm-up, channels_last {s.get('channels_last')},"
                     f" compile {s.get('compile')}"),
    ])
    if row.get("oom_retries"):
        lines.append(f"\nOut of memory at batch {s.get('batch_size')}: measured at batch {row['batch_size']}.")
    return lines


def _quality_section(spec: ModelSpec, row: Mapping[str, Any], references: Sequence[Mapping[str, Any]],
                     sample: str | None) -> list[str]:
    lines = ["## Quality", ""]
    if row.get("psnr") is None:
        return [*lines, f"Not scored: pass `--checkpoints DIR` to `zoo bench`, or run"
                        f" `zoo score {spec.name} --checkpoint RUN/generator.safetensors`."]
    lines += ["| | " + " | ".join(field(k).title for k in QUALITY_COLUMNS) + " |",
              "| --- " * (len(QUALITY_COLUMNS) + 1) + "|"]
    for r in (row, *references):
        lines.append(f"| {r['model']} | {' | '.join(_fmt(k, r) for k in QUALITY_COLUMNS)} |")
    lines.append(f"\nCheckpoint: `{row.get('checkpoint')}`; CF of the truth: {_fmt('cf_truth', row)}.")
    if sample:
        lines += ["", f"![gray | {spec.name} | truth]({sample})"]
    return lines


def model_card(spec: ModelSpec, row: Mapping[str, Any], doc: Mapping[str, Any],
               references: Sequence[Mapping[str, Any]] = (), sample: str | None = None) -> str:
    """A Markdown model card: spec (params, GFLOPs), speed, quality (with the reference rows), protocol, machine."""
    settings = doc["settings"]
    lines = [f"# {spec.name}", "", spec.description or "", ""]
    lines += [*_spec_section(spec, row, settings.get("image_size")), ""]
    lines += [*_speed_section(row, settings), ""]
    lines += [*_quality_section(spec, row, references, sample), ""]
    if "protocol" in doc:
        lines += ["## Protocol", "", *(f"- **{k}**: {v}" for k, v in doc["protocol"].items()), ""]
    lines += ["## Machine", "", *(f"- **{k}**: {v}" for k, v in doc["machine"].items() if v is not None),
              f"- **measured**: {doc['created']}", ""]
    return "\n".join(lines)
