"""Exercise 5: FramePack's start for the large patchifier (compressor.py:Compressor.init_from_patchifier).

The DiT embeds a 1 x p x p patch of latent cells with a Conv3d of weight (D, C, 1, p, p). The
large patchifier embeds a whole rt x (rh*p) x (rw*p) block, one memory token per block, with a
Conv3d of weight (D, C, rt, rh*p, rw*p). FramePack starts it from the small one so that at step 0
a block's token is the DiT's own patchifier applied to the latent average-pooled by (rt, rh, rw):
the same input the LR branch builds from pooled pixels. Fill in the body, then run
    python exercises/check.py 5
which runs the initialisation tests of tests/test_models.py with yours.
"""
import torch

REPLACES = "compressor:Compressor"     # a method of this class


@torch.no_grad()
def init_from_patchifier(self, weight: torch.Tensor, bias: torch.Tensor):
    """Start the compressor from the DiT's patchifier: weight (D, C, 1, p, p), bias (D,).

    self.cfg.rate_hwt is (rh, rw, rt). Either branch below may be None:
      self.lr_patchify    Conv3d, weight (D, C, 1, p, p): copy weight and bias into it;
      self.large_patchify Conv3d, weight (D, C, rt, rh*p, rw*p): fill it so that on a block it
                          computes the DiT patchifier of the block pooled by (rt, rh, rw): each
                          pooled cell is the mean of an rt x rh x rw group of neighbouring cells,
                          so think about which kernel entries must share one patchifier weight.
                          Copy the bias.
    Write into the existing parameters in place (.copy_), so an optimiser that holds them still sees them."""
    raise NotImplementedError("write init_from_patchifier in exercises/stubs/large_patchifier.py")
