//! shaders/batch.wgsl against src/reference/batch.rs: gathers are copies through the byte → value table, so
//! results must be exact.

use crate::common;

use common::gpu;
use diffuse::data::unit;
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::batch::{self, PackedImages};
use diffuse::reference::batch as reference;

/// `len` bytes covering all 256 values, in a scrambled order.
fn bytes(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 167 + seed * 31) % 256) as u8)
        .collect()
}

#[test]
fn gather_rows_converts_the_indexed_images_exactly() {
    let gpu = gpu();
    // d = 1, odd d (rows straddle u32 words), a 28×28 image, a 3×64×64 image; indices repeat, include the last
    // row and one past the end (clamped).
    for (m, c, h, w) in [(5, 1, 1, 1), (7, 1, 1, 13), (40, 1, 28, 28), (3, 3, 64, 64)] {
        let d = c * h * w;
        let data = bytes(m * d, 1);
        let index: Vec<u32> = vec![0, m as u32 - 1, 2, 2, m as u32 + 9];
        let n = index.len();
        let dt = PackedImages::upload(gpu, &data, d).unwrap();
        let it = Tensor::from_u32(gpu, &[n], &index).unwrap();
        let x0 = common::nan_tensor(&[n, c, h, w]); // must be overwritten
        gpu.run([&batch::gather_rows(gpu, &dt, &it, &x0).unwrap()])
            .unwrap();
        assert_eq!(
            x0.read_f32(gpu).unwrap(),
            reference::gather_rows(&data, d, &index),
            "m{m} d{d}"
        );
    }
}

#[test]
fn bytes_map_to_the_unit_interval_ends_and_middle() {
    assert_eq!((unit(0), unit(255)), (-1.0, 1.0));
    // 127.5 is the midpoint: 127 and 128 lie half a level either side of 0.
    assert_eq!(unit(128), -unit(127));
    assert_eq!(unit(128), (0.5f64 / 127.5) as f32);
}

#[test]
fn gather_rows_flip_mirrors_exactly_the_images_drawn_below_one_half() {
    let gpu = gpu();
    // Odd and even widths, one and three channels; u at, just below and above 0.5.
    for (m, c, h, w) in [(4, 1, 3, 5), (6, 3, 4, 4), (3, 1, 28, 28)] {
        let d = c * h * w;
        let data = bytes(m * d, 2);
        let index: Vec<u32> = vec![0, m as u32 - 1, 1, 1, m as u32 + 3];
        let u = [0.0, 0.4999999, 0.5, 0.9, 0.25];
        let n = index.len();
        let dt = PackedImages::upload(gpu, &data, d).unwrap();
        let it = Tensor::from_u32(gpu, &[n], &index).unwrap();
        let ut = Tensor::from_f32(gpu, &[n], &u).unwrap();
        let x0 = common::nan_tensor(&[n, c, h, w]); // must be overwritten
        gpu.run([&batch::gather_rows_flip(gpu, &dt, &it, &ut, &x0).unwrap()])
            .unwrap();
        let got = x0.read_f32(gpu).unwrap();
        assert_eq!(
            got,
            reference::gather_rows_flip(&data, d, w, &index, &u),
            "{c}×{h}×{w}"
        );
        // Image 2 (u = 0.5) is not flipped; image 0 (u = 0) is: its first pixel is the source row's last.
        assert_eq!(got[2 * d], unit(data[d]));
        assert_eq!(got[0], unit(data[w - 1]));
    }
}

#[test]
fn gather_labels_drops_the_requested_fraction_to_the_null_class() {
    let gpu = gpu();
    let labels: Vec<u32> = (0..10).collect();
    let index: Vec<u32> = (0..100).map(|i| (i * 7) % 10).collect();
    let u: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let lt = Tensor::from_u32(gpu, &[10], &labels).unwrap();
    let it = Tensor::from_u32(gpu, &[100], &index).unwrap();
    let ut = Tensor::from_f32(gpu, &[100], &u).unwrap();
    let out = Tensor::zeros(gpu, &[100], DType::U32).unwrap();
    gpu.run([&batch::gather_labels(gpu, &lt, &it, &ut, 0.1, 10, &out).unwrap()])
        .unwrap();
    let got = out.read_u32(gpu).unwrap();
    assert_eq!(got, reference::gather_labels(&labels, &index, &u, 0.1, 10));
    assert_eq!(
        got.iter().filter(|&&l| l == 10).count(),
        10,
        "u < 0.1 for exactly 10 of the 100 samples"
    );
}

#[test]
fn gathers_refuse_mismatched_shapes() {
    let gpu = gpu();
    let data = PackedImages::zeros(gpu, 10, 4).unwrap();
    let x0 = Tensor::zeros(gpu, &[3, 1, 1, 5], DType::F32).unwrap();
    let index = Tensor::zeros(gpu, &[3], DType::U32).unwrap();
    let err = batch::gather_rows(gpu, &data, &index, &x0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("[3, 1, 1, 5]") && err.contains("4 values"),
        "{err}"
    );
    let x0 = Tensor::zeros(gpu, &[3, 1, 2, 2], DType::F32).unwrap();
    let index_f32 = Tensor::zeros(gpu, &[3], DType::F32).unwrap();
    assert!(batch::gather_rows(gpu, &data, &index_f32, &x0)
        .err()
        .unwrap()
        .to_string()
        .contains("u32"));
}

#[test]
fn fill_u32_sets_every_element() {
    let gpu = gpu();
    for n in [1, 63, 64, 65] {
        let t = Tensor::zeros(gpu, &[n], DType::U32).unwrap();
        gpu.run([&batch::fill_u32(gpu, &t, 417).unwrap()]).unwrap();
        assert_eq!(t.read_u32(gpu).unwrap(), vec![417; n]);
    }
}
