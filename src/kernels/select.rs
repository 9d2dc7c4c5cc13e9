//! Which kernel variant runs where, for every family that has more than one: the requested path, the facts of the
//! shape that matter and the adapter go in, a named choice comes out (or a refusal of a path the adapter cannot
//! run). The wrappers record what these functions return and nothing else decides; each dispatch carries the
//! choice's name, which `diffuse bench --breakdown` prints. The same table in prose: docs/kernels.md.
//!
//! `Auto` on a CPU adapter (lavapipe, llvmpipe: SIMD across invocations, where per-lane loads dominate) takes the
//! subgroup, register-blocked and Winograd kernels, which were written for and measured there (docs/benchmarks.md).
//! On a GPU, `Auto` keeps GroupNorm, attention and matmul on their portable kernels until the others are measured
//! there, and runs every convolution on the tiled implicit GEMM written for GPUs (conv2d_gemm.wgsl). [`auto_table`] lists what `Auto` takes on
//! an adapter, and why; `diffuse info` prints it.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{Gpu, Tuning};

/// A CPU adapter (lavapipe, llvmpipe, WARP), where the `Auto` choices take the variants measured faster there; or
/// another adapter told to choose as one (`Gpu::tuning`; DIFFUSE_TUNING), and a CPU adapter told otherwise is not.
fn is_cpu(gpu: &Gpu) -> bool {
    gpu.tuning == Tuning::Cpu
}

/// Subgroup operations, with every subgroup at least `lanes` wide: what the kernels whose workgroup of 8 must be
/// one subgroup (conv2d, matmul, attention) need.
fn has_subgroups_of_at_least(gpu: &Gpu, lanes: u32) -> bool {
    gpu.caps.subgroups && gpu.info.subgroup_min_size >= lanes
}

/// A requested path for the families whose only variant is a subgroup one (GroupNorm's reductions, attention's
/// products); each re-exports it as its `Path`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubgroupPath {
    /// The subgroup kernels on CPU adapters that can run them, else the portable ones.
    #[default]
    Auto,
    /// The portable kernels (any adapter).
    Portable,
    /// The subgroup kernels; refused where the adapter cannot run them.
    Subgroup,
}

