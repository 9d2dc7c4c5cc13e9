// elementwise.wgsl — pointwise ops and the cheap layout ops of the U-Net, forward and backward, f32.
//   silu:         y = x·σ(x)                     backward: d_x = d_y·σ(x)·(1 + x·(1 − σ(x)))
//   add_scaled:   y = a + alpha·b                (alpha = 1: add; backward of add is the identity)
//   scale:        y = alpha·x                    (its own backward, with the same alpha)
//   axpy:         y += alpha·x                   (gradient accumulation)
//   concat_channels: y[n] = [a[n]; b[n]] along C  backward: split_channels, d_a and d_b out of d_y
//   upsample_nearest2x: y[n,c,h,w] = x[n,c,⌊h/2⌋,⌊w/2⌋]   backward: d_x = Σ of the 2×2 block of d_y
//   shift:        y[n,c,r,q] = x[n,c,r+s,q+s] inside x's plane, else 0, for y of any plane size (a zero border
//                 with s < 0, a crop with s > 0)    backward: the shift by −s into x's size
//   add_channel_bias: y[n,c,h,w] = x[n,c,h,w] + e[n,c]     backward: d_e[n,c] = Σ_hw d_y[n,c,h,w]
//   repeat2:      y = [a; a] (a batch doubled, for classifier-free guidance: conditional and unconditional halves)
//   guidance:     y[i] = (1 + alpha)·a[i] − alpha·a[i + len]   (ε̂ = (1 + w)·ε(x, c) − w·ε(x, ∅), Ho & Salimans)
// `*_vec4` entry points (add_scaled, scale, axpy, concat/split_channels, add_channel_bias): the same ops where the
// length (and the plane size H·W, for the NCHW ops) is a multiple of 4, read and written as vec4s through bindings
// 5-8, with p.len and p.hw counted in vec4s: fewer, wider loads. The wrapper picks them where the shapes allow.
// Dispatch: 256 invocations per workgroup, PER_THREAD = 4 elements each, on a 2-D grid of workgroups (linear
// workgroup = wg.y·num_workgroups.x + wg.x) so that any element count fits the per-dimension limit;
// channel_bias_backward (d_e): 64 invocations per workgroup, one (n, c) row each.
// Nothing is saved for backward (silu_backward rereads x). Wrapper: src/kernels/elementwise.rs

struct Params {
    len: u32,      // output elements
    alpha: f32,
    // Layout of the NCHW ops: a_channels/b_channels for concat, c and hw for the per-channel ops,
    // h and w the *input* size for upsampling.
    a_channels: u32,
    b_channels: u32,
    hw: u32,
    h: u32,
    w: u32,
    shift: i32,    // s of shift
    out_h: u32,    // the output plane of shift
    out_w: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> y2: array<f32>;
// The same tensors as vec4s, for the `*_vec4` entry points (a, b, y, y2 in that order).
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> y24: array<vec4<f32>>;

const WG: u32 = 256u;

// Each invocation of a pointwise entry point handles PER_THREAD elements, WG apart, so a workgroup covers
// WG·PER_THREAD contiguous elements and neighbouring invocations touch neighbouring addresses: fewer, fuller
// workgroups (the lavapipe measurement is in docs/kernels.md) with coalesced access on real GPUs.
const PER_THREAD: u32 = 4u;

fn first_index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG * PER_THREAD + lid.x;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn silu_forward_at(i: u32) {
    let x = a[i];
    y[i] = x * sigmoid(x);
}

@compute @workgroup_size(256)
fn silu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { silu_forward_at(i); }
    }
}

// a = x (the forward input), b = d_y; y = d_x.
fn silu_backward_at(i: u32) {
    let x = a[i];
    let s = sigmoid(x);
    y[i] = b[i] * s * (1.0 + x * (1.0 - s));
}

@compute @workgroup_size(256)
fn silu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { silu_backward_at(i); }
    }
}

fn add_scaled_at(i: u32) {
    y[i] = a[i] + p.alpha * b[i];
}

@compute @workgroup_size(256)
fn add_scaled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { add_scaled_at(i); }
    }
}

fn scale_at(i: u32) {
    y[i] = p.alpha * a[i];
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { scale_at(i); }
    }
}

fn axpy_at(i: u32) {
    y[i] = y[i] + p.alpha * a[i];
}

@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { axpy_at(i); }
    }
}

// y: [N, Ca + Cb, H, W] from a: [N, Ca, H, W] and b: [N, Cb, H, W].
fn concat_channels_at(i: u32) {
    let c_total = p.a_channels + p.b_channels;
    let pix = i % p.hw;
    let c = (i / p.hw) % c_total;
    let n = i / (p.hw * c_total);
    if (c < p.a_channels) {
        y[i] = a[(n * p.a_channels + c) * p.hw + pix];
    } else {
        y[i] = b[(n * p.b_channels + (c - p.a_channels)) * p.hw + pix];
    }
}

@compute @workgroup_size(256)
fn concat_channels(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { concat_channels_at(i); }
    }
}

// a = d_y: [N, Ca + Cb, H, W]; y = d_a: [N, Ca, H, W], y2 = d_b: [N, Cb, H, W]. One call per d_y element.
fn split_channels_at(i: u32) {
    let c_total = p.a_channels + p.b_channels;
    let pix = i % p.hw;
    let c = (i / p.hw) % c_total;
    let n = i / (p.hw * c_total);
    if (c < p.a_channels) {
        y[(n * p.a_channels + c) * p.hw + pix] = a[i];
    } else {
        y2[(n * p.b_channels + (c - p.a_channels)) * p.hw + pix] = a[i];
    }
}

@compute @workgroup_size(256)
fn split_channels(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { split_channels_at(i); }
    }
}

