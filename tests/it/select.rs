//! `select::auto_table`, the table `diffuse info` prints, against the choices the wrappers make on this adapter:
//! the products a real matmul records, the kernels conv2d picks for a real shape of each case (its Winograd
//! scratch measured as the wrapper measures it), and the selection functions GroupNorm and attention call.

use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::conv2d::{self, Path};
use diffuse::kernels::matmul::{self, MatmulOptions};
use diffuse::kernels::select::{self, Choice, ConvCase, ConvKernel};
use diffuse::kernels::SubgroupPath;

use crate::common::{gpu, gpu_path};
use diffuse::gpu::{Gpu, Tuning};

/// The variant of the one row of `family` and `case`.
fn variant<'a>(table: &'a [Choice], family: &str, case: &str) -> &'a str {
    let rows: Vec<&Choice> = table
        .iter()
        .filter(|r| r.family == family && r.case == case)
        .collect();
    assert_eq!(rows.len(), 1, "{family} / {case}: {table:#?}");
    &rows[0].variant
}

/// The conv2d rows covering `pass` of `case` ("what: all passes" or "what: pass, pass").
fn covering<'a>(table: &'a [Choice], case: &ConvCase, pass: &str) -> Vec<&'a Choice> {
    let covers = |r: &&Choice| {
        let passes = r
            .case
            .strip_prefix(case.what)
            .and_then(|p| p.strip_prefix(": "));
        r.family == "conv2d"
            && passes.is_some_and(|p| p == "all passes" || p.split(", ").any(|q| q == pass))
    };
    table.iter().filter(covers).collect()
}

/// A real convolution for each case, chosen here rather than read from the case's facts, so that facts which
/// misdescribe their case fail: (x [N, Ci, H, W], Co, k, stride).
fn real_shape(what: &str) -> ([usize; 4], usize, usize, usize) {
    match what {
        "1×1, plane and channels in 4s" => ([2, 64, 16, 16], 64, 1, 1),
        "1×1, 7×7 plane" => ([2, 64, 7, 7], 64, 1, 1),
        "3×3 s1, channels ≥ 64 in 4s" => ([2, 64, 14, 14], 128, 3, 1),
        "3×3 s1, fewer channels" => ([2, 32, 28, 28], 32, 3, 1),
        // A batch whose input alone exceeds a binding (Winograd's tiles take 36/16 of it).
        "3×3 s1, scratch too big" => {
            let limits = &gpu().limits;
            let limit = limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size);
            (
                [limit as usize / (256 * 64 * 64 * 4) + 1, 256, 64, 64],
                256,
                3,
                1,
            )
        }
        "3×3 s2" => ([2, 64, 28, 28], 64, 3, 2),
        _ => panic!("no real shape for the case {what:?}: add one"),
    }
}

/// What a real product of `m×k · k×n` records.
fn matmul_choice(gpu: &Gpu, m: usize, k: usize, n: usize) -> Option<&'static str> {
    let t = |shape: &[usize]| Tensor::zeros(gpu, shape, DType::F32).unwrap();
    let (a, b, c) = (t(&[m, k]), t(&[k, n]), t(&[m, n]));
    matmul::matmul(gpu, &a, &b, &c, MatmulOptions::default())
        .unwrap()
        .choice
}

/// On this adapter as it is, and told to choose as a GPU (so that a CPU adapter checks the GPU rules too).
#[test]
fn the_auto_table_names_what_the_wrappers_choose_on_this_adapter() {
    for gpu in [gpu(), gpu_path()] {
        check_auto_table(gpu);
    }
}

fn check_auto_table(gpu: &Gpu) {
    let table = select::auto_table(gpu).unwrap();
    let group_norm = select::group_norm(SubgroupPath::Auto, gpu).unwrap();
    assert_eq!(
        variant(&table, "group_norm", "any shape"),
        group_norm.name()
    );
    let attention = select::attention(SubgroupPath::Auto, gpu).unwrap();
    assert_eq!(variant(&table, "attention", "any shape"), attention.name());
    let [(vec4s, _), (ragged, _)] = select::MATMUL_CASES;
    assert_eq!(
        Some(variant(&table, "matmul", vec4s)),
        matmul_choice(gpu, 8, 12, 16)
    );
    assert_eq!(
        Some(variant(&table, "matmul", ragged)),
        matmul_choice(gpu, 5, 7, 6)
    );

    for case in select::CONV_CASES {
        let (x, co, k, stride) = real_shape(case.what);
        let w = Tensor::zeros(gpu, &[co, x[1], k, k], DType::F32).unwrap();
        for (name, pass) in select::CONV_PASSES {
            let real = conv2d::choice(gpu, Path::Auto, pass, &x, &w, stride).unwrap();
            let rows = covering(&table, &case, name);
            assert_eq!(rows.len(), 1, "{} / {name}: {table:#?}", case.what);
            let shown = &rows[0].variant;
            let product = match real {
                ConvKernel::Matmul(m) => format!(", {}", m.name()),
                _ => String::new(),
            };
            assert_eq!(
                *shown,
                format!("{}{product}", real.name()),
                "{} / {name}",
                case.what
            );
        }
    }
    let split = variant(&table, "conv2d", "weight gradient's split");
    let workgroups = select::conv2d_weight_grad_workgroups(gpu);
    assert_eq!(split, format!("about {workgroups} workgroups"));
}

/// The cases reach the rules that differ by adapter: Winograd on CPU adapters only, every pass on the implicit
/// GEMM exactly on GPUs (here: this adapter, and this adapter told to choose as a GPU).
#[test]
fn the_auto_table_shows_each_rule_this_adapter_has() {
    for gpu in [gpu(), gpu_path()] {
        let table = select::auto_table(gpu).unwrap();
        let cpu = gpu.tuning == Tuning::Cpu;
        let shows = |name: &str| table.iter().any(|r| r.variant.starts_with(name));
        assert_eq!(shows(ConvKernel::Winograd.name()), cpu, "{table:#?}");
        let conv = table
            .iter()
            .filter(|r| r.family == "conv2d" && r.case.contains(": "));
        let all_gemm = conv.clone().all(|r| r.variant == ConvKernel::Gemm.name());
        assert_eq!(all_gemm, !cpu, "{table:#?}");
        assert_eq!(
            conv.clone().any(|r| r.variant == ConvKernel::Gemm.name()),
            !cpu
        );
        for family in ["group_norm", "attention", "matmul", "conv2d"] {
            assert!(
                table.iter().any(|r| r.family == family),
                "{family}: {table:#?}"
            );
        }
        assert!(table.iter().all(|r| !r.why.is_empty()), "{table:#?}");
    }
}
