//! CPU reference of shaders/pairwise.wgsl: every pair, in exact integers.

/// The farthest pair among `bytes` ([N, d] images) as (‖b_i − b_j‖², i, j) with i < j: the largest distance, then
/// the smallest i, then j (the kernel's order); None where there are fewer than two images or all are equal.
pub fn farthest_pair(bytes: &[u8], d: usize) -> Option<(u64, usize, usize)> {
    let rows: Vec<&[u8]> = bytes.chunks_exact(d).collect();
    let mut best: Option<(u64, usize, usize)> = None;
    for (i, a) in rows.iter().enumerate() {
        for (j, b) in rows.iter().enumerate().skip(i + 1) {
            let distance2: u64 = a
                .iter()
                .zip(*b)
                .map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64)
                .sum();
            // Pairs come in increasing (i, j), so only a strictly larger distance replaces the best.
            if distance2 > 0 && best.is_none_or(|(b2, _, _)| distance2 > b2) {
                best = Some((distance2, i, j));
            }
        }
    }
    best
}
