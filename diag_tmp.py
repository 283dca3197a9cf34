import sys, torch
from sample import load_checkpoint
from data import synthetic_videos, VAL_SEED_OFFSET
from latent import encode, decode
from compressor import memory_positions
from metrics import psnr
cfg, dit, phi = load_checkpoint(sys.argv[1])
v = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET+8), cfg.history, cfg.height)
z = encode(v, cfg.vae_space, cfg.vae_time)
omega = torch.tensor([[1, 9]]*8)
x0 = z[torch.arange(8)[:,None], omega]
mem, pos = phi(v), memory_positions(cfg)
g=torch.Generator().manual_seed(0)
eps = torch.randn(x0.shape, generator=g)
with torch.no_grad():
  for t in [1.0, 0.9, 0.7, 0.5, 0.3]:
    xt = (1-t)*x0 + t*eps
    vv = dit(xt, torch.full((8,2),t), omega, mem, pos)
    x0h = xt - t*vv
    vz = dit(xt, torch.full((8,2),t), omega, torch.zeros_like(mem), pos)
    print(f"t={t}: one-step x0 PSNR {psnr(decode(x0h,2,1).clamp(-1,1), decode(x0,2,1)).mean():.2f}  with zeroed memory {psnr(decode(xt - t*vz,2,1).clamp(-1,1), decode(x0,2,1)).mean():.2f}")
