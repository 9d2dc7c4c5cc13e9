// group_norm_common.wgsl — what group_norm.wgsl and group_norm_subgroup.wgsl share: Params, the bindings, and the
// per-quad helpers (loads and masked stores of 4 values of a channel, SiLU, the forward's y, the backward's d_z and
// d_x). Not a module of its own (no entry points): src/gpu/shaders.rs prepends it to each of the two files, so read
// group_norm.wgsl's header first; the two differ only in how a group's sums are reduced.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    group_len: u32, // k = (C/G)·H·W
    eps: f32,
    silu: u32,      // 1: y = silu(z)
    spc: u32,       // slots (invocations) per channel: max(1, 64 / (C/G))
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
// Forward outputs.
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;
// Backward inputs and outputs.
@group(0) @binding(7) var<storage, read> mean: array<f32>;
@group(0) @binding(8) var<storage, read> rstd: array<f32>;
@group(0) @binding(9) var<storage, read> d_y: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_x: array<f32>;
@group(0) @binding(11) var<storage, read_write> partial: array<f32>;
@group(0) @binding(12) var<storage, read> partial_in: array<f32>;
@group(0) @binding(13) var<storage, read_write> d_gamma: array<f32>;
@group(0) @binding(14) var<storage, read_write> d_beta: array<f32>;
// The same tensors seen as vec4 by the *_vec4 entry points (H·W a multiple of 4: every quad is 4 aligned values).
@group(0) @binding(15) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> d_y4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read_write> d_x4: array<vec4<f32>>;

fn sigmoid(z: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-z));
}

// The 4 components of a vec4 accumulator, summed as a 2-level tree.
fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Which quads of 4q .. 4q + 3 lie inside a channel of p.hw values.
fn in_row(q: u32) -> vec4<bool> {
    let j = 4u * q;
    return vec4<bool>(true, j + 1u < p.hw, j + 2u < p.hw, j + 3u < p.hw);
}

// Values 4q .. 4q + 3 of the channel row starting at `row`; indices past its end are clamped to its last value,
// so every load is in bounds (callers mask those lanes with in_row).
fn load_x(row: u32, q: u32) -> vec4<f32> {
    let j = row + 4u * q;
    let last = row + p.hw - 1u;
    return vec4<f32>(x[j], x[min(j + 1u, last)], x[min(j + 2u, last)], x[min(j + 3u, last)]);
}

fn load_dy(row: u32, q: u32) -> vec4<f32> {
    let j = row + 4u * q;
    let last = row + p.hw - 1u;
    return vec4<f32>(d_y[j], d_y[min(j + 1u, last)], d_y[min(j + 2u, last)], d_y[min(j + 3u, last)]);
}

// ∂L/∂z from ∂L/∂y for values of one channel with γ = g, β = b and normalised values xh; z is recomputed exactly as
// the forward computed it.
fn grad_z(dy: vec4<f32>, xh: vec4<f32>, g: f32, b: f32) -> vec4<f32> {
    if (p.silu == 0u) {
        return dy;
    }
    let z = xh * g + b;
    let s = sigmoid(z);
    return dy * s * (1.0 + z * (1.0 - s));
}

// The forward's output for a quad x of a channel with γ = g, β = b: z = (x − μ)·rstd·γ + β, or silu(z).
fn normalized(xq: vec4<f32>, mu: f32, r: f32, g: f32, b: f32) -> vec4<f32> {
    let z = (xq - mu) * r * g + b;
    if (p.silu != 0u) {
        return z * sigmoid(z);
    }
    return z;
}

// The backward's d_x for a quad (x, d_y) of a channel, from the group's μ, rstd and the two group means
// mean(d_x̂), mean(d_x̂·x̂).
fn grad_x(xq: vec4<f32>, dyq: vec4<f32>, mu: f32, r: f32, g: f32, b: f32, mean_dxh: f32,
          mean_dxh_xh: f32) -> vec4<f32> {
    let xh = (xq - mu) * r;
    let dxh = g * grad_z(dyq, xh, g, b);
    return r * (dxh - mean_dxh - xh * mean_dxh_xh);
}

// Quad q of the channel row starting at `row`, written to y / d_x without the values past the row's end.
fn store_y(row: u32, q: u32, v: vec4<f32>) {
    let j = row + 4u * q;
    let m = in_row(q);
    y[j] = v.x;
    if (m.y) { y[j + 1u] = v.y; }
    if (m.z) { y[j + 2u] = v.z; }
    if (m.w) { y[j + 3u] = v.w; }
}

fn store_dx(row: u32, q: u32, v: vec4<f32>) {
    let j = row + 4u * q;
    let m = in_row(q);
    d_x[j] = v.x;
    if (m.y) { d_x[j + 1u] = v.y; }
    if (m.z) { d_x[j + 2u] = v.z; }
    if (m.w) { d_x[j + 3u] = v.w; }
}
