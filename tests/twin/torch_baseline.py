#!/usr/bin/env python3
"""PyTorch baseline for `diffuse bench`: the same DDPM U-Net presets, timed the same way, on CPU or CUDA.

Run it on the same machine, in the same session, as `diffuse bench`, and compare ratios, never absolute times
taken on different days. What it times, per preset:
  fwd_b64    one network evaluation at batch 64 (a sampling step), no grad
  train_b32  one training step at batch 32: draw t and eps, noise x0, forward, MSE, backward,
             global grad-norm clip to 1.0, Adam, EMA update; train_b128 the same at batch 128
and fp32 matmul at 1024^3 and 4096^3. FLOPs count conv/linear/attention matmuls only (2 x MACs); a training step
counts 3 x the forward. fp32 is strict by default (TF32 off); --tf32 and --compile show the stronger baselines a
PyTorch user could also pick. GroupNorm eps 1e-5, no dropout, PyTorch default init: timing only.

  python3 torch_baseline.py --device cuda --json torch_cuda.json
  python3 torch_baseline.py --device cpu --presets small --quick
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The presets of diffuse: small and medium at 28x28x1, rgb32, rgb64 and rgb128 in RGB.
PRESETS = {
    "small": dict(in_ch=1, img=28, ch=32, mults=[1, 2, 2], blocks=1, attn_res=[7], groups=8),
    "medium": dict(in_ch=1, img=28, ch=64, mults=[1, 2, 2], blocks=2, attn_res=[7], groups=16),
    "rgb32": dict(in_ch=3, img=32, ch=64, mults=[1, 2, 2, 2], blocks=2, attn_res=[16], groups=16),
    # Ho et al. 2020's CIFAR-10 network (ch 128, x1,2,2,2, 2 blocks, attention at 16x16) at 64x64.
    "rgb64": dict(in_ch=3, img=64, ch=128, mults=[1, 2, 2, 2], blocks=2, attn_res=[16], groups=32),
    # Ho et al. 2020's 256x256 network (ch 128, x1,1,2,2,4,4, 2 blocks, attention at 16x16) at 128x128.
    "rgb128": dict(in_ch=3, img=128, ch=128, mults=[1, 1, 2, 2, 4, 4], blocks=2, attn_res=[16], groups=32),
}
T_STEPS = 1000


def timestep_embedding(t, dim):
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(10000.0) / (half - 1)))
    arg = t.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm, self.qkv, self.proj = nn.GroupNorm(groups, c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=2)  # [b, query, key]
        return x + self.proj(torch.bmm(v, a.transpose(1, 2)).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, in_ch, img, ch, mults, blocks, attn_res, groups):
        super().__init__()
        self.ch, tdim = ch, 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down, skips, cur, res = nn.ModuleList(), [ch], ch, img
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(nn.ModuleList([ResBlock(cur, ch * m, tdim, groups)]
                                               + ([Attention(ch * m, groups)] if res in attn_res else [])))
                cur = ch * m
                skips.append(cur)
            if i != len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, tdim, groups), Attention(cur, groups), ResBlock(cur, cur, tdim, groups)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(cur + skips.pop(), ch * m, tdim, groups)]
                                             + ([Attention(ch * m, groups)] if res in attn_res else [])))
                cur = ch * m
            if i != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, cur, 3, padding=1)]))
                res *= 2
        self.out = nn.Sequential(nn.GroupNorm(groups, cur), nn.SiLU(), nn.Conv2d(cur, in_ch, 3, padding=1))

    @staticmethod
    def _run(layers, h, temb):
        for layer in layers:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x, t):
        temb = self.temb(timestep_embedding(t, self.ch))
        hs = [self.conv_in(x)]
        for layers in self.down:
            hs.append(self._run(layers, hs[-1], temb))
        h = self._run(self.mid, hs[-1], temb)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], 1) if isinstance(layers[0], ResBlock) else h, temb)
        return self.out(h)


def forward_flops(model, cfg, device):
    """Forward FLOPs of one image: 2 x MACs of every conv, linear and attention matmul."""
    macs, hooks = [0], []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(lambda m, i, o: macs.__setitem__(
                0, macs[0] + o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(lambda m, i, o: macs.__setitem__(0, macs[0] + o.numel() * m.in_features)))
        elif isinstance(mod, Attention):
            hooks.append(mod.register_forward_hook(lambda m, i, o: macs.__setitem__(
                0, macs[0] + 2 * i[0].shape[1] * (i[0].shape[2] * i[0].shape[3]) ** 2)))
    with torch.no_grad():
        model(torch.zeros(1, cfg["in_ch"], cfg["img"], cfg["img"], device=device), torch.zeros(1, dtype=torch.long, device=device))
    for h in hooks:
        h.remove()
    return 2 * macs[0]


def timed(fn, device, warmup, runs):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--presets", default="small,medium,rgb32")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core matmul/conv (not strict fp32)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--quick", action="store_true", help="few runs: a smoke test, not a measurement")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--counts", action="store_true", help="print parameter and forward FLOP counts only (no timing)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    if args.counts:
        for name in args.presets.split(","):
            cfg = PRESETS[name]
            model = UNet(**cfg)
            params = sum(p.numel() for p in model.parameters())
            print(f"{name}: {params} parameters, {forward_flops(model, cfg, torch.device('cpu'))} forward FLOPs per image")
        return

    runs = 3 if args.quick else 20
    out = {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "tf32": args.tf32, "compile": args.compile, "matmul": {}, "presets": {}}
    print(f"# PyTorch {torch.__version__} on {out['device']}  tf32={args.tf32} compile={args.compile}")

    for n in (1024, 4096) if device.type == "cuda" else (1024,):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        r = timed(lambda: torch.mm(a, b), device, 3, runs)
        r["gflops"] = 2 * n ** 3 / r["median_s"] / 1e9
        out["matmul"][str(n)] = r
        print(f"matmul {n}^3{'':18s} median {r['median_s'] * 1e3:9.3f} ms  {r['gflops']:9.1f} GFLOP/s")

    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T_STEPS, dtype=torch.float64), 0).float().to(device)
    for name in args.presets.split(","):
        cfg = PRESETS[name]
        model = UNet(**cfg).to(device)
        ema = [p.detach().clone() for p in model.parameters()]
        flops = forward_flops(model, cfg, device)
        net = torch.compile(model) if args.compile else model
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        entry = {"config": cfg, "params": sum(p.numel() for p in model.parameters()), "fwd_flops_per_image": flops}

        def train_step(x0):
            t = torch.randint(0, T_STEPS, (x0.shape[0],), device=device)
            eps = torch.randn_like(x0)
            a = abar[t].view(-1, 1, 1, 1)
            loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - 0.999)

        shape = (cfg["in_ch"], cfg["img"], cfg["img"])
        x64, t64 = torch.randn(64, *shape, device=device), torch.randint(0, T_STEPS, (64,), device=device)
        with torch.no_grad():
            entry["fwd_b64"] = timed(lambda: net(x64, t64), device, 3, runs)
        entry["fwd_b64"]["img_per_s"] = 64 / entry["fwd_b64"]["median_s"]
        entry["fwd_b64"]["gflops"] = flops * 64 / entry["fwd_b64"]["median_s"] / 1e9
        for batch in (32, 128):
            x0 = torch.randn(batch, *shape, device=device).clamp(-1, 1)
            r = timed(lambda: train_step(x0), device, 3, runs)
            r["steps_per_s"], r["img_per_s"] = 1 / r["median_s"], batch / r["median_s"]
            r["gflops"] = 3 * flops * batch / r["median_s"] / 1e9
            entry[f"train_b{batch}"] = r
        out["presets"][name] = entry
        for key in ("fwd_b64", "train_b32", "train_b128"):
            r = entry[key]
            print(f"{name:7s} {key:10s} {entry['params'] / 1e6:5.2f} M params  median {r['median_s'] * 1e3:9.3f} ms  "
                  f"{r['gflops']:9.1f} GFLOP/s  {r['img_per_s']:9.0f} img/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print("wrote", args.json)


if __name__ == "__main__":
    main()
