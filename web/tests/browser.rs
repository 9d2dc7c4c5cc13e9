//! The web build in a real browser: headless Chromium's WebGPU (SwiftShader on a machine without a GPU), through
//! wasm-bindgen-test (`bash web/test`). What only a browser shows: Tint's verdict on every shader under WebGPU's
//! default limits (native wgpu does not check workgroup memory), the kernels' results through the browser's
//! compiler, and training, sampling and checkpoints through the async edges with no blocking wait anywhere.
//!
//! Tolerances are those of the native tests (tests/it), derived there: a k-term f32 sum in any order is within
//! γ_k·Σ|terms| of the exact one (`reference::gamma`), Σ|terms| being the reference run on |inputs|.
//!
//! SwiftShader is a fallback (CPU) adapter, so `Auto` takes the CPU-tuned variants there (register-blocked
//! matmul, Winograd convolutions); every kernel test also runs the portable path real GPUs take. Each test opens
//! its own device: Chrome gives one device per adapter, and a test's device goes with it.

#![cfg(target_arch = "wasm32")]

use diffuse::checkpoint::Checkpoint;
use diffuse::data::{Dataset, Fit};
use diffuse::diffusion::samplers::Prediction;
use diffuse::diffusion::{BetaSchedule, Schedule};
use diffuse::gpu::{shaders, Gpu, Tensor};
use diffuse::kernels::conv2d::{self, Conv2dOptions, Path as ConvPath};
use diffuse::kernels::matmul::{self as mm, MatmulOptions, Variant};
use diffuse::kernels::noise;
use diffuse::kernels::select::{ConvKernel, ConvPass};
use diffuse::model::Preset;
use diffuse::reference::conv2d::{self as conv_ref, abs, Conv2dShape};
use diffuse::reference::conv2d_winograd as winograd;
use diffuse::reference::matmul::{self as mm_ref, MatmulShape};
use diffuse::reference::{check_close, gamma, noise as noise_ref, to_f64, uniform};
use diffuse::sample::spec::{SamplerKind, SamplerSpec};
use diffuse::sample::{Sampler, UNetDenoiser};
use diffuse::train::{TrainSettings, Trainer};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> Gpu {
    match Gpu::open_async(None, 0).await {
        Ok(gpu) => gpu,
        Err(e) => panic!("{e} (Chromium needs --enable-unsafe-webgpu)"),
    }
}

/// Panics at the worst element unless |got − want| ≤ bound(i) everywhere (NaN fails), as tests/it does.
fn assert_close(what: &str, got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64) {
    if let Err(e) = check_close(got, want, bound) {
        panic!("{what}: {e}");
    }
}

fn tensor(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, shape, data).unwrap()
}

/// NaN-filled: a kernel must overwrite every element.
fn nan(gpu: &Gpu, shape: &[usize]) -> Tensor {
    tensor(gpu, shape, &vec![f32::NAN; shape.iter().product()])
}

#[wasm_bindgen(module = "/tests/tint.js")]
extern "C" {
    #[wasm_bindgen(js_name = compileAll, catch)]
    async fn compile_all(modules: JsValue) -> Result<JsValue, JsValue>;
}

