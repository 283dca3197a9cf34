"""Exercise 4, solved: memory tokens at the centres of the DiT-token blocks they summarise."""
import torch

from config import Config
from compressor import memory_grid

REPLACES = "compressor"


def memory_positions(cfg: Config) -> torch.Tensor:
    """(M, 3) float (frame, row, col): the mean index of each block, frame-major."""
    if cfg.compressor == "none":
        return torch.zeros(0, 3)
    rh, rw, rt = cfg.rate_hwt
    # along one axis, block i covers indices i*size .. i*size + size - 1, whose mean is i*size + (size - 1)/2
    axes = [torch.arange(n) * size + (size - 1) / 2 for n, size in zip(memory_grid(cfg), (rt, rh, rw))]
    frame, row, col = torch.meshgrid(*axes, indexing="ij")                      # each (f, r, c)
    return torch.stack([frame, row, col], dim=-1).reshape(-1, 3)                 # (M, 3)
