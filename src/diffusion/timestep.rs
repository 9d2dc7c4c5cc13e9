//! The timestep convention, written down once.
//!
//! A schedule of `T` steps has timestep *indices* `t ∈ {0, 1, …, T−1}`, as in improved-diffusion and diffusers.
//! Index `t` is the paper's step `t + 1` of Ho et al. 2020: `x_t` (index) has been noised `t + 1` times, so
//! `ᾱ[0] = 1 − β[0] < 1` (x at index 0 is already slightly noisy) and `ᾱ[T−1]` is the most noised. `x_0` in the
//! paper's sense (clean data) has no index; code calls it `x_start`/`x0` and never stores it in a table.
//!
//! Training draws `t` uniformly from `{0, …, T−1}` (all T values, each with probability 1/T).
//! Sampling walks the indices downwards, `T−1, …, 0`; the step *from* index 0 produces the clean sample and adds
//! no noise (its posterior variance is not used, see `schedule.rs`).
//! The network is conditioned on the index `t` itself (the sinusoidal embedding takes `t` as a float in
//! `[0, T−1]`), matching improved-diffusion with `rescale_timesteps = False`.

/// All timestep indices of a schedule of `num_steps`, in sampling order (`T−1` down to `0`).
pub fn sampling_order(num_steps: usize) -> impl Iterator<Item = usize> {
    (0..num_steps).rev()
}

/// True where a reverse step from index `t` must add noise: every step except the last one (from index 0).
pub fn adds_noise(t: usize) -> bool {
    t > 0
}
