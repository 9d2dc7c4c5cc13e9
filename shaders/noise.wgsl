// noise.wgsl — the forward noising process in closed form, with the training target.
//   x_t = a[t_n]·x_0 + b[t_n]·ε        per sample n, with its own timestep index t_n
//   VP (DDPM): a = √ᾱ_t, b = √(1 − ᾱ_t);   VE (NCSN): a = 1, b = σ_t.   The table decides, the kernel doesn't care.
//   target = ε (ε-prediction) | x_0 (x_0-prediction) | a·ε − b·x_0 (v-prediction, Salimans & Ho 2022)
// Buffers: x0, eps, x_t, target: [N, D] (D = C·H·W); t: [N] u32 indices into the table; table: [2, T] = (a, b).
// An index t ≥ T is clamped to T − 1 (timesteps are drawn on the GPU, where the host cannot check them).
// Dispatch: 256 invocations per workgroup, one element each, 2-D grid (wg.y·num_workgroups.x + wg.x).
// No backward (x_0, ε and t are data), nothing saved. Wrapper: src/kernels/noise.rs

struct Params {
    len: u32,        // N·D
    d: u32,          // elements per sample
    steps: u32,      // T, the table length
    prediction: u32, // 0 = ε, 1 = x_0, 2 = v
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> eps: array<f32>;
@group(0) @binding(3) var<storage, read> t: array<u32>;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read_write> x_t: array<f32>;
@group(0) @binding(6) var<storage, read_write> target_out: array<f32>;

@compute @workgroup_size(256)
fn noise_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let step = min(t[i / p.d], p.steps - 1u);
    let a = table[step];
    let b = table[p.steps + step];
    let x = x0[i];
    let e = eps[i];
    x_t[i] = a * x + b * e;
    switch p.prediction {
        case 0u: { target_out[i] = e; }
        case 1u: { target_out[i] = x; }
        default: { target_out[i] = a * e - b * x; }
    }
}
