"""The latent space: a stand-in for the paper's pretrained video VAE (docs/paper.md, "The problem").

The paper's DiT works in a video VAE's latent: 16 channels per 8x8 pixels and 4 frames. No such
VAE can be downloaded here, so pfp-mini uses a *lossless* space-time-to-depth: each
vae_time x vae_space x vae_space block of pixels becomes one latent cell of
3 * vae_time * vae_space**2 channels. Replace `encode`/`decode` with a real VAE at scale;
nothing else needs to change. [ours]

Why lossless: its reconstruction PSNR is infinite, so every retrieval figure in this project is
the compressor's and the DiT's alone, not a ceiling set by a weak autoencoder. (A 4-channel
PCA of 4x4 pixel blocks capped sprites like ours at 18.1 dB in our calibration runs.)

    python latent.py      # round-trip demo with shapes
"""
import torch

# Pixels in [-1, 1] have a standard deviation of about 0.5 on our videos; flow matching
# wants data of unit scale next to unit noise, so the latent is the pixels times 2. [ours]
LATENT_SCALE = 2.0


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


if __name__ == "__main__":
    video = torch.rand(2, 16, 3, 32, 32) * 2 - 1
    z = encode(video, vae_space=2, vae_time=1)
    print(f"video {tuple(video.shape)} -> latent {tuple(z.shape)} -> video {tuple(decode(z, 2, 1).shape)}")
    print("round trip exact:", torch.equal(decode(z, 2, 1), video))