/// The Tint gate: every composed module as the browser gets it, and a pipeline for every compute entry point
/// (naga's list), on devices with WebGPU's default limits. The one override without a default, WG (the
/// reductions' workgroup size), is set to 256, the most the kernels use and the default limit's maximum.
#[wasm_bindgen_test]
async fn tint_compiles_every_module_and_entry_point_under_default_limits() {
    let modules = js_sys::Array::new();
    let mut expected = 0;
    for (name, _) in shaders::SHADERS
        .iter()
        .filter(|(n, _)| !shaders::is_prelude(n))
    {
        let source =
            shaders::module_source(name, |n| shaders::source(n).map(str::to_string).ok_or(()))
                .unwrap();
        let module =
            naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
        let entries = js_sys::Array::new();
        for e in module
            .entry_points
            .iter()
            .filter(|e| e.stage == naga::ShaderStage::Compute)
        {
            entries.push(&e.name.as_str().into());
            expected += 1;
        }
        let constants = js_sys::Object::new();
        for (_, o) in module.overrides.iter().filter(|(_, o)| o.init.is_none()) {
            let id = o.name.clone().expect("overrides are named");
            assert_eq!(
                id, "WG",
                "{name}: override {id} has no default and the gate gives it none"
            );
            js_sys::Reflect::set(&constants, &id.into(), &256.into()).unwrap();
        }
        let m = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&m, &k.into(), v).unwrap();
        set("name", &(*name).into());
        set("source", &shaders::for_browser(name, &source).into());
        set("entries", &entries);
        set("constants", &constants);
        set("subgroups", &name.ends_with("_subgroup").into());
        modules.push(&m);
    }
    let result = compile_all(modules.into()).await.expect("the gate ran");
    let get = |k: &str| js_sys::Reflect::get(&result, &k.into()).unwrap();
    let errors: Vec<String> = js_sys::Array::from(&get("errors"))
        .iter()
        .map(|e| e.as_string().unwrap())
        .collect();
    assert!(errors.is_empty(), "Tint refused:\n{}", errors.join("\n"));
    assert_eq!(get("pipelines").as_f64(), Some(expected as f64));
    assert!(
        expected > 100,
        "only {expected} entry points found: the module list is wrong"
    );
}

/// The gate fails where it must: a module over WebGPU's default 16 KiB of workgroup memory (which native wgpu
/// does not check), a subgroup built-in without `enable subgroups;`, and an entry point that does not exist.
#[wasm_bindgen_test]
async fn tint_gate_reports_what_a_browser_refuses() {
    let module = |name: &str, source: &str, entry: &str, subgroups: bool| {
        let m = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&m, &k.into(), v).unwrap();
        set("name", &name.into());
        set("source", &source.into());
        set("entries", &js_sys::Array::of1(&entry.into()));
        set("constants", &js_sys::Object::new());
        set("subgroups", &subgroups.into());
        m
    };
    let over = "var<workgroup> big: array<f32, 8192>;\n\
        @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) { big[i] = 1.0; }";
    let undeclared = "@compute @workgroup_size(64) fn main() { _ = subgroupAdd(1.0); }";
    let fine = "@compute @workgroup_size(64) fn main() {}";
    let modules = js_sys::Array::of3(
        &module("over", over, "main", false),
        &module("undeclared", undeclared, "main", true),
        &module("fine", fine, "missing", false),
    );
    let result = compile_all(modules.into()).await.expect("the gate ran");
    let errors: Vec<String> =
        js_sys::Array::from(&js_sys::Reflect::get(&result, &"errors".into()).unwrap())
            .iter()
            .map(|e| e.as_string().unwrap())
            .collect();
    for name in ["over", "undeclared", "fine::missing"] {
        assert!(
            errors.iter().any(|e| e.starts_with(name)),
            "the gate let {name} through: {errors:?}"
        );
    }
}

/// C = A·B on the automatic variant and the tiled one, with a shape off every tile, against γ_k·Σ|a||b|.
#[wasm_bindgen_test]
async fn matmul_matches_reference_on_auto_and_portable() {
    let gpu = gpu().await;
    let s = MatmulShape {
        batch: 2,
        m: 37,
        n: 70,
        k: 19,
        trans_a: false,
        trans_b: true,
    };
    let (a, b) = (uniform(s.a_len(), 1), uniform(s.b_len(), 2));
    let at = tensor(&gpu, &[s.batch, s.m, s.k], &a);
    let bt = tensor(&gpu, &[s.batch, s.n, s.k], &b);
    let (a64, b64) = (to_f64(&a), to_f64(&b));
    let want = mm_ref::matmul(&a64, &b64, &s);
    let mag = mm_ref::matmul(&abs(&a64), &abs(&b64), &s);
    for variant in [Variant::Auto, Variant::Tiled] {
        let c = nan(&gpu, &[s.batch, s.m, s.n]);
        let opts = MatmulOptions {
            trans_b: true,
            variant,
            ..Default::default()
        };
        let d = mm::matmul(&gpu, &at, &bt, &c, opts).unwrap();
        gpu.run_async([&d]).await.unwrap();
        let got = c.read_f32_async(&gpu).await.unwrap();
        assert_close(&format!("{variant:?}"), &got, &want, |i| {
            gamma(s.k) * mag[i]
        });
    }
}

