"""``python -m zoo.cli``: the ``zoo`` command (what ``torchrun ... -m zoo.cli train ...`` starts)."""

from zoo.cli import main

main()
