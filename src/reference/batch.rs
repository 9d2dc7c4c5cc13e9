//! CPU reference of shaders/batch.wgsl.

use crate::data::unit;

/// x0[n] = unit(data[min(index[n], M − 1)]) for 8-bit rows of `d` bytes.
pub fn gather_rows(data: &[u8], d: usize, index: &[u32]) -> Vec<f32> {
    let rows = data.len() / d;
    index
        .iter()
        .flat_map(|&i| {
            let r = (i as usize).min(rows - 1);
            data[r * d..(r + 1) * d].iter().map(|&b| unit(b))
        })
        .collect()
}

/// `gather_rows` of images with `width` columns, image n mirrored left–right where u[n] < 0.5.
pub fn gather_rows_flip(data: &[u8], d: usize, width: usize, index: &[u32], u: &[f32]) -> Vec<f32> {
    gather_rows(data, d, index)
        .chunks(d)
        .zip(u)
        .flat_map(|(image, &u)| {
            image
                .chunks(width)
                .flat_map(move |row| {
                    let mut row = row.to_vec();
                    if u < 0.5 {
                        row.reverse();
                    }
                    row
                })
                .collect::<Vec<f32>>()
        })
        .collect()
}

/// label[n] = null_class if u[n] < p_uncond, else labels[min(index[n], M − 1)].
pub fn gather_labels(
    labels: &[u32],
    index: &[u32],
    u: &[f32],
    p_uncond: f32,
    null_class: u32,
) -> Vec<u32> {
    index
        .iter()
        .zip(u)
        .map(|(&i, &u)| {
            if u < p_uncond {
                null_class
            } else {
                labels[(i as usize).min(labels.len() - 1)]
            }
        })
        .collect()
}