/// A 3×3 convolution (Winograd on `Auto` here, a CPU adapter), the portable direct kernel and the implicit GEMM (what
/// `Auto` takes on a GPU), with a bias, odd sizes and channels off the blocks; the bound follows the route each path
/// takes (tests/it/conv2d.rs).
#[wasm_bindgen_test]
async fn conv2d_forward_matches_reference_on_every_path() {
    let gpu = gpu().await;
    let s = Conv2dShape {
        n: 2,
        ci: 5,
        co: 9,
        h: 7,
        w: 6,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (x, w, b) = (
        uniform(s.x_len(), 3),
        uniform(s.w_len(), 4),
        uniform(s.co, 5),
    );
    let (x64, w64, b64) = (to_f64(&x), to_f64(&w), to_f64(&b));
    let want = conv_ref::forward(&s, &x64, &w64, Some(&b64));
    let x_shape = [s.n, s.ci, s.h, s.w];
    let (xt, wt, bt) = (
        tensor(&gpu, &x_shape, &x),
        tensor(&gpu, &[s.co, s.ci, s.k, s.k], &w),
        tensor(&gpu, &[s.co], &b),
    );
    for path in [ConvPath::Auto, ConvPath::Portable, ConvPath::Gemm] {
        let kernel = conv2d::choice(&gpu, path, ConvPass::Forward, &x_shape, &wt, 1).unwrap();
        let (mag, k) = match kernel {
            ConvKernel::Winograd => {
                let mag = winograd::forward(&s, &abs(&x64), &abs(&w64), Some(&abs(&b64)), true);
                (mag, s.ci + 25)
            }
            _ => (
                conv_ref::forward(&s, &abs(&x64), &abs(&w64), Some(&abs(&b64))),
                s.ci * 9 + 1,
            ),
        };
        let y = nan(&gpu, &[s.n, s.co, s.ho(), s.wo()]);
        let opts = Conv2dOptions {
            path,
            ..Default::default()
        };
        let d = conv2d::forward(&gpu, &xt, &wt, Some(&bt), &y, 1, opts).unwrap();
        gpu.run_async(&d).await.unwrap();
        let got = y.read_f32_async(&gpu).await.unwrap();
        assert_close(&format!("{path:?} ({kernel:?})"), &got, &want, |i| {
            gamma(k) * mag[i]
        });
    }
}

/// x_t = a·x₀ + b·ε and the v target, within γ₂ of the magnitudes of their two products.
#[wasm_bindgen_test]
async fn noise_forward_matches_reference() {
    let gpu = gpu().await;
    let schedule = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let rows = schedule.noise_table();
    let table = noise::upload_table(&gpu, &rows).unwrap();
    let (a, b): (Vec<f64>, Vec<f64>) = (
        rows[0].iter().map(|&v| v as f32 as f64).collect(),
        rows[1].iter().map(|&v| v as f32 as f64).collect(),
    );
    let (n, d) = (3, 785);
    let (x0, eps) = (uniform(n * d, 6), uniform(n * d, 7));
    let steps = [0u32, 999, 417];
    let x_t = nan(&gpu, &[n, d]);
    let target = nan(&gpu, &[n, d]);
    let dispatch = noise::noise_forward(
        &gpu,
        &tensor(&gpu, &[n, d], &x0),
        &tensor(&gpu, &[n, d], &eps),
        &Tensor::from_u32(&gpu, &[n], &steps).unwrap(),
        &table,
        Prediction::Velocity,
        &x_t,
        &target,
    )
    .unwrap();
    gpu.run_async([&dispatch]).await.unwrap();
    let (want_x, want_v) = noise_ref::noise_forward(
        &to_f64(&x0),
        &to_f64(&eps),
        &steps,
        &a,
        &b,
        Prediction::Velocity,
    );
    let bound = |i: usize, p: f32, q: f32| {
        let t = steps[i / d] as usize;
        gamma(2) * (a[t] * (p as f64).abs() + b[t] * (q as f64).abs())
    };
    let got = x_t.read_f32_async(&gpu).await.unwrap();
    assert_close("x_t", &got, &want_x, |i| bound(i, x0[i], eps[i]));
    let got = target.read_f32_async(&gpu).await.unwrap();
    assert_close("v", &got, &want_v, |i| bound(i, eps[i], x0[i]));
}

/// Three steps of `tiny` on the built-in digits, their losses read without blocking, and the checkpoint's bytes:
/// read back by the loader the desktop binary uses, they give the same checkpoint; a trainer resumed from them
/// starts where the first stopped.
#[wasm_bindgen_test]
async fn tiny_trains_three_steps_and_its_checkpoint_bytes_round_trip() {
    let gpu = gpu().await;
    let mut settings = TrainSettings::new(Preset::Tiny.config());
    settings.batch = 4;
    let fit = Fit {
        channels: 1,
        size: 28,
        background: [255; 3],
    };
    let data = Dataset::builtin(fit).unwrap();
    let build = || Trainer::new(&gpu, settings.clone(), &data, None);
    let mut trainer = gpu.build_async(build).await.unwrap();
    for _ in 0..3 {
        trainer.step_async(&gpu, true, false).await.unwrap();
    }
    let reports = trainer.wait_losses_async(&gpu).await.unwrap();
    assert_eq!(
        reports.iter().map(|r| r.step).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for r in &reports {
        assert!(
            r.loss.is_finite() && r.loss > 0.0,
            "step {}: loss {}",
            r.step,
            r.loss
        );
    }
    trainer.check_finite_async(&gpu).await.unwrap();
    let ckpt = trainer.checkpoint_async(&gpu).await.unwrap();
    assert_eq!(ckpt.step, 3);
    let bytes = ckpt.to_bytes().unwrap();
    let back =
        Checkpoint::from_bytes(&bytes, std::path::Path::new("checkpoint.safetensors")).unwrap();
    assert!(
        back == ckpt,
        "the checkpoint read back from its bytes differs"
    );
    let resumed = gpu
        .build_async(|| Trainer::new(&gpu, settings.clone(), &data, Some(&back)))
        .await
        .unwrap();
    assert_eq!(resumed.step, 3);
    let again = resumed.checkpoint_async(&gpu).await.unwrap();
    assert!(again.params == ckpt.params && again.ema == ckpt.ema);
}

/// A sampler stepped one submission at a time (the page's way) gives the samples of one whole run.
#[wasm_bindgen_test]
async fn sampling_step_by_step_equals_one_run() {
    let gpu = gpu().await;
    let config = Preset::Tiny.config();
    let ckpt_settings = TrainSettings::new(config.clone());
    let schedule = ckpt_settings.noise_schedule().unwrap();
    let plan = SamplerSpec::new(SamplerKind::Ddim, 4)
        .plan(&schedule)
        .unwrap();
    let layout = diffuse::model::ParamLayout::new(&config);
    let params = diffuse::model::ParamBuffers::upload(&gpu, &layout, &layout.init(11)).unwrap();
    let model =
        UNetDenoiser::new(&gpu, &config, &params, 2, None, 0.0, Prediction::Epsilon).unwrap();
    let shape = [2, 1, 28, 28];
    let whole = Sampler::new(&gpu, &plan, &model, &shape, 5).unwrap();
    let want = whole.run_async(&gpu).await.unwrap();
    let stepped = Sampler::new(&gpu, &plan, &model, &shape, 5).unwrap();
    assert_eq!(stepped.steps(), 4);
    for k in 0..stepped.steps() {
        stepped.submit_step(&gpu, k).unwrap();
    }
    let last = stepped.x_after(3).unwrap();
    let got = last.read_f32_async(&gpu).await.unwrap();
    assert!(got == want, "stepping gave other samples than one run");
    assert!(stepped.submit_step(&gpu, 4).is_err());
}
