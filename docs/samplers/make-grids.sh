#!/usr/bin/env bash
# Regenerates the grids of docs/samplers.md: every sampler from the same x_T (x_T.npy, 16 standard normal images
# 1×28×28 drawn by the Python below, seed 0), unguided, with the bundled model, at 10, 20 and 50 evaluations.
# Run from the repository root: bash docs/samplers/make-grids.sh
set -euo pipefail
out=docs/samplers
diffuse=${DIFFUSE:-target/release/diffuse}
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
for evals in 10 20 50; do
  for sampler in ddpm ddim dpm++2m dpm++2m-karras unipc euler heun; do
    args=(--sampler "${sampler%-karras}" --steps "$evals")
    [ "$sampler" = dpm++2m-karras ] && args+=(--karras)
    # Heun spends 2 evaluations per level but 1 on the last: n/2 levels make n − 1 evaluations.
    [ "$sampler" = heun ] && args=(--sampler heun --steps $((evals - 1)))
    "$diffuse" sample "${args[@]}" --noise "$out/x_T.npy" --out "$out/$sampler-$evals.png" | grep evaluations
  done
done
