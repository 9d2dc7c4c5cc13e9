//! Tensors and dispatch recording: round trips, views, refusals, and many dispatches in one submission.

use crate::common;

use common::{gpu, uniform};
use diffuse::gpu::{DType, Dispatch, Gpu, Recorder, Tensor};
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
    // step.wgsl's `step` reads x, o, z and writes y; its Params are 24 four-byte fields (96 bytes).
    let kernel = gpu.kernel("step", "step").unwrap();
    let (params, grid) = ([0u32; 24], [1, 1, 1]);
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
    assert!(err.contains("48 bytes") && err.contains("is 96"), "{err}");
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

/// A device of the test's own: these tests provoke errors, which must not reach the shared test device.
fn own_gpu() -> Gpu {
    Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_buffer_over_the_devices_limit_is_an_error_naming_its_size_not_a_panic() {
    let gpu = own_gpu();
    // wgpu refuses a buffer over max_buffer_size before allocating anything, so this is safe on any machine; the
    // refusal is a validation error caught by the same scope that catches an out-of-memory one.
    let too_big = gpu.limits.max_buffer_size.saturating_add(4);
    let err = gpu
        .create_buffer("test buffer", &[7, 9], too_big, wgpu::BufferUsages::STORAGE)
        .expect_err("over max_buffer_size")
        .to_string();
    assert!(
        err.contains("test buffer [7, 9]") && err.contains(&format!("{too_big} bytes")),
        "{err}"
    );
    // Caught by the scope, so nothing reached the device's handler for the next wait to report.
    gpu.wait().expect("no error left over");
    // An absurd tensor is refused by its size, naming its shape and bytes, and is not counted as allocated.
    let err = Tensor::zeros(&gpu, &[1 << 20, 1 << 9], DType::F32)
        .expect_err("2 GiB tensor")
        .to_string();
    assert!(
        err.contains("[1048576, 512]") && err.contains("2147483648 bytes"),
        "{err}"
    );
    assert_eq!(gpu.allocated_bytes(), 0);
    let t = Tensor::from_f32(&gpu, &[3], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(t.read_f32(&gpu).unwrap(), [1.0, 2.0, 3.0]);
    assert_eq!(gpu.allocated_bytes(), 12);
}

#[test]
fn an_error_outside_any_scope_comes_back_from_the_next_wait_not_as_a_panic() {
    // Out of memory cannot be provoked safely on a CPU device (lavapipe would take the host's memory first), so
    // this provokes what the same handler receives: a validation error no scope catches. With wgpu's default
    // handler the create_buffer calls below would panic.
    let gpu = own_gpu();
    gpu.wait().expect("a fresh device has no error");
    let invalid = wgpu::BufferDescriptor {
        label: Some("mappable storage"),
        size: 16,
        // MAP_READ combines only with COPY_DST unless MAPPABLE_PRIMARY_BUFFERS is enabled (it never is).
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    };
    let _first = gpu.device.create_buffer(&invalid);
    let _second = gpu.device.create_buffer(&invalid);
    let err = gpu.wait().expect_err("the recorded error").to_string();
    assert!(
        err.contains("mappable storage") && err.contains("1 later error followed"),
        "{err}"
    );
    gpu.wait().expect("reported once, then forgotten");
}

#[test]
fn out_of_memory_names_the_shape_the_bytes_what_is_held_and_the_fix() {
    let err = diffuse::Error::OutOfMemory {
        what: "tensor".into(),
        shape: vec![64, 128, 32, 32],
        bytes: 33_554_432,
        allocated: 3 << 30,
    }
    .to_string();
    assert!(
        err.contains("tensor [64, 128, 32, 32]")
            && err.contains("33554432 bytes (32.00 MiB)")
            && err.contains("3.00 GiB already allocated")
            && err.contains("--batch"),
        "{err}"
    );
}

#[test]
fn a_build_scoped_as_a_browser_scopes_it_returns_what_it_built_or_the_gpus_error() {
    // What a web page does around building a trainer or a sampler: one scope over the whole build, popped
    // without blocking (native builds are checked per allocation as well).
    let gpu = gpu();
    let built = diffuse::gpu::future::block_on(
        gpu.build_async(|| Tensor::from_f32(gpu, &[3], &[1.0, 2.0, 3.0])),
    );
    assert_eq!(built.unwrap().read_f32(gpu).unwrap(), [1.0, 2.0, 3.0]);
    // A buffer past the device's limit, made behind the per-allocation checks' back: only the outer scope
    // can see the device refuse it.
    let too_big = gpu.limits.max_buffer_size + 4;
    let refused = diffuse::gpu::future::block_on(gpu.build_async(|| {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("too big"),
            size: too_big,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(buffer)
    }));
    let err = refused.expect_err("the device's refusal was lost");
    assert!(!err.to_string().is_empty());
    // Errors of the build itself come back as they are.
    let failed =
        diffuse::gpu::future::block_on(gpu.build_async(|| Tensor::from_f32(gpu, &[2], &[1.0])));
    assert!(failed.unwrap_err().to_string().contains("[2]"));
}
