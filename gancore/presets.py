"""Named presets: field sets known to work, each trained at tiny size in the tests and measured at
full size in docs/benchmarks.md. `--preset NAME` starts from one; any field you set wins.
"""
from .errors import ConfigError

PRESETS = {
    # Radford et al. 2016 with the non-saturating loss on the embedded MNIST subset (the 28 px recipe's
    # optimisation, config.RECIPE_28PX).
    "dcgan-ns": dict(dataset="mnist-5k", model="dcgan", loss="nonsaturating"),
    # Mirza & Osindero 2014: label embedding joined to z and to D's input, with the 28 px recipe written out: the
    # 3-stage network of 32 px (pad_to), batch 48, learning rate 1e-3 with Adam(0.2, 0.99), 2,000 steps. In probes
    # the best of the rates, betas, widths, batches, losses, EMA horizons, schedules and augmentations tried
    # (docs/benchmarks.md, issue 13): 5 minutes on 2 CPU cores, FID 0.164 and conditional accuracy 0.984.
    "cgan-concat": dict(dataset="mnist-5k", model="dcgan", loss="nonsaturating", conditioning="concat", pad_to=32,
                        batch_size=48, lr_g=1e-3, lr_d=1e-3, beta1=0.2, beta2=0.99, steps=2000, sample_every=250,
                        ckpt_every=500, eval_every=500),
    # Odena et al. 2017: D also classifies; G is rewarded for fakes of the right class. Trained with the SNGAN
    # recipe (hinge, spectral norm in D, Adam(0, 0.9), TTUR), as StudioGAN trains its ACGAN: with the DCGAN
    # recipe (non-saturating, batch norm in D) G drew one image per class whatever z. D's class loss on real
    # images only: with the paper's class loss on fakes too, D learned to label fakes by whatever G drew for
    # each class, and G settled on a permutation of the digits (docs/benchmarks.md has both probes).
    "acgan": dict(dataset="mnist-5k", model="dcgan", loss="hinge", conditioning="acgan", acgan_fake_weight=0.0,
                  sn_d=True, lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9, pad_to=28, batch_size=64, steps=5000),
    # Miyato & Koyama 2018: residual nets, spectral norm in D, hinge loss, projection D, conditional BN in G;
    # two D steps per G step with TTUR learning rates (Heusel et al. 2017). With one D step and lr_g 1e-4 the
    # class was still mostly wrong at 3,000 steps (conditional accuracy 0.34; docs/benchmarks.md).
    "sngan-projection-hinge": dict(dataset="mnist-5k", model="resnet", loss="hinge", conditioning="projection",
                                   sn_d=True, n_critic=2, lr_g=2e-4, lr_d=4e-4, beta1=0.0, beta2=0.9, g_width=32,
                                   d_width=32, steps=3000, eval_every=500),
    # Karras et al. 2018: G and D grow 4 -> 8 -> 16 -> 32 px, each stage faded in over 32,000 images and held as
    # long; equalized LR with Adam(0, 0.99) as in the paper. Non-saturating + R1 and a projection D: in equal short
    # probes they beat WGAN-GP + drift and concat/acgan on class accuracy (docs/benchmarks.md). 8 channels at
    # 32 px (64 at 4 px) keeps the whole schedule within 15 minutes on 2 CPU cores.
    "progressive-mnist": dict(dataset="mnist-5k", model="progressive", image_size=32, conditioning="projection",
                              loss="nonsaturating", r1_gamma=1.0, mbstd=True, lr_g=1e-3, lr_d=1e-3, beta1=0.0,
                              beta2=0.99, g_width=8, d_width=8, fade_images=32000, stable_images=32000, steps=3500,
                              eval_every=500, sample_every=250, ckpt_every=500),
    # Gulrajani et al. 2017 on the 25-Gaussian grid, as in their toy experiments: 5 critic steps,
    # Adam(0.5, 0.9), penalty weight 0.1 (10 is their image setting; on the grid it learns far slower).
    "wgan-gp-grid": dict(dataset="grid", model="mlp", loss="wgan-gp", gp_weight=0.1, n_critic=5, lr_g=1e-4,
                         lr_d=1e-4, beta1=0.5, beta2=0.9, steps=8000, eval_every=1000),
    # Lin et al. 2018: D judges packs of 2 samples; the rest as the plain non-saturating GAN. Twice the plain
    # ring's 3,000 steps: at 3,000 all 8 modes are found but only 41-66 % of samples sit within 3 sigma.
    "pacgan-ring": dict(dataset="ring", model="mlp", loss="nonsaturating", pack=2, steps=6000),
    "pacgan-grid": dict(dataset="grid", model="mlp", loss="nonsaturating", pack=2, steps=20000, eval_every=2000,
                        sample_every=2000, ckpt_every=5000),
    # The ring made precise: two D steps per G step, batch 128, both rates decayed linearly to 0 over the second
    # half of 15,000 steps. With one D step the hard seeds leave bridges of points between neighbouring modes (and
    # batch 128 collapsed 2 of 10 seeds); with batch 64 and 10,000 steps 92-95 % of samples sat within 3 sigma. All 8
    # modes on each of 10 seeds, 95.5-97.3 % within 3 sigma (docs/benchmarks.md, issue 13).
    "ring-lr-decay": dict(dataset="ring", model="mlp", loss="nonsaturating", n_critic=2, batch_size=128, steps=15000,
                          lr_decay=0.5, eval_every=1500, sample_every=1500, ckpt_every=2500),
    # The plain non-saturating GAN on the grid, made precise: batch 128 and both learning rates decayed linearly
    # to 0 over the second half. 25/25 modes and 94-97 % of samples within 3 sigma on each of 10 seeds; packing
    # (pacgan-grid) finds the modes but leaves half of its points between them (docs/benchmarks.md).
    "grid-lr-decay": dict(dataset="grid", model="mlp", loss="nonsaturating", batch_size=128, steps=20000,
                          lr_decay=0.5, eval_every=2000, sample_every=2000, ckpt_every=5000),
    # Stacked MNIST (issue 13), the benchmark of PacGAN's Table 2: an unconditional DCGAN, batch 128 at lr 2e-3 with
    # Adam(0.5, 0.99), rates decayed over the second half, feature matching at weight 1, and no EMA. Named for that
    # table; it does not pack: at equal steps packing (2, 3, 4) covered fewer triples than the plain D here
    # (docs/benchmarks.md). Batch 128 roughly halved the reverse KL of batch 64 at the same CPU time; feature matching
    # took it from 0.17 to 0.13 over 4 seeds (G had drawn some digits twice as often as others in each channel); with
    # the rates decayed to 0 an EMA of G only lags, and G's own weights scored a lower KL than the EMA's on each of
    # those seeds (0.121 against 0.130). Both networks work at 32 px (pad_to: three 2x stages, as the 28 px recipe),
    # which draws digits the evaluator reads more clearly: 2,600 steps of it take 1.4 times as long as 3,800 at 28 px
    # (7 min 10 s against 5 min 2 s on one 2-core machine) and took the reverse KL over seeds from 0.116 to about
    # 0.06. One 26,000-sample evaluation at the end.
    "stacked-mnist-pacgan": dict(dataset="stacked-mnist", model="dcgan", loss="nonsaturating", batch_size=128,
                                 lr_g=2e-3, lr_d=2e-3, beta2=0.99, pad_to=32, steps=2600, lr_decay=0.5, ema=False,
                                 fm_weight=1.0, eval_every=2600, sample_every=500, ckpt_every=1000),
}


def preset_fields(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name], preset=name)
