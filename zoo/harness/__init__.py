"""The benchmarking harness: what ``zoo bench``, ``zoo score`` and ``zoo report`` measure and write.

    timing.py    throughput, latency, peak memory and FLOPs of models (the real training step, timed)
    cost.py      parameter counts and FLOPs per forward
    metrics.py   colour-quality metrics as torchmetrics Metrics (PSNR via torchmetrics, SSIM, CF, dCF, CIEDE2000)
    scoring.py   the scoring protocol: checkpoints and the gray / truth references against real photos
    protocols.py how a photo becomes the S x S truth (zoo, crop256, resize256: as published tables prepare it)
    predictions.py  another colorizer's output files, matched to the photos they colour
    fid.py       FID-EffL0 (offline, the shipped EfficientNet-Lite0 features) and Inception FID where available
    schema.py    the one table of result fields (label, unit, better direction, CSV column)
    results.py   results files (JSON + CSV), terminal tables, comparisons
    plots.py     matplotlib plots (PNG files, inline SVG)
    cards.py     Markdown model cards
    report.py    the self-contained HTML report

Nothing here imports the training loop: training steps are timed through :mod:`zoo.trainable`.
"""