// a = x: [N, C, H, W]; y: [N, C, 2H, 2W]. p.h, p.w are the input size.
fn upsample_nearest2x_forward_at(i: u32) {
    let w2 = 2u * p.w;
    let ox = i % w2;
    let oy = (i / w2) % (2u * p.h);
    let plane = i / (w2 * 2u * p.h);
    y[i] = a[(plane * p.h + oy / 2u) * p.w + ox / 2u];
}

@compute @workgroup_size(256)
fn upsample_nearest2x_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { upsample_nearest2x_forward_at(i); }
    }
}

// a = d_y: [N, C, 2H, 2W]; y = d_x: [N, C, H, W]. One call per d_x element sums its 2×2 block.
fn upsample_nearest2x_backward_at(i: u32) {
    let x = i % p.w;
    let yy = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let w2 = 2u * p.w;
    let base = (plane * 2u * p.h + 2u * yy) * w2 + 2u * x;
    y[i] = (a[base] + a[base + 1u]) + (a[base + w2] + a[base + w2 + 1u]);
}

@compute @workgroup_size(256)
fn upsample_nearest2x_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { upsample_nearest2x_backward_at(i); }
    }
}

// a = x: [N, C, H, W]; y: [N, C, out_h, out_w]. p.h, p.w are the input size. Rows and columns outside the input
// wrap around (as u32) past p.h and p.w, so one comparison each covers both sides.
fn shift_at(i: u32) {
    let q = i % p.out_w;
    let r = (i / p.out_w) % p.out_h;
    let plane = i / (p.out_w * p.out_h);
    let rs = u32(i32(r) + p.shift);
    let qs = u32(i32(q) + p.shift);
    var v = 0.0;
    if (rs < p.h && qs < p.w) { v = a[(plane * p.h + rs) * p.w + qs]; }
    y[i] = v;
}

@compute @workgroup_size(256)
fn shift(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { shift_at(i); }
    }
}

// a = x: [N, C, H, W], b = e: [N, C]; y = x + e broadcast over H, W.
fn add_channel_bias_at(i: u32) {
    y[i] = a[i] + b[i / p.hw];
}

@compute @workgroup_size(256)
fn add_channel_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { add_channel_bias_at(i); }
    }
}

// a = x [len/2]; y = [x; x] [len]. p.hw holds len/2.
fn repeat2_at(i: u32) {
    y[i] = a[i % p.hw];
}

@compute @workgroup_size(256)
fn repeat2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { repeat2_at(i); }
    }
}

// a = [o_cond; o_uncond] [2·len]; y [len].
fn guidance_at(i: u32) {
    y[i] = (1.0 + p.alpha) * a[i] - p.alpha * a[i + p.len];
}

@compute @workgroup_size(256)
fn guidance(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { guidance_at(i); }
    }
}

// ---- vec4 forms (see the header) --------------------------------------------------------------------------

fn add_scaled_vec4_at(i: u32) {
    y4[i] = a4[i] + p.alpha * b4[i];
}

@compute @workgroup_size(256)
fn add_scaled_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { add_scaled_vec4_at(i); }
    }
}

fn scale_vec4_at(i: u32) {
    y4[i] = p.alpha * a4[i];
}

@compute @workgroup_size(256)
fn scale_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { scale_vec4_at(i); }
    }
}

fn axpy_vec4_at(i: u32) {
    y4[i] = y4[i] + p.alpha * a4[i];
}

@compute @workgroup_size(256)
fn axpy_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { axpy_vec4_at(i); }
    }
}

// As concat_channels_at, i and p.hw in vec4s (a plane is a whole number of vec4s).
fn concat_channels_vec4_at(i: u32) {
    let c_total = p.a_channels + p.b_channels;
    let pix = i % p.hw;
    let c = (i / p.hw) % c_total;
    let n = i / (p.hw * c_total);
    if (c < p.a_channels) {
        y4[i] = a4[(n * p.a_channels + c) * p.hw + pix];
    } else {
        y4[i] = b4[(n * p.b_channels + (c - p.a_channels)) * p.hw + pix];
    }
}

@compute @workgroup_size(256)
fn concat_channels_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { concat_channels_vec4_at(i); }
    }
}

fn split_channels_vec4_at(i: u32) {
    let c_total = p.a_channels + p.b_channels;
    let pix = i % p.hw;
    let c = (i / p.hw) % c_total;
    let n = i / (p.hw * c_total);
    if (c < p.a_channels) {
        y4[(n * p.a_channels + c) * p.hw + pix] = a4[i];
    } else {
        y24[(n * p.b_channels + (c - p.a_channels)) * p.hw + pix] = a4[i];
    }
}

@compute @workgroup_size(256)
fn split_channels_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { split_channels_vec4_at(i); }
    }
}

// b = e stays scalar (one value per plane).
fn add_channel_bias_vec4_at(i: u32) {
    y4[i] = a4[i] + vec4(b[i / p.hw]);
}

@compute @workgroup_size(256)
fn add_channel_bias_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wg, nwg, lid);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = first + k * WG;
        if (i < p.len) { add_channel_bias_vec4_at(i); }
    }
}

// a = d_y: [N, C, H, W]; y = d_e: [N, C]. One invocation per (n, c) row sums its H·W values in order: no
// workgroup memory and no barriers, which on CPU adapters (lavapipe) costs far less than a tree reduction per row;
// the rows of a U-Net are short (H·W ≤ 1024) and there are N·C of them, enough to fill a GPU too.
@compute @workgroup_size(64)
fn channel_bias_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = (wg.y * nwg.x + wg.x) * 64u + lid.x;
    if (row >= p.len) { return; }
    let base = row * p.hw;
    var s = 0.0;
    for (var j = 0u; j < p.hw; j++) {
        s += a[base + j];
    }
    y[row] = s;
}
