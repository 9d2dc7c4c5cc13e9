//! Dropout's numbers, apart from the GPU: how a probability p becomes a threshold on random bits, and which Philox
//! streams the U-Net's dropout layers draw from. shaders/random.wgsl applies the mask (wrapper:
//! src/kernels/random.rs), src/reference/random.rs and src/reference/unet.rs reproduce it bit for bit, and
//! src/model/unet.rs places the layers; all of them import these from here, so the CPU reference does not depend on
//! GPU code.

/// Philox stream of the first dropout layer; layer k (in forward order) uses `DROPOUT_STREAM + k`. The trainer's
/// own draws use streams below 16.
pub const DROPOUT_STREAM: u32 = 16;

/// The drop threshold n on a word's top 24 bits and the scale 1/(1 − n·2⁻²⁴) of a dropout with probability `p`
/// (n = p·2²⁴ rounded; the realised probability n·2⁻²⁴ is within 2⁻²⁵ of p).
pub fn dropout_threshold(p: f64) -> (u32, f32) {
    let n = (p * 16_777_216.0).round() as u32;
    (n, (1.0 / (1.0 - n as f64 / 16_777_216.0)) as f32)
}
