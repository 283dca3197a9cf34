"""Exercise 5, solved: the large patchifier starts as the DiT's patchifier of the pooled latent."""
import torch

REPLACES = "compressor:Compressor"


@torch.no_grad()
def init_from_patchifier(self, weight: torch.Tensor, bias: torch.Tensor):
    """Copy the patchifier into the LR branch; spread each of its weights over an rt x rh x rw group."""
    if self.lr_patchify is not None:
        self.lr_patchify.weight.copy_(weight)
        self.lr_patchify.bias.copy_(bias)
    if self.large_patchify is not None:
        rh, rw, rt = self.cfg.rate_hwt
        D, C, _, p, _ = weight.shape
        # pooled cell (a, b) of a block is the mean of cells (a*rh .. a*rh+rh-1, b*rw .. ); so kernel
        # entry (i, j) must carry patchifier weight (i // rh, j // rw), divided by the group's size.
        # (Tiling the whole p x p kernel rh x rw times would instead average whole patches.)
        spread = weight[:, :, :, :, None, :, None].expand(D, C, 1, p, rh, p, rw)      # (D, C, 1, p, rh, p, rw)
        spread = spread.reshape(D, C, 1, p * rh, p * rw).expand(D, C, rt, p * rh, p * rw)   # (D, C, rt, rh*p, rw*p)
        self.large_patchify.weight.copy_(spread / (rt * rh * rw))
        self.large_patchify.bias.copy_(bias)
