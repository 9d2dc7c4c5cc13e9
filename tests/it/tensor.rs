//! Tensors and dispatch recording: round trips, views, refusals, and many dispatches in one submission.

use crate::common;

use common::{gpu, uniform};
use diffuse::gpu::{DType, Dispatch, Recorder, Tensor};
use diffuse::kernels::elementwise;

#[test]
fn upload_and_download_round_trip_exactly() {
    let gpu = gpu();
    let data = uniform(1001, 1);
    let t = Tensor::from_f32(gpu, &[7, 11, 13], &data).unwrap();
    assert_eq!(t.read_f32(gpu).unwrap(), data);
    let ints: Vec<u32> = (0..37)
        .map(|i| i * 2_654_435_761u32.wrapping_add(i))
        .collect();
    let u = Tensor::from_u32(gpu, &[37], &ints).unwrap();
    assert_eq!(u.dtype(), DType::U32);
    assert_eq!(u.read_u32(gpu).unwrap(), ints);
    let z = Tensor::zeros(gpu, &[3, 5], DType::F32).unwrap();
    assert_eq!(z.read_f32(gpu).unwrap(), vec![0.0; 15]);
    z.write_f32(gpu, &[2.5; 15]).unwrap();
    assert_eq!(z.read_f32(gpu).unwrap(), vec![2.5; 15]);
}

#[test]
fn views_share_storage_and_respect_alignment() {
    let gpu = gpu();
    let data: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let t = Tensor::from_f32(gpu, &[256], &data).unwrap();
    let view = t.view(gpu, 64, &[2, 32]).unwrap();
    assert_eq!(view.read_f32(gpu).unwrap(), data[64..128]);
    let doubled = Tensor::zeros(gpu, &[2, 32], DType::F32).unwrap();
    gpu.run([&elementwise::scale(gpu, &view, 2.0, &doubled).unwrap()])
        .unwrap();
    let want: Vec<f32> = data[64..128].iter().map(|v| 2.0 * v).collect();
    assert_eq!(doubled.read_f32(gpu).unwrap(), want);
    let err = t
        .view(gpu, 3, &[4])
        .expect_err("unaligned view")
        .to_string();
    assert!(err.contains("alignment"), "{err}");
    let err = t
        .view(gpu, 192, &[128])
        .expect_err("view past the end")
        .to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn bad_shapes_and_lengths_are_refused() {
    let gpu = gpu();
    let err = Tensor::from_f32(gpu, &[2, 3], &[1.0; 5])
        .expect_err("5 values for 6 slots")
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains('5'), "{err}");
    let err = Tensor::zeros(gpu, &[], DType::F32)
        .expect_err("rank 0")
        .to_string();
    assert!(err.contains("no elements"), "{err}");
    let t = Tensor::zeros(gpu, &[4, 6], DType::F32).unwrap();
    assert!(t.reshape(&[3, 8]).is_ok());
    assert!(t.reshape(&[5, 5]).is_err());
    assert!(t.write_f32(gpu, &[0.0; 23]).is_err());
    let ints = Tensor::zeros(gpu, &[4, 6], DType::U32).unwrap();
    let err = elementwise::scale(gpu, &ints, 1.0, &t)
        .err()
        .expect("u32 input")
        .to_string();
    assert!(err.contains("f32"), "{err}");
}

#[test]
fn an_output_bound_to_an_input_buffer_is_refused_before_recording() {
    // wgpu would panic when such a dispatch is recorded; Dispatch::new names both variables instead.
    let gpu = gpu();
    let x = Tensor::zeros(gpu, &[128], DType::F32).unwrap();
    let err = elementwise::axpy(gpu, 1.0, &x, &x)
        .err()
        .expect("x += x in place")
        .to_string();
    // (128 values take the vec4 form of axpy, whose bindings are y4 and a4.)
    assert!(
        err.contains("output `y4` shares a buffer with input `a4`"),
        "{err}"
    );
    let halves = (
        x.view(gpu, 0, &[64]).unwrap(),
        x.view(gpu, 64, &[64]).unwrap(),
    );
    assert!(
        elementwise::scale(gpu, &halves.0, 2.0, &halves.1).is_err(),
        "disjoint views of one buffer conflict too"
    );
}

/// Tensors are bound by WGSL variable name, and the params by the uniform's size as naga lays it out: a name the
/// shader does not declare, a used variable left unbound and params of the wrong size are refused, each naming what
/// is wrong.
#[test]
fn bindings_by_name_and_the_params_size_are_checked() {
    let gpu = gpu();
    let t = |_| Tensor::zeros(gpu, &[7], DType::F32).unwrap();
    let (x, o, z, y) = (t(0), t(1), t(2), t(3));
    // step.wgsl's `step` reads x, o, z and writes y; its Params are 16 four-byte fields (64 bytes).
    let kernel = gpu.kernel("step", "step").unwrap();
    let (params, grid) = ([0u32; 16], [1, 1, 1]);
    let all = [("x", &x), ("o", &o), ("z", &z), ("y", &y)];
    Dispatch::new(gpu, &kernel, &params, &all, grid).expect("the right names and size");
    let message = |r: diffuse::Result<Dispatch>| r.err().expect("must be refused").to_string();
    let undeclared = [all[0], all[1], all[2], ("why", &y)];
    let err = message(Dispatch::new(gpu, &kernel, &params, &undeclared, grid));
    assert!(
        err.contains("no variable `why`") && err.contains("declares"),
        "{err}"
    );
    let err = message(Dispatch::new(gpu, &kernel, &params, &all[..3], grid));
    assert!(err.contains("no tensor given for `y`"), "{err}");
    let err = message(Dispatch::new(gpu, &kernel, &[0u32; 12], &all, grid));
    assert!(err.contains("48 bytes") && err.contains("is 64"), "{err}");
}

#[test]
fn many_dispatches_record_into_one_submission_in_order() {
    // y starts at 1; 100 recorded axpy steps of +0.5·x (x = 1) must give 51 exactly (all values are exact in f32).
    let gpu = gpu();
    let n = 300;
    let x = Tensor::from_f32(gpu, &[n], &vec![1.0; n]).unwrap();
    let y = Tensor::from_f32(gpu, &[n], &vec![1.0; n]).unwrap();
    let step = elementwise::axpy(gpu, 0.5, &x, &y).unwrap();
    let mut rec = Recorder::new(gpu);
    rec.dispatch(std::iter::repeat_n(&step, 100));
    let copy = Tensor::zeros(gpu, &[n], DType::F32).unwrap();
    rec.copy(&y, &copy).unwrap();
    rec.submit();
    assert_eq!(copy.read_f32(gpu).unwrap(), vec![51.0; n]);
}