/// Whether `path` takes `family`'s subgroup kernels, given whether the adapter can run them (`available`, and
/// what they need, for the refusal).
fn subgroup_family(
    path: SubgroupPath,
    gpu: &Gpu,
    family: &'static str,
    available: bool,
    needs: &str,
) -> Result<bool> {
    Ok(match path {
        SubgroupPath::Portable => false,
        SubgroupPath::Auto => available && is_cpu(gpu),
        SubgroupPath::Subgroup => {
            ensure_shape!(
                available,
                family,
                "the subgroup kernels need {needs}; {} has {} (sizes {} to {}): use Path::Portable or Path::Auto",
                gpu.describe(),
                if gpu.caps.subgroups { "subgroups" } else { "no subgroups" },
                gpu.info.subgroup_min_size,
                gpu.info.subgroup_max_size
            );
            true
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// GroupNorm

/// How GroupNorm reduces a group's sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupNormKernel {
    /// shaders/group_norm.wgsl: a workgroup of 64 per group, reduced through workgroup memory.
    Workgroup,
    /// shaders/group_norm_subgroup.wgsl: a subgroup per group, subgroup sums, no barriers.
    Subgroup,
}

impl GroupNormKernel {
    pub fn name(self) -> &'static str {
        match self {
            GroupNormKernel::Workgroup => "group_norm: workgroup reduction",
            GroupNormKernel::Subgroup => "group_norm: subgroup reduction",
        }
    }
}

/// Subgroups of at most 64 lanes (a workgroup of 64 must be whole subgroups).
pub fn group_norm_subgroup_available(gpu: &Gpu) -> bool {
    gpu.caps.subgroups && (1..=64).contains(&gpu.info.subgroup_max_size)
}

pub fn group_norm(path: SubgroupPath, gpu: &Gpu) -> Result<GroupNormKernel> {
    let available = group_norm_subgroup_available(gpu);
    let subgroup = subgroup_family(
        path,
        gpu,
        "group_norm",
        available,
        "subgroups of at most 64 lanes",
    )?;
    Ok(if subgroup {
        GroupNormKernel::Subgroup
    } else {
        GroupNormKernel::Workgroup
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

/// Which kernels compute attention's five products (its row kernels are the same on every path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// attention_matmul: 64×64 tiles staged through workgroup memory.
    Tiled,
    /// attention_matmul_subgroup: 32×32 blocks in registers, A shared by subgroup broadcasts. On a GPU its
    /// workgroups of 8 would leave most of each SIMD unit idle, so `Auto` takes it on CPU adapters only.
    SubgroupBlocks,
}

impl AttentionKernel {
    pub fn name(self) -> &'static str {
        match self {
            AttentionKernel::Tiled => "attention: tiled products",
            AttentionKernel::SubgroupBlocks => "attention: subgroup products",
        }
    }
}

/// Subgroups of at least 8 invocations, so that a workgroup of 8 is one subgroup.
pub fn attention_subgroup_available(gpu: &Gpu) -> bool {
    has_subgroups_of_at_least(gpu, 8)
}

pub fn attention(path: SubgroupPath, gpu: &Gpu) -> Result<AttentionKernel> {
    let available = attention_subgroup_available(gpu);
    let subgroup = subgroup_family(
        path,
        gpu,
        "attention",
        available,
        "subgroups of at least 8 invocations",
    )?;
    Ok(if subgroup {
        AttentionKernel::SubgroupBlocks
    } else {
        AttentionKernel::Tiled
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Matmul

/// A requested matmul variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Register-blocked on CPU adapters where the shape allows it (subgroup form where available), else tiled.
    #[default]
    Auto,
    /// Vec4 register blocking without workgroup memory or subgroups; shapes that are not whole vec4s are refused.
    RegisterBlocked,
    /// [`MatmulVariant::RegisterBlocked`] with the A operand shared through subgroup broadcasts; refused where
    /// [`matmul_subgroup_available`] is false.
    RegisterBlockedSubgroup,
    /// Workgroup-memory tiling; any shape.
    Tiled,
}

/// The kernels that compute a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// matmul_nn/nt/tn/tt of shaders/matmul.wgsl.
    RegisterBlocked,
    /// The same entry points in shaders/matmul_subgroup.wgsl.
    RegisterBlockedSubgroup,
    /// matmul_tiled.
    Tiled,
}

impl MatmulKernel {
    pub fn name(self) -> &'static str {
        match self {
            MatmulKernel::RegisterBlocked => "matmul: register-blocked",
            MatmulKernel::RegisterBlockedSubgroup => "matmul: register-blocked, subgroup",
            MatmulKernel::Tiled => "matmul: tiled",
        }
    }
}

/// Subgroups of at least 8 invocations, so that the register-blocked workgroup of 8 is one subgroup.
pub fn matmul_subgroup_available(gpu: &Gpu) -> bool {
    has_subgroups_of_at_least(gpu, 8)
}

/// `vec4_ok`: K and N, and M where A is stored transposed, are multiples of 4 (what the register-blocked kernels
/// read). `op` names the product in a refusal.
pub fn matmul(
    variant: MatmulVariant,
    gpu: &Gpu,
    vec4_ok: bool,
    op: &'static str,
) -> Result<MatmulKernel> {
    let blocked = || {
        if matmul_subgroup_available(gpu) {
            MatmulKernel::RegisterBlockedSubgroup
        } else {
            MatmulKernel::RegisterBlocked
        }
    };
    let refuse_ragged = || {
        crate::Error::shape(
            op,
            "the register-blocked kernels need K and N, and M when A is transposed, to be multiples of 4; use \
             Variant::Tiled or Variant::Auto"
                .to_string(),
        )
    };
    Ok(match variant {
        MatmulVariant::Auto if vec4_ok && is_cpu(gpu) => blocked(),
        MatmulVariant::Auto | MatmulVariant::Tiled => MatmulKernel::Tiled,
        MatmulVariant::RegisterBlocked => vec4_ok
            .then_some(MatmulKernel::RegisterBlocked)
            .ok_or_else(refuse_ragged)?,
        MatmulVariant::RegisterBlockedSubgroup => {
            ensure_shape!(
                matmul_subgroup_available(gpu),
                op,
                "the subgroup kernels need subgroups of at least 8 invocations; {} has {} (minimum size {})",
                gpu.describe(),
                if gpu.caps.subgroups { "subgroups" } else { "no subgroups" },
                gpu.info.subgroup_min_size
            );
            vec4_ok
                .then_some(MatmulKernel::RegisterBlockedSubgroup)
                .ok_or_else(refuse_ragged)?
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Conv2d

/// A requested convolution path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvPath {
    /// What [`conv2d`] finds best for the shape on this adapter.
    #[default]
    Auto,
    /// Only the portable direct kernels and portable products (no subgroups, no Winograd): what WebGPU's baseline
    /// and wgpu's GL backend run.
    Portable,
    /// Winograd's F(4×4, 3×3) for every 3×3 stride-1 pass whose scratch fits, whatever the adapter and channels;
    /// every other pass as `Auto`.
    Winograd,
    /// The tiled implicit GEMM (shaders/conv2d_gemm.wgsl) for every pass, whatever the adapter: what `Auto` takes
    /// on a GPU, forced (the tests run it on CPU adapters).
    Gemm,
}

/// Which pass of a convolution is being chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPass {
    Forward,
    BackwardInput,
    /// The weight gradient; it follows its forward's route (same channels, same packed input).
    BackwardWeight,
}

/// The facts of one convolution that decide its kernels.
#[derive(Clone, Copy, Debug)]
pub struct ConvFacts {
    /// Kernel size and stride (3×3 stride 1 or 2, 1×1 stride 1).
    pub k: usize,
    pub stride: usize,
    /// Input and output channels of the convolution (the forward's Ci and Co, whatever the pass).
    pub ci: usize,
    pub co: usize,
    /// Input plane rows × columns.
    pub plane: usize,
    /// Winograd's transformed tiles and transformed weights each fit one storage binding of the adapter.
    pub winograd_fits: bool,
}

impl ConvFacts {
    /// The plane and both channel counts are multiples of 4: what a 1×1 convolution needs to be one product.
    fn whole_vec4s(&self) -> bool {
        self.plane.is_multiple_of(4) && self.ci.is_multiple_of(4) && self.co.is_multiple_of(4)
    }
}

/// The kernels of one convolution pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// A 1×1 convolution as one matrix product per image (the weight shared across the batch), no packing.
    Matmul(MatmulKernel),
    /// Packing passes and the direct register-blocked kernels of shaders/conv2d.wgsl, or of
    /// shaders/conv2d_subgroup.wgsl (shared loads broadcast across a subgroup).
    Direct { subgroup: bool },
    /// Packing, Winograd's F(4×4, 3×3) transforms (shaders/conv2d_winograd.wgsl) and 36 batched products (each
    /// chosen by [`matmul`] for its shape on the path's [`conv2d_matmul_variant`]).
    Winograd,
    /// One dispatch of shaders/conv2d_gemm.wgsl: 64×64 tiles of the pass's implicit GEMM staged through workgroup
    /// memory, operands gathered from the tensors (no packing); the weight gradient split over K in chunks.
    Gemm,
}

impl ConvKernel {
    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Matmul(_) => "conv2d: 1×1 as a product",
            ConvKernel::Direct { subgroup: false } => "conv2d: direct",
            ConvKernel::Direct { subgroup: true } => "conv2d: direct, subgroup loads",
            ConvKernel::Winograd => "conv2d: Winograd F(4×4,3×3)",
            ConvKernel::Gemm => "conv2d: tiled implicit GEMM",
        }
    }
}

/// The requested matmul variant of a convolution path: the portable path takes no subgroup kernels (and on a CPU
/// adapter the portable register-blocked ones, its fastest portable products).
pub fn conv2d_matmul_variant(path: ConvPath, gpu: &Gpu) -> MatmulVariant {
    match path {
        ConvPath::Auto | ConvPath::Winograd | ConvPath::Gemm => MatmulVariant::Auto,
        ConvPath::Portable if is_cpu(gpu) => MatmulVariant::RegisterBlocked,
        ConvPath::Portable => MatmulVariant::Tiled,
    }
}

/// The kernels of `pass` of the convolution `facts` on `path`.
///
/// - Every pass of every shape on the tiled implicit GEMM on `Gemm`, and on `Auto` on a GPU: one dispatch per pass
///   (no packing), workgroup-memory tiles, the weight gradient split over enough workgroups to fill a large GPU
///   (docs/kernels.md). The rules below are those of CPU adapters and of the other paths.
/// - 1×1 where planes and channel counts are whole vec4s: the product kernels (2-4× the rate of the direct
///   forward_k1 on lavapipe, no packing). The weight gradient goes there only where the product is
///   register-blocked (they alone sum over the batch); otherwise, and for other 1×1 shapes, the direct kernels.
/// - 3×3 stride 1 through Winograd on `Winograd` wherever its scratch fits; on `Auto` on CPU adapters where both
///   channel counts are multiples of 4 and at least 64 (with fewer channels its transforms cost what the 4× fewer
///   multiplies save: docs/benchmarks.md). The backward input reads Co and writes Ci, so the same rule holds.
/// - Everything else on the direct kernels, with subgroup loads on `Auto` and `Winograd` on CPU adapters with
///   subgroups of at least 8 lanes (on a GPU the subgroup loaders wait until measured there).
pub fn conv2d(path: ConvPath, gpu: &Gpu, pass: ConvPass, facts: &ConvFacts) -> Result<ConvKernel> {
    if path == ConvPath::Gemm || (path == ConvPath::Auto && !is_cpu(gpu)) {
        return Ok(ConvKernel::Gemm);
    }
    if facts.k == 1 && facts.whole_vec4s() {
        let kernel = matmul(conv2d_matmul_variant(path, gpu), gpu, true, "conv2d")?;
        if pass != ConvPass::BackwardWeight || kernel != MatmulKernel::Tiled {
            return Ok(ConvKernel::Matmul(kernel));
        }
    }
    if facts.k == 3 && facts.stride == 1 && facts.winograd_fits {
        let takes = match path {
            ConvPath::Winograd => true,
            ConvPath::Portable | ConvPath::Gemm => false,
            ConvPath::Auto => {
                is_cpu(gpu)
                    && facts.ci.is_multiple_of(4)
                    && facts.co.is_multiple_of(4)
                    && facts.ci.min(facts.co) >= 64
            }
        };
        if takes {
            return Ok(ConvKernel::Winograd);
        }
    }
    Ok(ConvKernel::Direct {
        subgroup: path != ConvPath::Portable && is_cpu(gpu) && has_subgroups_of_at_least(gpu, 8),
    })
}

/// About how many workgroups the direct weight gradient aims for when it splits its sum over output tiles into
/// chunks: few on a CPU adapter, where each workgroup has a fixed cost and a handful of threads share them (8
/// measured fastest on lavapipe); on a GPU a thousand or so, what a large one holds in flight (an H100: 132
/// multiprocessors × 16 workgroups of 64), where 64 left most of it idle (docs/kernels.md). The chunks' partial
/// sums take at most 1024·16·64·9 f32s (38 MB), whatever the layer: a workgroup covers 16 output channels × up to
/// 64 input channels × 9 taps.
pub fn conv2d_weight_grad_workgroups(gpu: &Gpu) -> usize {
    if is_cpu(gpu) {
        8
    } else {
        1024
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What `Auto` takes on an adapter (`diffuse info`)

/// One row of [`auto_table`]: what `Auto` runs for a family in one case, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// "group_norm", "attention", "matmul" or "conv2d".
    pub family: &'static str,
    /// The shapes the row covers and, for conv2d, after ": ", its passes ("all passes" or a list).
    pub case: String,
    /// The chosen kernel's `name()`; for the weight gradient's split, the workgroup count.
    pub variant: String,
    /// The facts that decided it, in a few words.
    pub why: String,
}

/// A convolution standing for one rule of [`conv2d`], with the facts its wrappers would pass for it.
#[derive(Clone, Copy, Debug)]
pub struct ConvCase {
    pub what: &'static str,
    pub facts: ConvFacts,
}

/// `winograd_fits`: Winograd's scratch fits a binding, as the wrappers find it for 3×3 stride 1 (else false).
const fn conv_case(
    what: &'static str,
    (k, stride): (usize, usize),
    (ci, co): (usize, usize),
    side: usize,
    winograd_fits: bool,
) -> ConvCase {
    let plane = side * side;
    let facts = ConvFacts {
        k,
        stride,
        ci,
        co,
        plane,
        winograd_fits,
    };
    ConvCase { what, facts }
}

/// One case per rule of [`conv2d`]. Planes are square, so a test can build the shape back from `plane`; the
/// scratch that does not fit stands for a batch too large for one binding.
pub const CONV_CASES: [ConvCase; 6] = [
    conv_case("1×1, plane and channels in 4s", (1, 1), (64, 64), 16, false),
    conv_case("1×1, 7×7 plane", (1, 1), (64, 64), 7, false),
    conv_case("3×3 s1, channels ≥ 64 in 4s", (3, 1), (64, 128), 14, true),
    conv_case("3×3 s1, fewer channels", (3, 1), (32, 32), 28, true),
    conv_case("3×3 s1, scratch too big", (3, 1), (256, 256), 64, false),
    conv_case("3×3 s2", (3, 2), (64, 64), 28, false),
];

/// The passes a convolution row may cover, as its case names them.
pub const CONV_PASSES: [(&str, ConvPass); 3] = [
    ("forward", ConvPass::Forward),
    ("backward input", ConvPass::BackwardInput),
    ("weight gradient", ConvPass::BackwardWeight),
];

/// Whether K and N (and M where A is transposed) are multiples of 4, the one shape fact [`matmul`] reads.
pub const MATMUL_CASES: [(&str, bool); 2] =
    [("K, N (M if Aᵀ) in 4s", true), ("other shapes", false)];

/// What `Auto` takes on `gpu` for every family, shape case and convolution pass. Each variant comes from the
/// selection function its wrapper calls, so the table cannot disagree with what runs.
pub fn auto_table(gpu: &Gpu) -> Result<Vec<Choice>> {
    let group_norm_kernel = group_norm(SubgroupPath::Auto, gpu)?;
    let attention_kernel = attention(SubgroupPath::Auto, gpu)?;
    let mut rows = vec![
        subgroup_row(
            gpu,
            "group_norm",
            group_norm_kernel.name(),
            group_norm_kernel == GroupNormKernel::Subgroup,
            (
                group_norm_subgroup_available(gpu),
                "subgroups of ≤ 64 lanes",
            ),
        ),
        subgroup_row(
            gpu,
            "attention",
            attention_kernel.name(),
            attention_kernel == AttentionKernel::SubgroupBlocks,
            (attention_subgroup_available(gpu), "subgroups of ≥ 8 lanes"),
        ),
    ];
    for (case, vec4_ok) in MATMUL_CASES {
        rows.push(matmul_row(gpu, case, vec4_ok)?);
    }
    for case in CONV_CASES {
        rows.extend(conv2d_rows(gpu, &case)?);
    }
    rows.push(weight_grad_row(gpu));
    Ok(rows)
}

fn adapter_kind(gpu: &Gpu) -> &'static str {
    if is_cpu(gpu) {
        "CPU adapter"
    } else {
        "GPU"
    }
}

/// A family whose only variant is a subgroup one; `(available, needs)` as for [`subgroup_family`].
fn subgroup_row(
    gpu: &Gpu,
    family: &'static str,
    name: &str,
    subgroup: bool,
    (available, needs): (bool, &str),
) -> Choice {
    let why = if subgroup {
        format!("{} with {needs}", adapter_kind(gpu))
    } else if !available {
        format!("no {needs}")
    } else {
        "GPU: subgroup kernel not measured there".to_string()
    };
    Choice {
        family,
        case: "any shape".to_string(),
        variant: name.to_string(),
        why,
    }
}

fn matmul_row(gpu: &Gpu, case: &str, vec4_ok: bool) -> Result<Choice> {
    let kernel = matmul(MatmulVariant::Auto, gpu, vec4_ok, "matmul")?;
    Ok(Choice {
        family: "matmul",
        case: case.to_string(),
        variant: kernel.name().to_string(),
        why: matmul_why(vec4_ok, kernel).to_string(),
    })
}

fn matmul_why(vec4_ok: bool, kernel: MatmulKernel) -> &'static str {
    match kernel {
        MatmulKernel::RegisterBlockedSubgroup => "CPU adapter, subgroups of ≥ 8 lanes share A",
        MatmulKernel::RegisterBlocked => "CPU adapter without subgroups of ≥ 8 lanes",
        MatmulKernel::Tiled if !vec4_ok => "register blocking reads vec4s",
        MatmulKernel::Tiled => "GPU: register blocking not measured there",
    }
}

/// The rows of one convolution case: its passes grouped by the kernels [`conv2d`] chooses for them.
fn conv2d_rows(gpu: &Gpu, case: &ConvCase) -> Result<Vec<Choice>> {
    let mut groups: Vec<(ConvKernel, ConvPass, Vec<&str>)> = Vec::new();
    for (name, pass) in CONV_PASSES {
        let kernel = conv2d(ConvPath::Auto, gpu, pass, &case.facts)?;
        match groups.iter_mut().find(|g| g.0 == kernel) {
            Some(group) => group.2.push(name),
            None => groups.push((kernel, pass, vec![name])),
        }
    }
    let rows = groups.into_iter().map(|(kernel, first_pass, passes)| {
        let passes = if passes.len() == CONV_PASSES.len() {
            "all passes".to_string()
        } else {
            passes.join(", ")
        };
        Choice {
            family: "conv2d",
            case: format!("{}: {passes}", case.what),
            variant: conv2d_variant(kernel),
            why: conv2d_why(gpu, first_pass, &case.facts, kernel),
        }
    });
    Ok(rows.collect())
}

/// A 1×1 product also names the matmul kernels it runs on.
fn conv2d_variant(kernel: ConvKernel) -> String {
    match kernel {
        ConvKernel::Matmul(product) => format!("{}, {}", kernel.name(), product.name()),
        _ => kernel.name().to_string(),
    }
}

fn conv2d_why(gpu: &Gpu, pass: ConvPass, facts: &ConvFacts, kernel: ConvKernel) -> String {
    match kernel {
        ConvKernel::Matmul(_) => "1×1 in vec4s: a product per image, no packing".to_string(),
        ConvKernel::Winograd => format!(
            "{}, channels ≥ 64 in 4s: 4× fewer multiplies",
            adapter_kind(gpu)
        ),
        ConvKernel::Gemm => "GPU: one tiled dispatch per pass, no packing".to_string(),
        ConvKernel::Direct { subgroup } => {
            let loads = if subgroup {
                "subgroups of ≥ 8 lanes"
            } else if has_subgroups_of_at_least(gpu, 8) {
                "GPU: subgroup loaders not measured there"
            } else {
                "no subgroups of ≥ 8 lanes"
            };
            format!("{}; {loads}", why_direct(gpu, pass, facts))
        }
    }
}

/// Why a convolution falls to the direct kernels.
fn why_direct(gpu: &Gpu, pass: ConvPass, facts: &ConvFacts) -> &'static str {
    match (facts.k, facts.stride) {
        (1, _) if facts.whole_vec4s() && pass == ConvPass::BackwardWeight => {
            "tiled products do not sum over the batch"
        }
        (1, _) => "1×1 not in vec4s",
        (3, 1) if !facts.winograd_fits => "Winograd's scratch exceeds a binding",
        (3, 1) if !is_cpu(gpu) => "GPU: Winograd not measured there",
        (3, 1) => "Winograd pays only from 64 channels in 4s",
        _ => "3×3 stride 2 has no other kernels",
    }
}

fn weight_grad_row(gpu: &Gpu) -> Choice {
    let why = if is_cpu(gpu) {
        "CPU adapter: each workgroup has a fixed cost"
    } else {
        "GPU: needs many workgroups in flight"
    };
    Choice {
        family: "conv2d",
        case: "weight gradient's split".to_string(),
        variant: format!("about {} workgroups", conv2d_weight_grad_workgroups(gpu)),
        why: why.to_string(),
    }
}
