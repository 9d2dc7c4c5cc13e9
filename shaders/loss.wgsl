// loss.wgsl — mean-squared error over f32 tensors of any shape (flattened, n elements), forward and backward.
//   forward:  L = (1/n)·Σ_i (pred_i − target_i)²              (the DDPM "simple" loss ‖ε − ε̂‖² / n)
//   backward: d_pred_i = (2/n)·(pred_i − target_i)·g          g = ∂(whatever follows)/∂L: 1 for mse_backward,
//                                                             d_loss[0] for mse_backward_scaled
// The forward is a deterministic two-stage reduction, no atomics: the same n gives the same summation order, so the
// same bits, on every run.
//   mse_partial: G workgroups of 256 invocations. Invocation g of the whole grid sums the squared differences
//     i = g, g + 256G, g + 2·256G, … (so any n fits, however far past 256·65535); the workgroup then adds its 256
//     sums in a fixed tree and writes partial[wg].
//   mse_final: one workgroup adds the G partials (each invocation a strided run, then the same tree) and writes
//     loss[0] = total · (1/n), 1/n rounded once from f64 on the host.
//   G = min(⌈n/256⌉, 1024) (src/kernels/loss.rs), so every term passes through at most ⌈n/(256G)⌉ + 8 sequential
//   additions in the first stage and ⌈G/256⌉ + 8 in the second: the error bound the tests use.
// Buffers: pred, tgt = target [n] (read); partial [G] (scratch owned by the dispatches); loss [1]; d_loss [1] (read);
// d_pred [n] (written, overwritten). Saves nothing for backward: it rereads pred and target.
// Dispatch: mse_partial G×1×1 (G ≤ 1024 < 65535); mse_final 1×1×1; the backward one invocation per element on
// the 2-D grid of grid_1d (linear workgroup = wg.y·num_workgroups.x + wg.x).
// Weighted (Min-SNR-γ, src/diffusion/schedule.rs `min_snr_weights`): the same with a per-sample weight w_n, gathered
// by sample n's timestep from a per-timestep table (as shaders/noise.wgsl gathers its coefficients):
//   forward:  L = (1/n)·Σ_i w[t[i/d]]·(pred_i − target_i)²    (mse_weighted_partial, then mse_final)
//   backward: d_pred_i = ((2/n)·(pred_i − target_i))·w[t[i/d]]  (·d_loss[0] for mse_weighted_backward_scaled)
// An index t ≥ T is clamped to T − 1, as in noise.wgsl. The unweighted entry points are untouched, so a run without
// weights computes the same bits as before they existed.
// Wrapper: src/kernels/loss.rs. Reference: src/reference/loss.rs.

struct Params {
    n: u32,           // elements
    partials: u32,    // G, the workgroups of mse_partial
    inv_n: f32,       // 1/n, for the forward
    two_over_n: f32,  // 2/n, for the backward
    d: u32,           // elements per sample (weighted entry points)
    steps: u32,       // T, the weight table's length (weighted entry points)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;           // `target` is a WGSL reserved word
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;   // [G]
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;      // [1]
@group(0) @binding(5) var<storage, read> partial_in: array<f32>;      // [G], the same buffer, read by mse_final
@group(0) @binding(6) var<storage, read> d_loss: array<f32>;          // [1]
@group(0) @binding(7) var<storage, read_write> d_pred: array<f32>;    // [n]
@group(0) @binding(8) var<storage, read> t: array<u32>;               // [N] timestep of each sample
@group(0) @binding(9) var<storage, read> weights: array<f32>;         // [T] weight of each timestep

// Invocations per workgroup: src/kernels/loss.rs's WORKGROUP, set as a pipeline constant.
override WG: u32;

var<workgroup> sums: array<f32, WG>;

// Adds sums[0..256) in a fixed binary tree; every invocation of the workgroup must call it (it has barriers).
fn tree_sum(lid: u32, own: f32) -> f32 {
    sums[lid] = own;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
    return sums[0];
}

@compute @workgroup_size(WG)
fn mse_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = wg.x * WG + lid.x; i < p.n; i += p.partials * WG) {
        let d = pred[i] - tgt[i];
        s += d * d;
    }
    // No early return above: the barriers in tree_sum stay in uniform control flow.
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        partial[wg.x] = total;
    }
}

@compute @workgroup_size(WG)
fn mse_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var j = lid.x; j < p.partials; j += WG) {
        s += partial_in[j];
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        loss[0] = total * p.inv_n;
    }
}

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn mse_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.n) { return; }
    d_pred[i] = p.two_over_n * (pred[i] - tgt[i]);
}

@compute @workgroup_size(WG)
fn mse_backward_scaled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.n) { return; }
    d_pred[i] = (p.two_over_n * (pred[i] - tgt[i])) * d_loss[0];
}

// The weight of the sample that element i belongs to.
fn weight_of(i: u32) -> f32 {
    return weights[min(t[i / p.d], p.steps - 1u)];
}

@compute @workgroup_size(WG)
fn mse_weighted_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = wg.x * WG + lid.x; i < p.n; i += p.partials * WG) {
        let d = pred[i] - tgt[i];
        s += weight_of(i) * (d * d);
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        partial[wg.x] = total;
    }
}

@compute @workgroup_size(WG)
fn mse_weighted_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.n) { return; }
    d_pred[i] = (p.two_over_n * (pred[i] - tgt[i])) * weight_of(i);
}

@compute @workgroup_size(WG)
fn mse_weighted_backward_scaled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.n) { return; }
    d_pred[i] = ((p.two_over_n * (pred[i] - tgt[i])) * weight_of(i)) * d_loss[0];
}
