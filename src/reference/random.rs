//! CPU reference of shaders/random.wgsl: Philox4x32-10 with native 64-bit products, and the exact math of each
//! draw in f64 (the GPU's integers and uniforms match it bit for bit; its normals to a few f32 ULPs).

/// Philox4x32 round multipliers and Weyl key increments (Salmon et al. 2011; Random123's philox.h).
pub const PHILOX_M: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
pub const PHILOX_W: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: the counter is permuted through ten rounds of two 32×32→64 multiplications, the key
/// bumped by the Weyl constants between rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [
                k[0].wrapping_add(PHILOX_W[0]),
                k[1].wrapping_add(PHILOX_W[1]),
            ];
        }
        let (hi0, lo0) = mulhilo(PHILOX_M[0], c[0]);
        let (hi1, lo1) = mulhilo(PHILOX_M[1], c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Block `b` of the draw (seed, stream, offset): counter (b, stream, offset lo, offset hi), key (seed lo, seed hi).
pub fn block(seed: u64, stream: u32, offset: u64, b: u32) -> [u32; 4] {
    philox4x32_10(
        [b, stream, offset as u32, (offset >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// The first `len` words of a draw: element i is word i % 4 of block ⌊i/4⌋.
pub fn bits(seed: u64, stream: u32, offset: u64, len: usize) -> Vec<u32> {
    (0..len.div_ceil(4))
        .flat_map(|b| block(seed, stream, offset, b as u32))
        .take(len)
        .collect()
}

const TWO_POW_M24: f64 = 1.0 / 16_777_216.0;

/// (w >> 8)·2⁻²⁴ ∈ [0, 1).
pub fn unit(w: u32) -> f64 {
    (w >> 8) as f64 * TWO_POW_M24
}

pub fn uniform(seed: u64, stream: u32, offset: u64, len: usize) -> Vec<f64> {
    bits(seed, stream, offset, len)
        .into_iter()
        .map(unit)
        .collect()
}

/// ⌊w·n / 2³²⌋ ∈ [0, n).
pub fn uniform_int(seed: u64, stream: u32, offset: u64, len: usize, n: u32) -> Vec<u32> {
    bits(seed, stream, offset, len)
        .into_iter()
        .map(|w| mulhilo(w, n).0)
        .collect()
}

/// Box–Muller on a pair of words: u1 = ((w_r >> 8) + 1)·2⁻²⁴ ∈ (0, 1], θ = π·(2·(w_a >> 8)·2⁻²⁴ − 1) ∈ [−π, π),
/// r = √(−2 ln u1); returns (r cos θ, r sin θ, r).
pub fn box_muller(w_radius: u32, w_angle: u32) -> (f64, f64, f64) {
    let u1 = ((w_radius >> 8) + 1) as f64 * TWO_POW_M24;
    let theta = std::f64::consts::PI * (2.0 * unit(w_angle) - 1.0);
    let r = (-2.0 * u1.ln()).sqrt();
    (r * theta.cos(), r * theta.sin(), r)
}

/// Standard normals of a draw and the Box–Muller radius r behind each (|z| ≤ r; the GPU's error scales with r).
pub fn normal_with_radius(seed: u64, stream: u32, offset: u64, len: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut z, mut r) = (Vec::with_capacity(len + 3), Vec::with_capacity(len + 3));
    for b in 0..len.div_ceil(4) {
        let w = block(seed, stream, offset, b as u32);
        for (wr, wa) in [(w[0], w[1]), (w[2], w[3])] {
            let (c, s, radius) = box_muller(wr, wa);
            z.extend([c, s]);
            r.extend([radius, radius]);
        }
    }
    z.truncate(len);
    r.truncate(len);
    (z, r)
}

pub fn normal(seed: u64, stream: u32, offset: u64, len: usize) -> Vec<f64> {
    normal_with_radius(seed, stream, offset, len).0
}

/// shaders/random.wgsl's dropout: element i kept (times `scale`) when the top 24 bits of word i are ≥ `n`, with
/// (n, scale) from `dropout::dropout_threshold`. For f32 inputs the f64 product is exact, so rounding it to
/// f32 gives exactly the GPU's f32 multiplication.
pub fn dropout(x: &[f64], n: u32, scale: f32, seed: u64, stream: u32, offset: u64) -> Vec<f64> {
    bits(seed, stream, offset, x.len())
        .into_iter()
        .zip(x)
        .map(|(w, &v)| if (w >> 8) >= n { v * scale as f64 } else { 0.0 })
        .collect()
}
