// optimizer.wgsl — one optimizer step over ONE flat f32 vector holding every parameter of a model, f32 throughout.
//   grad norm:  ‖g‖₂ = √(Σᵢ gᵢ²), clip scale s = min(1, max_norm / (‖g‖ + 1e-6))   (torch clip_grad_norm_)
//   Adam/AdamW (torch.optim.Adam / AdamW), t = 1 at the first step; λc = 0 for AdamW, λd = 0 for Adam:
//       g ← s·g (adam_update_clipped only);   g ← g + λc·p (Adam's L2 decay);   p ← p·(1 − lr·λd) (AdamW's)
//       m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²,   p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
//   EMA:        e ← d·e + (1 − d)·w
// A step is recorded once and resubmitted, so what changes per step lives in small storage buffers, not Params:
//   hyper [4] = [lr, d, 1 − d, 0], written by the host before each submission (d and 1 − d each rounded from f64:
//               1 − f32(0.9999) would keep 4 digits);
//   step  [4] = [t, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − lr·λd], owned by the GPU: adam_advance adds 1 to t (an integer-
//               valued f32, exact to 2²⁴ steps) and recomputes the rest. Zeros to start, [t, 0, 0, 0] to resume;
//   norm  [2] = [‖g‖, s], written by grad_norm_finalize (s = 1 when clipping is off) for adam_update_clipped.
// Bias corrections: 1 − βᵗ = −expm1(t·ln β), ln β from the host in f64: a running product βᵗ would lose up to
//   u/(1 − β) to cancellation, and WGSL's pow is only held to 2⁻²¹ absolute near 1.
// Dispatch: grad_norm_partial: W = min(⌈n/256⌉, 1024) workgroups of 256, a grid-stride loop, then a tree →
//   partials[W]; grad_norm_finalize: 1 workgroup of 256, strided sums, then a tree (fixed order: deterministic, the
//   longest rounding chain ⌈n/(256W)⌉ + ⌈W/256⌉ + 17); adam_advance: 1 × 1; adam_update[_clipped], ema_update:
//   256 invocations per workgroup, one element each, 2-D grid (wg.y·num_workgroups.x + wg.x).
// No backward. Wrapper: src/kernels/optimizer.rs; reference: src/reference/optimizer.rs

struct Params {
    len: u32,                    // elements of the flat vector
    partials: u32,               // W, the workgroups of grad_norm_partial
    clip: u32,                   // grad_norm_finalize: 1 → s = min(1, max_norm/(‖g‖ + 1e-6)), 0 → s = 1
    max_norm: f32,
    beta1: f32,
    one_minus_beta1: f32,        // rounded from f64 on the host, like β1
    beta2: f32,
    one_minus_beta2: f32,
    ln_beta1: f32,               // ln β in f64 on the host (clamped to ≥ −104, where eᵗˡⁿᵝ is 0 in f32)
    ln_beta2: f32,
    eps: f32,
    weight_decay: f32,           // λc: Adam's L2 term, g += λc·p
    decoupled_weight_decay: f32, // λd: AdamW's p *= 1 − lr·λd
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;              // [n]
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;    // [W] grad_norm_partial's output
@group(0) @binding(3) var<storage, read> partials_in: array<f32>;       // [W] grad_norm_finalize's input
@group(0) @binding(4) var<storage, read_write> norm: array<f32>;        // [2] ‖g‖, s
@group(0) @binding(5) var<storage, read> norm_in: array<f32>;           // [2] ‖g‖, s
@group(0) @binding(6) var<storage, read> hyper: array<f32>;             // [4] lr, d, 1 − d, 0
@group(0) @binding(7) var<storage, read_write> step: array<f32>;        // [4] t, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − lr·λd
@group(0) @binding(8) var<storage, read> step_in: array<f32>;           // [4] the same, read by adam_update
@group(0) @binding(9) var<storage, read_write> param: array<f32>;       // [n]
@group(0) @binding(10) var<storage, read_write> m: array<f32>;          // [n] first moment
@group(0) @binding(11) var<storage, read_write> v: array<f32>;          // [n] second moment
@group(0) @binding(12) var<storage, read> weights: array<f32>;          // [n] EMA source
@group(0) @binding(13) var<storage, read_write> ema: array<f32>;        // [n]

// Invocations per workgroup: src/kernels/optimizer.rs's WG, set as a pipeline constant.
override WG: u32;

var<workgroup> partial: array<f32, WG>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid.x;
}

