"""The allocator setting the ``zoo`` command starts with: large blocks come from the heap instead of fresh mmapped
pages (glibc's own count of mmapped blocks, mallinfo2), and a model's colours are the same to the bit with it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from zoo.allocator import _glibc
from zoo.data import resolve_source

# In a fresh process (this one's allocator has been set by every CliRunner test before): how many more blocks glibc
# has mmapped while a 64 MiB tensor is held, and the default's ab for a held-out photo.
PROBE = """
import ctypes, json, sys
import numpy as np, torch
from zoo.allocator import keep_freed_memory
set = keep_freed_memory() if sys.argv[1] == "keep" else None
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = Info
before = mallinfo2().hblks  # blocks mmapped before the setting (importing torch) stay so
block = torch.ones(16 * 2**20)
held = mallinfo2().hblks - before
del block
from zoo.colorizer import Colorizer
from zoo.images import read_source
colorizer = Colorizer.from_checkpoint(device="cpu")
ab = colorizer.predict(colorizer.model_input(read_source(sys.argv[2])).unsqueeze(0))
np.save(sys.argv[3], ab.numpy())
print(json.dumps({"set": set, "mmapped": held}))
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc's mallopt: Linux with glibc only")
def test_zoo_keeps_freed_memory_on_the_heap_and_colours_the_same_to_the_bit(tmp_path):
    photo = resolve_source("heldout")[0]
    runs = {}
    for how in ("keep", "default"):
        done = subprocess.run([sys.executable, "-c", PROBE, how, str(photo), str(tmp_path / f"{how}.npy")],
                              capture_output=True, text=True, check=True)
        runs[how] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["keep"] == {"set": True, "mmapped": 0}  # the 64 MiB block came from the heap
    assert runs["default"]["mmapped"] >= 1  # glibc's default: a block that large is mmapped, zeroed pages each time
    keep, default = np.load(tmp_path / "keep.npy"), np.load(tmp_path / "default.npy")
    assert keep.shape == default.shape and np.array_equal(keep, default)


def test_the_zoo_command_starts_with_it(monkeypatch):
    from click.testing import CliRunner

    import zoo.cli

    calls = []
    monkeypatch.setattr(zoo.cli, "keep_freed_memory", lambda: calls.append(True) or True)
    result = CliRunner().invoke(zoo.cli.main, ["list", "--objectives"])
    assert result.exit_code == 0, result.output
    assert calls == [True]
