"""Exercise 4: where the memory tokens sit (compressor.py:memory_positions).

The DiT gives every token a (frame, row, col) position for RoPE and its position bias. A memory
token summarises a block of rt x rh x rw DiT tokens (rate "rhxrwxrt", Config.rate_hwt = (rh, rw, rt)),
so we place it at the centre of that block, in DiT-token units. Fill in the body, then run
    python exercises/check.py 4
which runs the position and token-count tests of tests/test_models.py with yours.
"""
import torch

from config import Config
from compressor import memory_grid         # you will need it

REPLACES = "compressor"


def memory_positions(cfg: Config) -> torch.Tensor:
    """(M, 3) float (frame, row, col) of each memory token, in the order the compressor emits them:
    frame-major, then row, then col (the order of a (f, r, c) grid flattened).

    memory_grid(cfg) gives (f, r, c), the memory grid; cfg.rate_hwt gives (rh, rw, rt). The memory
    token at grid index (i, j, k) covers DiT frames i*rt .. i*rt + rt - 1 (rows and cols alike), so
    its position is the mean of those indices. With cfg.compressor == "none" there is no memory:
    return a (0, 3) tensor. Example, rate 2x2x2: the first token sits at (0.5, 0.5, 0.5)."""
    raise NotImplementedError("write memory_positions in exercises/stubs/memory_positions.py")
