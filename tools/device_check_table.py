#!/usr/bin/env python3
"""Merges the files of a device check (tools/device-check) into OUT/device-check.json and writes OUT/ratios.md:
diffuse's training steps and matmul beside PyTorch's on the same device (strict fp32 and TF32), as ratios of
images (or FLOPs) per second, higher is better for diffuse. Standard library only.

  python3 tools/device_check_table.py OUT
"""
import json
import pathlib
import sys


def load(path):
    return json.loads(path.read_text()) if path.exists() else None


def training_rows(bench, torch):
    """One row per train_step case: its time, images/s, and the ratio to the twin's batch-32 step per kind."""
    rows = []
    for case in bench["cases"]:
        if case["name"] != "train_step":
            continue
        preset, batch = case["shape"].split()[:2]
        img_s = int(batch.lstrip("b")) / (case["median_ms"] / 1e3)
        row = [f"train_step {case['shape']}", f"{case['median_ms']:.2f} ms", f"{img_s:.1f} img/s"]
        for kind in ("fp32", "tf32"):
            twin = (torch.get(kind) or {}).get("presets", {}).get(preset)
            row.append(f"{img_s / twin['train_b32']['img_per_s']:.2f}" if twin else "—")
        rows.append(row)
    return rows


def matmul_row(bench, torch):
    """diffuse's best matmul rate beside the twin's largest square product."""
    rated = [c for c in bench["cases"] if c["unit"] == "GFLOP/s"]
    if not rated:
        return None
    best = max(rated, key=lambda c: c["rate"])
    row = [f"matmul (best: {best['name']} {best['shape']})", f"{best['median_ms']:.3f} ms", f"{best['rate']:.1f} GFLOP/s"]
    for kind in ("fp32", "tf32"):
        sizes = (torch.get(kind) or {}).get("matmul", {})
        largest = sizes[max(sizes, key=int)] if sizes else None
        row.append(f"{best['rate'] / largest['gflops']:.2f}" if largest else "—")
    return row


def main():
    out = pathlib.Path(sys.argv[1])
    bench = {part: load(out / f"bench-{part}.json") for part in ("matmul", "conv2d", "train_step")}
    missing = [part for part, doc in bench.items() if doc is None]
    if missing:
        sys.exit(f"device check: no bench-{missing[0]}.json in {out}: run tools/device-check")
    torch = {kind: load(out / f"torch-{kind}.json") for kind in ("fp32", "tf32")}
    merged = {"info": (out / "info.txt").read_text(), "bench": bench, "torch": torch}
    (out / "device-check.json").write_text(json.dumps(merged, indent=1))

    adapter = bench["train_step"]["adapter"]
    twin = torch["fp32"]["device"] if torch["fp32"] else "not run (torch not installed)"
    rows = training_rows(bench["train_step"], torch)
    matmul = matmul_row(bench["matmul"], torch)
    if matmul:
        rows.append(matmul)
    lines = [
        f"diffuse on {adapter} ({bench['train_step']['backend']}, clock: {bench['train_step']['clock']}); "
        f"PyTorch on {twin}",
        "",
        "| case | diffuse median | diffuse rate | ÷ PyTorch fp32 | ÷ PyTorch TF32 |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "Ratios are diffuse's images (or FLOPs) per second over PyTorch's: training against the twin's batch-32 step "
        "of the same preset (per image, where diffuse's bench runs another batch), matmul against its largest "
        "square product.",
    ]
    table = "\n".join(lines) + "\n"
    (out / "ratios.md").write_text(table)
    print(table, end="")
    print(f"wrote {out / 'device-check.json'} and {out / 'ratios.md'}")


if __name__ == "__main__":
    main()
