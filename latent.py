"""The latent space: a stand-in for the paper's pretrained video VAE (docs/paper.md, "The problem").

The paper's DiT works in a video VAE's latent: 16 channels per 8x8 pixels and 4 frames. No such
VAE can be downloaded here, so pfp-mini builds its latent from a space-time-to-depth: each
vae_time x vae_space x vae_space block of pixels becomes one latent cell of
P = 3 * vae_time * vae_space**2 channels (`encode`, `decode`). `Latent` is the DiT's latent, in
one of two kinds (--latent) [ours]:

    lossless  the cells themselves (the default). Reconstruction is exact (PSNR infinite), so every
              retrieval figure is the compressor's and the DiT's alone, not a ceiling set by an
              autoencoder.
    pca       a K = --pca_channels PCA of the cells, fitted once on training clips (`Latent.fit`):
              a lossy channel bottleneck like the paper's VAE, and so the case the paper's HR
              branch exists for: the DiT and the LR branch read the K channels, the HR branch the
              lossless cells, "bypassing the VAE's bottleneck" (compressor.py). decode is the
              least-squares inverse, and the PSNR of decode(encode(video)) is the ceiling no
              retrieval can pass (train_pfp.py prints it and writes it to summary.json).

Replace `Latent` with a real VAE at scale; nothing else needs to change.

    python latent.py      # round trip with shapes, and the PCA ceiling for K = 1, 2, 3, 4, 6

Letters: B batch, T frames, T' latent frames, P cell channels, K PCA channels, (h, w) cells.
"""
import torch
import torch.nn as nn

from config import Config

# Pixels in [-1, 1] have a standard deviation of about 0.5 on our videos; flow matching
# wants data of unit scale next to unit noise, so the latent is the pixels times 2. [ours]
LATENT_SCALE = 2.0
# A PCA channel is divided by its standard deviation, but never by less than this one's: a
# direction the fitting clips barely use (a flat test clip has many) is not blown up. [ours]
MIN_VARIANCE = 1e-4


