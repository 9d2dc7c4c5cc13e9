//! Which kernel variant runs where, for every family that has more than one: the requested path, the facts of the
//! shape that matter and the adapter go in, a named choice comes out (or a refusal of a path the adapter cannot
//! run). The wrappers record what these functions return and nothing else decides; each dispatch carries the
//! choice's name, which `diffuse bench --breakdown` prints. The same table in prose: docs/kernels.md.
//!
//! The rule of thumb behind every `Auto`: the subgroup, register-blocked and Winograd kernels were written for
//! and measured on CPU adapters (lavapipe, llvmpipe: SIMD across invocations, where per-lane loads dominate);
//! GPUs keep the portable kernels until those variants are measured there (docs/benchmarks.md).

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::Gpu;

/// A CPU adapter (lavapipe, llvmpipe, WARP), where the `Auto` choices take the variants measured faster there.
fn is_cpu(gpu: &Gpu) -> bool {
    gpu.info.device_type == wgpu::DeviceType::Cpu
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
}

impl ConvKernel {
    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Matmul(_) => "conv2d: 1×1 as a product",
            ConvKernel::Direct { subgroup: false } => "conv2d: direct",
            ConvKernel::Direct { subgroup: true } => "conv2d: direct, subgroup loads",
            ConvKernel::Winograd => "conv2d: Winograd F(4×4,3×3)",
        }
    }
}

/// The requested matmul variant of a convolution path: the portable path takes no subgroup kernels (and on a CPU
/// adapter the portable register-blocked ones, its fastest portable products).
pub fn conv2d_matmul_variant(path: ConvPath, gpu: &Gpu) -> MatmulVariant {
    match path {
        ConvPath::Auto | ConvPath::Winograd => MatmulVariant::Auto,
        ConvPath::Portable if is_cpu(gpu) => MatmulVariant::RegisterBlocked,
        ConvPath::Portable => MatmulVariant::Tiled,
    }
}

/// The kernels of `pass` of the convolution `facts` on `path`.
///
/// - 1×1 where planes and channel counts are whole vec4s: the product kernels (2-4× the rate of the direct
///   forward_k1 on lavapipe, no packing). The weight gradient goes there only where the product is
///   register-blocked (they alone sum over the batch); otherwise, and for other 1×1 shapes, the direct kernels.
/// - 3×3 stride 1 through Winograd on `Winograd` wherever its scratch fits; on `Auto` on CPU adapters where both
///   channel counts are multiples of 4 and at least 64 (with fewer channels its transforms cost what the 4× fewer
///   multiplies save: docs/benchmarks.md). The backward input reads Co and writes Ci, so the same rule holds.
/// - Everything else on the direct kernels, with subgroup loads where the path is not `Portable` and the adapter
///   has subgroups of at least 8.
pub fn conv2d(path: ConvPath, gpu: &Gpu, pass: ConvPass, facts: &ConvFacts) -> Result<ConvKernel> {
    let whole_vec4s =
        facts.plane.is_multiple_of(4) && facts.ci.is_multiple_of(4) && facts.co.is_multiple_of(4);
    if facts.k == 1 && whole_vec4s {
        let kernel = matmul(conv2d_matmul_variant(path, gpu), gpu, true, "conv2d")?;
        if pass != ConvPass::BackwardWeight || kernel != MatmulKernel::Tiled {
            return Ok(ConvKernel::Matmul(kernel));
        }
    }
    if facts.k == 3 && facts.stride == 1 && facts.winograd_fits {
        let takes = match path {
            ConvPath::Winograd => true,
            ConvPath::Portable => false,
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
        subgroup: path != ConvPath::Portable && has_subgroups_of_at_least(gpu, 8),
    })
}

/// About how many workgroups the direct weight gradient aims for when it splits its sum over output tiles into
/// chunks: few on a CPU adapter, where each workgroup has a fixed cost and a handful of threads share them (8
/// measured fastest on lavapipe), more on a GPU, which needs many in flight.
pub fn conv2d_weight_grad_workgroups(gpu: &Gpu) -> usize {
    if is_cpu(gpu) {
        8
    } else {
        64
    }
}
