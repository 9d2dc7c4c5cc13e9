#!/usr/bin/env python3
"""Writes tests/fixtures/diffusers/: tiny diffusers UNet2DModels with every parameter redrawn at random, and what
diffusers computes with them, for the import tests of diffuse (tests/it/diffusers.rs). CI runs no Python: run this
once on a developer's machine when diffusers' semantics must be re-checked, and commit what it writes.

  python3 -m venv venv && venv/bin/pip install torch==2.15.0 diffusers==0.42.1 numpy safetensors
  venv/bin/python tests/twin/diffusers_fixtures.py

Each model is 16x16x3 with block_out_channels [8, 16], one resnet per block, attention at the second level, and 4
GroupNorm groups. Every weight, bias, GroupNorm gamma and beta is redrawn (the default init, gamma = 1 and beta = 0,
would hide a swapped mapping). Per model directory (as save_pretrained lays it out):
  model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json
  x.npy [3, 3, 16, 16], t.npy [3] (0, 417, 999), eps32.npy and eps64.npy: diffusers' output in float32 and in
  float64 (a double copy of the model; the timestep embedding, which diffusers computes in float32 whatever the
  model's precision, computed in float64 by the same formula)
The models:
  google        Ho et al.'s conventions as in google/ddpm-*: flip_sin_to_cos false, freq_shift 1,
                downsample_padding 0, norm_eps 1e-6, attention_head_dim null; a fixed_large DDPMScheduler.
                Also ddim_x.npy [11, 3, 3, 16, 16]: a 10-step DDIM eta = 0 run (leading spacing, clip_sample) from
                ddim_x[0], each state after it.
  google-old-names  the same weights with the 2022 attention names (query, key, value, proj_attn): pipeline files
                only, the inputs and outputs are google's.
  google-bin    the same weights as a torch.save state dict (diffusion_pytorch_model.bin), likewise.
  foreign-bin   a .bin whose pickle holds, beside a tensor, an object of another class (datetime.date): refused.
  minimal       a config.json holding only what train_unconditional.py sets (plus norm_num_groups): every other key
                takes UNet2DModel's default (flip true, shift 0, padding 1, eps 1e-5, head dim 8 -> 2 heads).
  class         num_class_embeds 3; also labels.npy [3].
And, where it exists, export/: the golden `diffuse export` of a tiny diffuse checkpoint (written by tests/it/
diffusers.rs with DIFFUSE_BLESS=1): loaded with DDPMPipeline and UNet2DModel (no missing, unexpected or mismatched
keys), and run on x.npy and t.npy (its eps32.npy and eps64.npy), for the test to hold diffuse's forward to.
"""
import datetime
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

TORCH, DIFFUSERS = "2.15.0", "0.42.1"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "diffusers")

BASE = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    block_out_channels=[8, 16],
    layers_per_block=1,
    down_block_types=["DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D"],
    norm_num_groups=4,
)
GOOGLE = dict(
    BASE,
    flip_sin_to_cos=False,
    freq_shift=1,
    downsample_padding=0,
    norm_eps=1e-6,
    attention_head_dim=None,
)


def redraw(model, seed):
    """Every parameter at random, at a scale that keeps activations near 1 through the net."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return model


def inputs(model, seed):
    g = torch.Generator().manual_seed(seed)
    c, s = model.config.in_channels, model.config.sample_size
    x = torch.randn((3, c, s, s), generator=g)
    t = torch.tensor([0, 417, 999])
    return x, t


def embedding64(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1, scale=1,
                max_period=10000):
    """diffusers' get_timestep_embedding in float64 (diffusers computes it in float32 even for a double model, an
    error of ~1e-4 at t = 999 that would swamp a float64 comparison)."""
    half = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - downscale_freq_shift)
    emb = scale * timesteps[:, None].double() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


def eps(model, x, t, labels=None):
    """diffusers' output in float32, and in float64: a double copy of the model with the embedding in float64."""
    import diffusers.models.embeddings as embeddings
    with torch.no_grad():
        e32 = model(x, t, class_labels=labels).sample
        m64 = UNet2DModel.from_config(model.config).double()
        m64.load_state_dict(model.state_dict())
        original = embeddings.get_timestep_embedding
        shift, flip = model.config.freq_shift, model.config.flip_sin_to_cos
        ours, theirs = embedding64(t, 8, flip, shift), original(t, 8, flip, shift)
        assert (ours - theirs.double()).abs().max() < 1e-3, "the float64 embedding is diffusers' formula"
        embeddings.get_timestep_embedding = embedding64
        try:
            e64 = m64(x.double(), t, class_labels=labels).sample
        finally:
            embeddings.get_timestep_embedding = original
    return e32.numpy(), e64.numpy()


def save_npy(dir, name, array):
    np.save(os.path.join(dir, name), np.ascontiguousarray(array))


def write_model(dir, model, scheduler, labels=None, seed=0):
    """save_pretrained through DDPMPipeline, then the inputs and outputs; reloads to check nothing is lost."""
    shutil.rmtree(dir, ignore_errors=True)
    DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(dir)
    x, t = inputs(model, seed)
    loaded, info = UNet2DModel.from_pretrained(os.path.join(dir, "unet"), output_loading_info=True)
    assert not any(info.values()), info
    e32, e64 = eps(loaded, x, t, labels)
    save_npy(dir, "x.npy", x.numpy())
    save_npy(dir, "t.npy", t.numpy().astype(np.float32))
    save_npy(dir, "eps32.npy", e32)
    save_npy(dir, "eps64.npy", e64)
    if labels is not None:
        save_npy(dir, "labels.npy", labels.numpy().astype(np.float32))
    return x, t, e32