def encode(video: torch.Tensor, vae_space: int, vae_time: int) -> torch.Tensor:
    """(B, T, 3, H, W) pixels in [-1, 1] -> (B, T/vt, 3*vt*vs*vs, H/vs, W/vs) latent."""
    B, T, C, H, W = video.shape
    vs, vt = vae_space, vae_time
    x = video.reshape(B, T // vt, vt, C, H // vs, vs, W // vs, vs)
    x = x.permute(0, 1, 2, 3, 5, 7, 4, 6)                 # (B, T', vt, C, vs, vs, H', W')
    return x.reshape(B, T // vt, vt * C * vs * vs, H // vs, W // vs) * LATENT_SCALE


def decode(latent: torch.Tensor, vae_space: int, vae_time: int) -> torch.Tensor:
    """(B, T', 3*vt*vs*vs, H', W') latent -> (B, T'*vt, 3, H'*vs, W'*vs) pixels (exact inverse)."""
    B, Tl, Cl, Hl, Wl = latent.shape
    vs, vt = vae_space, vae_time
    x = (latent / LATENT_SCALE).reshape(B, Tl, vt, Cl // (vt * vs * vs), vs, vs, Hl, Wl)
    x = x.permute(0, 1, 2, 3, 6, 4, 7, 5)                 # (B, T', vt, C, H', vs, W', vs)
    return x.reshape(B, Tl * vt, Cl // (vt * vs * vs), Hl * vs, Wl * vs)


def cell_sums(clips: torch.Tensor, vae_space: int, vae_time: int, batch: int = 16) -> tuple:
    """(count, sum (P,), sum of outer products (P, P)) of the lossless cells of clips (N, T, 3, H, W),
    in float64 and a few clips at a time: sums, so processes holding different clips can add theirs."""
    count, total, outer = 0, 0, 0
    for start in range(0, len(clips), batch):
        cells = encode(clips[start:start + batch], vae_space, vae_time).double()   # (b, T', P, h, w)
        rows = cells.movedim(2, -1).flatten(0, -2)                   # (b*T'*h*w, P): one row per cell
        count, total, outer = count + len(rows), total + rows.sum(0), outer + rows.T @ rows
    return torch.tensor(float(count), dtype=torch.float64, device=clips.device), total, outer


class Latent(nn.Module):
    """The DiT's latent space: (B, T, 3, H, W) pixels <-> (B, T', C, h, w), C = cfg.latent_channels.

    Its home is the DiT (`dit.latent`) [ours]: the latent is the space G denoises in, so it travels
    with G's weights. The pca basis is three buffers in the DiT's state dict, so a checkpoint holds
    it and loads with torch.load(weights_only=True), and `--init` hands a base's latent to every
    stage built on it. A lossless Latent has no buffers: checkpoints from before --latent load
    unchanged. phi reads it from there too: `phi(video, dit.latent)`."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.kind, self.vae_space, self.vae_time = cfg.latent, cfg.vae_space, cfg.vae_time
        if self.kind == "pca":         # zeros until fit() or a checkpoint fills them
            P, K = cfg.block_channels, cfg.pca_channels
            self.register_buffer("mean", torch.zeros(P))           # (P,) the mean cell
            self.register_buffer("encoder", torch.zeros(K, P))     # (K, P) cell -> latent
            self.register_buffer("decoder", torch.zeros(P, K))     # (P, K) latent -> cell

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) pixels in [-1, 1] -> (B, T', C, h, w) latent."""
        cells = encode(video, self.vae_space, self.vae_time)                  # (B, T', P, h, w)
        if self.kind == "lossless":
            return cells
        with torch.autocast(video.device.type, enabled=False):   # a fixed map, not the model: fp32 under --dtype bf16
            return torch.einsum("kp,btphw->btkhw", self.encoder, cells - self.mean[:, None, None])   # (B, T', K, h, w)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, T', C, h, w) latent -> (B, T'*vt, 3, H, W) pixels: exact for lossless; for pca the
        least-squares inverse, each cell projected onto the K components."""
        if self.kind == "pca":
            latent = torch.einsum("pk,btkhw->btphw", self.decoder, latent) + self.mean[:, None, None]   # (B, T', P, h, w)
        return decode(latent, self.vae_space, self.vae_time)

    @torch.no_grad()
    def fit(self, clips: torch.Tensor):
        """Fit the pca basis on clips (N, T, 3, H, W), as fit_sums says. [ours]"""
        self.fit_sums(*cell_sums(clips, self.vae_space, self.vae_time))

    @torch.no_grad()
    def fit_sums(self, count, total, outer):
        """Fit the pca basis on cell_sums [ours]: the K leading eigenvectors u_k of the cells'
        covariance, eigenvalues l_k. Channel k = u_k . (cell - mean) / sqrt(l_k): whitened, so every
        channel has unit variance on the fitting clips, as flow matching wants beside unit noise (the
        lossless latent's LATENT_SCALE does that for all channels at once). decoder = u_k sqrt(l_k)
        is the encoder's pseudo-inverse: decode(encode(x)) is the best rank-K linear
        reconstruction, its squared error per cell the sum of the eigenvalues left out."""
        K = self.encoder.shape[0]
        mean = total / count                                                   # (P,)
        variances, vectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))   # ascending
        variances, vectors = variances.flip(0)[:K], vectors.flip(1)[:, :K]     # (K,), (P, K) the largest
        # eigh may return -u for u: make each component's largest entry positive, so one set of
        # clips gives one basis on any machine. [ours]
        vectors = vectors * vectors.gather(0, vectors.abs().argmax(0, keepdim=True)).sign()
        std = variances.clamp_min(MIN_VARIANCE).sqrt()                          # (K,)
        self.mean.copy_(mean)
        self.encoder.copy_((vectors / std).T)
        self.decoder.copy_(vectors * std)


if __name__ == "__main__":
    video = torch.rand(2, 16, 3, 32, 32) * 2 - 1
    z = encode(video, vae_space=2, vae_time=1)
    print(f"video {tuple(video.shape)} -> latent {tuple(z.shape)} -> video {tuple(decode(z, 2, 1).shape)}")
    print("round trip exact:", torch.equal(decode(z, 2, 1), video))

    # A few toy clips, smooth colour ramps panning under a drifting striped square (data.py's
    # world is richer; training prints its ceiling on it): fit on 8, measure on 4 others.
    g = torch.Generator().manual_seed(0)
    t, y, x = torch.meshgrid(torch.arange(16.0), torch.arange(32.0), torch.arange(32.0), indexing="ij")   # (T, H, W)
    clips = []
    for _ in range(12):
        a, b, c, d = (torch.rand(3, 1, 1, 1, generator=g) * 2 - 1 for _ in range(4))         # (3, 1, 1, 1) colours
        pan, drift = torch.randint(1, 3, (2,), generator=g).tolist()
        top = torch.randint(0, 20, (), generator=g).item()
        ramp = (x + pan * t) % 32 / 32                                                       # (T, H, W) in [0, 1)
        square = ((x - drift * t) % 32 < 12) & (y >= top) & (y < top + 12)
        pattern = torch.where((x + y) % 4 < 2, c, d)                                         # (3, T, H, W)
        clips.append(torch.where(square, pattern, a * (1 - ramp) + b * ramp).transpose(0, 1))   # (T, 3, H, W)
    clips = torch.stack(clips)                                                                # (12, T, 3, H, W)
    print("\nPCA of the 12 values of each 1x2x2 pixel block, fitted on 8 toy clips, measured on 4 others:")
    for K in (1, 2, 3, 4, 6, 12):
        latent = Latent(Config(latent="pca", pca_channels=K))
        latent.fit(clips[:8])
        z = latent.encode(clips[8:])                                                          # (4, T, K, h, w)
        mse = (latent.decode(z) - clips[8:]).pow(2).mean(dim=(2, 3, 4))                       # (4, T) per frame
        print(f"  K = {K:>2}: latent {tuple(z.shape)}, channel std {z.std(dim=(0, 1, 3, 4)).mean():.2f}, "
              f"ceiling PSNR {(10 * torch.log10(4 / mse.clamp_min(1e-10))).mean():6.2f} dB"
              + ("  (every channel: exact to float precision)" if K == 12 else ""))