// The sum of x over the workgroup, by a fixed tree (8 levels); every thread must call it (it has barriers).
fn workgroup_sum(lid: u32, x: f32) -> f32 {
    partial[lid] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(WG)
fn grad_norm_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Grid-stride: neighbouring threads read neighbouring elements on every pass.
    var sum = 0.0;
    for (var i = wg.x * WG + lid.x; i < p.len; i += p.partials * WG) {
        let x = grad[i];
        sum += x * x;
    }
    let total = workgroup_sum(lid.x, sum);
    if (lid.x == 0u) {
        partials[wg.x] = total;
    }
}

@compute @workgroup_size(WG)
fn grad_norm_finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var i = lid.x; i < p.partials; i += WG) {
        sum += partials_in[i];
    }
    let total = workgroup_sum(lid.x, sum);
    if (lid.x == 0u) {
        let n = sqrt(total);
        norm[0] = n;
        // Below max_norm the quotient exceeds 1 and min returns exactly 1, so clipping then changes nothing.
        norm[1] = select(1.0, min(1.0, p.max_norm / (n + 1e-6)), p.clip != 0u);
    }
}

// 1 − eˣ for x ≤ 0. WGSL has no expm1, and 1 − exp(x) cancels as x → 0 (t·ln β2 = −0.001 at t = 1).
// For x ≥ −1 Horner's form of the Taylor series, x(1 + x/2(1 + x/3(… (1 + x/12)))), truncated below |x|¹³/13! < u/10;
// below −1, 1 − eˣ > 0.63 and the subtraction loses nothing.
fn one_minus_exp(x: f32) -> f32 {
    if (x < -1.0) {
        return 1.0 - exp(x);
    }
    var r = 1.0;
    for (var k = 12.0; k >= 2.0; k -= 1.0) {
        r = 1.0 + x * r / k;
    }
    return -x * r;
}

@compute @workgroup_size(1)
fn adam_advance() {
    let t = step[0] + 1.0;
    let lr = hyper[0];
    step[0] = t;
    step[1] = lr / one_minus_exp(t * p.ln_beta1);
    step[2] = inverseSqrt(one_minus_exp(t * p.ln_beta2));
    step[3] = 1.0 - lr * p.decoupled_weight_decay;
}

// One element of Adam/AdamW with the (possibly clipped) gradient g_in. λc or λd is zero, and multiplying by the
// factor 1 or adding 0·p is exact, so one body serves both without a branch.
fn adam_element(i: u32, g_in: f32) {
    let p_old = param[i];
    let g = g_in + p.weight_decay * p_old;
    let m_new = p.beta1 * m[i] + p.one_minus_beta1 * g;
    let v_new = p.beta2 * v[i] + p.one_minus_beta2 * (g * g);
    m[i] = m_new;
    v[i] = v_new;
    let denom = sqrt(v_new) * step_in[2] + p.eps;
    param[i] = p_old * step_in[3] - step_in[1] * (m_new / denom);
}

@compute @workgroup_size(WG)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    adam_element(i, grad[i]);
}

@compute @workgroup_size(WG)
fn adam_update_clipped(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    adam_element(i, grad[i] * norm_in[1]);
}

@compute @workgroup_size(WG)
fn ema_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    ema[i] = hyper[1] * ema[i] + hyper[2] * weights[i];
}