def ddim_run(dir, model, steps=10, seed=1):
    """DDIM eta = 0 from a fixed x_T, as DDIMScheduler.from_pretrained configures it from the pipeline's file."""
    scheduler = DDIMScheduler.from_pretrained(os.path.join(dir, "scheduler"))
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    c, s = model.config.in_channels, model.config.sample_size
    x = torch.randn((3, c, s, s), generator=g)
    states = [x]
    with torch.no_grad():
        for t in scheduler.timesteps:
            e = model(x, t).sample
            x = scheduler.step(e, t, x, eta=0.0).prev_sample
            states.append(x)
    save_npy(dir, "ddim_x.npy", torch.stack(states).numpy())
    save_npy(dir, "ddim_t.npy", scheduler.timesteps.numpy().astype(np.float32))


OLD_NAMES = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def old_names(state):
    renamed = {}
    for name, value in state.items():
        for new, old in OLD_NAMES.items():
            if ".attentions." in name or "mid_block.attentions" in name:
                name = name.replace(new, old)
        renamed[name] = value.contiguous()
    return renamed


def copy_with_weights(src, dir, write_weights):
    """The pipeline files of `src` with the weights written another way; the inputs and outputs stay in `src`."""
    shutil.rmtree(dir, ignore_errors=True)
    shutil.copytree(src, dir, ignore=shutil.ignore_patterns("*.npy", "*.safetensors"))
    write_weights(os.path.join(dir, "unet"))
    loaded, info = UNet2DModel.from_pretrained(os.path.join(dir, "unet"), output_loading_info=True)
    assert not any(info.values()), info
    x = torch.from_numpy(np.load(os.path.join(src, "x.npy")))
    t = torch.from_numpy(np.load(os.path.join(src, "t.npy"))).long()
    with torch.no_grad():
        e = loaded(x, t).sample.numpy()
    assert np.array_equal(e, np.load(os.path.join(src, "eps32.npy"))), "the copy computes what the original does"


def main():
    if (torch.__version__.split("+")[0], __import__("diffusers").__version__) != (TORCH, DIFFUSERS):
        sys.exit(f"pinned to torch {TORCH} and diffusers {DIFFUSERS}, found {torch.__version__} and "
                 f"{__import__('diffusers').__version__}")
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    counts = {}

    google = redraw(UNet2DModel(**GOOGLE), seed=1)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                          variance_type="fixed_large", clip_sample=True)
    dir = os.path.join(OUT, "google")
    write_model(dir, google, sched, seed=2)
    ddim_run(dir, google)
    counts["google"] = sum(p.numel() for p in google.parameters())
    copy_with_weights(dir, os.path.join(OUT, "google-old-names"),
                      lambda d: save_file(old_names(google.state_dict()),
                                          os.path.join(d, "diffusion_pytorch_model.safetensors"),
                                          metadata={"format": "pt"}))
    copy_with_weights(dir, os.path.join(OUT, "google-bin"),
                      lambda d: torch.save(google.state_dict(), os.path.join(d, "diffusion_pytorch_model.bin")))
    foreign = os.path.join(OUT, "foreign-bin", "unet")
    shutil.rmtree(os.path.dirname(foreign), ignore_errors=True)
    os.makedirs(foreign)
    shutil.copy(os.path.join(dir, "unet", "config.json"), foreign)
    torch.save({"conv_in.bias": google.conv_in.bias.detach(), "saved_on": datetime.date(2022, 6, 1)},
               os.path.join(foreign, "diffusion_pytorch_model.bin"))

    # What train_unconditional.py passes to UNet2DModel (its other keys left to the defaults), at fixture size.
    minimal = redraw(UNet2DModel(**BASE), seed=3)
    dir = os.path.join(OUT, "minimal")
    write_model(dir, minimal, DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"), seed=4)
    config_path = os.path.join(dir, "unet", "config.json")
    with open(config_path) as f:
        full = json.load(f)
    kept = {k: v for k, v in full.items() if k in BASE or k in ("_class_name", "_diffusers_version")}
    with open(config_path, "w") as f:
        json.dump(kept, f, indent=2, sort_keys=True)
    reread = UNet2DModel.from_pretrained(os.path.join(dir, "unet"))
    assert reread.config.attention_head_dim == 8 and reread.config.flip_sin_to_cos, "defaults as documented"
    counts["minimal"] = sum(p.numel() for p in minimal.parameters())

    labels = torch.tensor([2, 0, 1])
    cls = redraw(UNet2DModel(**GOOGLE, num_class_embeds=3), seed=5)
    write_model(os.path.join(OUT, "class"), cls, sched, labels=labels, seed=6)
    counts["class"] = sum(p.numel() for p in cls.parameters())

    export = os.path.join(OUT, "export")
    if os.path.isdir(export):
        DDPMPipeline.from_pretrained(export)
        model, info = UNet2DModel.from_pretrained(os.path.join(export, "unet"), output_loading_info=True)
        assert not any(info.values()), info
        x, t = inputs(model, seed=7)
        e32, e64 = eps(model, x, t)
        save_npy(export, "x.npy", x.numpy())
        save_npy(export, "t.npy", t.numpy().astype(np.float32))
        save_npy(export, "eps32.npy", e32)
        save_npy(export, "eps64.npy", e64)
        counts["export"] = sum(p.numel() for p in model.parameters())

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"torch": TORCH, "diffusers": DIFFUSERS, "numpy": np.__version__, "parameters": counts}, f,
                  indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
