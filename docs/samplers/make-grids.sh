#!/usr/bin/env bash
# Regenerates the grids and the distance table of docs/samplers.md: every sampler from the same x_T (x_T.npy, 16
# standard normal images 1×28×28 drawn by the Python below, seed 0), unguided, with the bundled model, at 10, 20
# and 50 evaluations. Run from the repository root after `cargo build --release`: bash docs/samplers/make-grids.sh
set -euo pipefail
out=docs/samplers
diffuse=${DIFFUSE:-target/release/diffuse}
tmp=$(mktemp -d)
if [ ! -f "$out/x_T.npy" ]; then
  python3 - "$out/x_T.npy" <<'PY'
import random, struct, sys
random.seed(0)
n, shape = 16 * 28 * 28, "(16, 1, 28, 28)"
header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%df" % n, *(random.gauss(0.0, 1.0) for _ in range(n))))
PY
fi
# The reference: the probability-flow ODE solved finely (DPM-Solver++(2M) and UniPC with 500 steps, whose distance
# from each other is printed), from the same x_T; every deterministic sampler below converges to it.
for sampler in dpm++2m unipc; do
  "$diffuse" sample --sampler $sampler --steps 500 --noise "$out/x_T.npy" --out "$tmp/ref.png" \
    --npy "$tmp/ref-$sampler.npy" | grep evaluations
done
# --clip none throughout, so that the grids compare the solvers alone (ddpm and ddim clamp x̂₀ by default).
for evals in 10 20 50; do
  for sampler in ddpm ddim dpm++2m dpm++2m-karras unipc euler heun; do
    args=(--sampler "${sampler%-karras}" --steps "$evals" --clip none)
    [ "$sampler" = dpm++2m-karras ] && args+=(--karras)
    # Heun spends 2 evaluations per level but 1 on the last: n/2 levels make n − 1 evaluations.
    [ "$sampler" = heun ] && args=(--sampler heun --steps $((evals - 1)))
    "$diffuse" sample "${args[@]}" --noise "$out/x_T.npy" --out "$out/$sampler-$evals.png" \
      --npy "$tmp/$sampler-$evals.npy" | grep evaluations
  done
done
# RMS distance of each run's images (pixels in [−1, 1]) from the reference.
python3 - "$tmp" <<'PY'
import struct, sys
tmp = sys.argv[1]
def load(name):
    data = open("%s/%s.npy" % (tmp, name), "rb").read()
    n = struct.unpack("<H", data[8:10])[0]
    body = data[10 + n:]
    return struct.unpack("<%df" % (len(body) // 4), body)
def rms(a, b):
    return (sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)) ** 0.5
ref = load("ref-dpm++2m")
print("reference: dpm++2m vs unipc at 500 steps: RMS %.4f" % rms(ref, load("ref-unipc")))
for sampler in ["ddpm", "ddim", "dpm++2m", "dpm++2m-karras", "unipc", "euler", "heun"]:
    cells = "".join("  %2d: %.4f" % (e, rms(ref, load("%s-%d" % (sampler, e)))) for e in (10, 20, 50))
    print("%-15s%s" % (sampler, cells))
PY
rm -r "$tmp"
