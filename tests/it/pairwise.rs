//! shaders/pairwise.wgsl and its driver (src/data/farthest.rs) against the reference: the farthest pair of 8-bit
//! images, exact in integers, so the GPU's answer must equal the reference's to the last bit, pair included.

use diffuse::data::farthest::{farthest_pair, sigma_max_from_data, Split};
use diffuse::data::Dataset;
use diffuse::gpu::future::block_on;
use diffuse::gpu::DType;
use diffuse::kernels::batch::PackedImages;
use diffuse::kernels::pairwise::{self, FarthestPair, Rows};
use diffuse::reference::pairwise as reference;

use crate::common::gpu;

fn dataset(pixels: Vec<u8>, d: usize) -> Dataset {
    Dataset {
        len: pixels.len() / d,
        pixels: pixels.into(),
        // The driver reads only len and the bytes per image.
        channels: d,
        size: 1,
        labels: None,
        class_names: Vec::new(),
        description: "test bytes".into(),
        notes: Vec::new(),
    }
}

/// Deterministic bytes (a 64-bit LCG's top byte).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn gpu_pair(pixels: &[u8], d: usize, split: Split) -> Option<(u64, usize, usize)> {
    let data = dataset(pixels.to_vec(), d);
    block_on(farthest_pair(gpu(), &data, split))
        .expect("farthest pair")
        .map(|p: FarthestPair| (p.distance2, p.first, p.second))
}

/// Every path of the driver: one block or several (a block pair uploaded, or one block against itself), one
/// dispatch per block pair or several (rectangles of a tile of rows), one workgroup walking many tiles or one
/// tile each; image sizes that do not fill a word or a 64-byte slice.
#[test]
fn farthest_pair_matches_the_reference_on_every_split() {
    let splits = [
        Split {
            block_rows: 1 << 20,
            work: 1 << 40,
            groups: 1024,
        },
        Split {
            block_rows: 7,
            work: 1,
            groups: 1,
        },
        Split {
            block_rows: 16,
            work: 16 * 16 * 785,
            groups: 3,
        },
        Split {
            block_rows: 33,
            work: 1 << 40,
            groups: 2,
        },
    ];
    for (n, d) in [(2, 1), (17, 3), (33, 785), (40, 64), (50, 5)] {
        let pixels = bytes(n * d, (n * 1000 + d) as u64);
        let want = reference::farthest_pair(&pixels, d);
        assert!(want.is_some(), "random images differ");
        for split in splits {
            let got = gpu_pair(&pixels, d, split);
            assert_eq!(got, want, "N = {n}, d = {d}, {split:?}");
        }
    }
}

/// Ties go to the smallest i, then j, on the GPU as in the reference, whatever the workgroups' order: copies of
/// the two farthest images make four pairs at the same largest distance.
#[test]
fn farthest_pair_breaks_ties_as_the_reference() {
    let d = 10;
    let mut pixels = bytes(30 * d, 5)
        .iter()
        .map(|b| 64 + b / 4)
        .collect::<Vec<u8>>();
    for (row, value) in [(4, 0u8), (21, 255), (9, 0), (27, 255)] {
        pixels[row * d..(row + 1) * d].fill(value);
    }
    let want = reference::farthest_pair(&pixels, d);
    assert_eq!(want, Some((10 * 255 * 255, 4, 21)));
    for groups in [1, 2, 64] {
        let split = Split {
            block_rows: 8,
            work: 1,
            groups,
        };
        assert_eq!(gpu_pair(&pixels, d, split), want, "{groups} workgroups");
    }
}

/// A distance² past 2³² (70,001 bytes at 0 against 255: 4.55·10⁹) carries into the kernel's high word.
#[test]
fn farthest_pair_counts_past_32_bits() {
    let d = 70_001;
    let mut pixels = vec![0u8; d];
    pixels.extend(vec![255u8; d]);
    pixels.extend(bytes(d, 9));
    let want = reference::farthest_pair(&pixels, d);
    assert_eq!(want, Some((255 * 255 * d as u64, 0, 1)));
    assert!(want.unwrap().0 > u32::MAX as u64);
    let split = Split {
        block_rows: 2,
        work: 1,
        groups: 4,
    };
    assert_eq!(gpu_pair(&pixels, d, split), want);
}

/// One image, or equal ones, have no largest distance: None from the kernel, and a σ_max rule that says what to
/// do instead; otherwise σ_max is the distance in training units (bytes / 127.5).
#[test]
fn sigma_max_from_data_is_the_farthest_pair_in_training_units() {
    let d = 9;
    let split = Split {
        block_rows: 4,
        work: 1,
        groups: 2,
    };
    assert_eq!(gpu_pair(&[7; 9], d, split), None);
    assert_eq!(gpu_pair(&[7; 45], d, split), None);
    let same = dataset(vec![7; 45], 9);
    let e = block_on(sigma_max_from_data(gpu(), &same))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--sigma-max") && e.contains("no two different images"),
        "{e}"
    );

    let data = dataset(bytes(9 * 12, 2), d);
    let (sigma_max, pair) = block_on(sigma_max_from_data(gpu(), &data)).expect("σ_max");
    let (d2, i, j) = reference::farthest_pair(&data.pixels, d).expect("a pair");
    assert_eq!((pair.distance2, pair.first, pair.second), (d2, i, j));
    assert_eq!(sigma_max, (d2 as f64).sqrt() / 127.5);
    let x = |n: usize| {
        data.pixels[n * d..(n + 1) * d]
            .iter()
            .map(|&b| diffuse::data::unit(b) as f64)
    };
    let direct: f64 = x(i)
        .zip(x(j))
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    // The training values are f32 roundings of b/127.5 − 1 ∈ [−1, 1], each off by at most u = 2⁻²⁴, so each
    // difference by 2u and the distance, by the triangle inequality, by at most 2u·√d.
    let bound = 2.0 * 2f64.powi(-24) * (d as f64).sqrt();
    assert!(
        (direct - sigma_max).abs() <= bound,
        "{direct} vs {sigma_max}"
    );
}

/// llvmpipe ends a loop nest after 65,535 iterations per invocation without a word: one workgroup walking the 820
/// tiles with pairs i < j (of 1,600), 101 slice steps each, would stop early and miss the farthest pair. The driver spreads the tiles over more workgroups even
/// when asked for one, and the kernel's wrapper refuses a dispatch past the limit.
#[test]
fn farthest_pair_stays_within_llvmpipes_loop_limit() {
    let (n, d) = (640, 6400);
    let mut pixels = bytes(n * d, 11)
        .iter()
        .map(|b| 96 + b / 8)
        .collect::<Vec<u8>>();
    // The farthest pair among the last tiles a lone workgroup would reach.
    pixels[630 * d..631 * d].fill(0);
    pixels[639 * d..640 * d].fill(255);
    let want = reference::farthest_pair(&pixels, d);
    assert_eq!(want.map(|w| (w.1, w.2)), Some((630, 639)));
    let split = Split {
        block_rows: n,
        work: 1 << 40,
        groups: 1,
    };
    assert_eq!(gpu_pair(&pixels, d, split), want);

    let images = PackedImages::upload(gpu(), &pixels, d).expect("upload");
    let rows = Rows {
        images: &images,
        first: 0,
    };
    let best = diffuse::gpu::Tensor::zeros(gpu(), &[1, 4], DType::U32).expect("table");
    let e = pairwise::farthest_pair(gpu(), &rows, &rows, 0..n, 0..n, 1, &best)
        .err()
        .expect("one workgroup for 1,600 tiles of 101 steps is refused")
        .to_string();
    assert!(e.contains("loop limit"), "{e}");
}
