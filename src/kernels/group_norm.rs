//! Wrapper of shaders/group_norm.wgsl and shaders/group_norm_subgroup.wgsl: GroupNorm over NCHW f32 with affine
//! γ, β (PyTorch semantics), optionally fused with the SiLU that follows it in every U-Net block. Reference:
//! src/reference/group_norm.rs.

use std::sync::Arc;

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid_1d, DType, Dispatch, Gpu, Kernel, Tensor};
use crate::kernels::select::{self, GroupNormKernel};
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "group_norm";
const SHADER_SUBGROUP: &str = "group_norm_subgroup";

/// Invocations per workgroup of the per-group kernels; [`slots_per_channel`] of them share each channel. The
/// summation order built on this (shaders/group_norm.wgsl's header) is what the tests derive their bounds from.
pub const WORKGROUP_SIZE: usize = 64;

/// How many invocations of a per-group workgroup share one channel when a group has `channels_per_group`
/// channels: max(1, 64 / (C/G)); the workgroup handles 64 / that many channels at a time.
pub fn slots_per_channel(channels_per_group: usize) -> usize {
    (WORKGROUP_SIZE / channels_per_group.max(1)).max(1)
}

/// Which kernels reduce a group's sums: see [`select::group_norm`].
pub use crate::kernels::select::SubgroupPath as Path;

/// The settings of one GroupNorm layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    /// G: the channels split into G groups of C/G consecutive channels.
    pub groups: usize,
    /// Added to the variance under the square root.
    pub eps: f32,
    /// y = silu(GroupNorm(x)) instead of GroupNorm(x).
    pub silu: bool,
}

impl GroupNorm {
    /// PyTorch's `nn.GroupNorm(groups, C)`: eps = 1e-5, no SiLU.
    pub fn new(groups: usize) -> Self {
        GroupNorm {
            groups,
            eps: 1e-5,
            silu: false,
        }
    }

    /// The same layer followed by SiLU, fused into one pass.
    pub fn with_silu(self) -> Self {
        GroupNorm { silu: true, ..self }
    }

    /// The same layer with another eps.
    pub fn with_eps(self, eps: f32) -> Self {
        GroupNorm { eps, ..self }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    group_len: u32,
    eps: f32,
    silu: u32,
    spc: u32,
}

/// Checks x [N, C, H, W], gamma and beta [C], the settings, and mean, rstd [N, G]; returns the shader's params.
fn params(
    op: &'static str,
    gn: &GroupNorm,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
) -> Result<Params> {
    check_f32(op, &[x, gamma, beta, mean, rstd])?;
    ensure_shape!(
        x.shape().len() == 4,
        op,
        "expected x as [N, C, H, W], got shape {:?}",
        x.shape()
    );
    let (n, c, hw) = (x.shape()[0], x.shape()[1], x.shape()[2] * x.shape()[3]);
    let g = gn.groups;
    ensure_shape!(g >= 1, op, "num_groups must be at least 1, got 0");
    ensure_shape!(
        c.is_multiple_of(g),
        op,
        "num_groups ({g}) must divide num_channels ({c})"
    );
    ensure_shape!(
        gn.eps.is_finite() && gn.eps >= 0.0,
        op,
        "eps must be finite and ≥ 0, got {}",
        gn.eps
    );
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        ensure_shape!(
            t.shape() == [c],
            op,
            "{name} must have shape [{c}] for x {:?}, got {:?}",
            x.shape(),
            t.shape()
        );
    }
    for (name, t) in [("mean", mean), ("rstd", rstd)] {
        ensure_shape!(
            t.shape() == [n, g],
            op,
            "{name} must have shape [{n}, {g}] (N, num_groups) for x {:?}, got {:?}",
            x.shape(),
            t.shape()
        );
    }
    Ok(Params {
        n: n as u32,
        c: c as u32,
        hw: hw as u32,
        groups: g as u32,
        group_len: (c / g * hw) as u32,
        eps: gn.eps,
        silu: gn.silu as u32,
        spc: slots_per_channel(c / g) as u32,
    })
}

/// y = GroupNorm(x)·γ + β (then SiLU if `gn.silu`); saves the per-(n, g) mean and rstd = 1/√(σ² + eps) for the
/// backward. x, y: [N, C, H, W]; gamma, beta: [C]; mean, rstd: [N, G].
#[allow(clippy::too_many_arguments)] // one argument per bound tensor reads best at the call site
pub fn group_norm_forward(
    gpu: &Gpu,
    gn: &GroupNorm,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    y: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
) -> Result<Dispatch> {
    group_norm_forward_via(Path::Auto, gpu, gn, x, gamma, beta, y, mean, rstd)
}

/// [`group_norm_forward`] on the kernels of `path`.
#[allow(clippy::too_many_arguments)] // one argument per bound tensor reads best at the call site
pub fn group_norm_forward_via(
    path: Path,
    gpu: &Gpu,
    gn: &GroupNorm,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    y: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "group_norm_forward";
    let params = params(OP, gn, x, gamma, beta, mean, rstd)?;
    check_f32(OP, &[y])?;
    same_shape(OP, x, y)?;
    let (entries, x_at, y_at) = if params.hw % 4 == 0 {
        (
            [
                "group_norm_forward_vec4",
                "group_norm_forward_subgroup_vec4",
            ],
            "x4",
            "y4",
        )
    } else {
        (
            ["group_norm_forward", "group_norm_forward_subgroup"],
            "x",
            "y",
        )
    };
    let (kernel, grid, choice) = per_group_kernel(gpu, path, entries, &params)?;
    let tensors = [
        (x_at, x),
        ("gamma", gamma),
        ("beta", beta),
        (y_at, y),
        ("mean_out", mean),
        ("rstd_out", rstd),
    ];
    Ok(Dispatch::new(gpu, &kernel, &params, &tensors, grid)?.chosen(choice.name()))
}

/// The per-group kernel of `path`, one of `[portable, subgroup]` entry points, its grid and the choice: a workgroup per
/// group, or on the subgroup path a subgroup per group (64 / the largest subgroup size groups per workgroup; a
/// workgroup whose subgroups are smaller runs some past the last group, which store nothing).
fn per_group_kernel(
    gpu: &Gpu,
    path: Path,
    [portable, subgroup]: [&'static str; 2],
    params: &Params,
) -> Result<(Arc<Kernel>, [u32; 3], GroupNormKernel)> {
    let groups = params.n * params.groups;
    let choice = select::group_norm(path, gpu)?;
    match choice {
        GroupNormKernel::Subgroup => {
            let kernel = gpu.kernel(SHADER_SUBGROUP, subgroup)?;
            let per_workgroup = kernel.invocations() as u32 / gpu.info.subgroup_max_size;
            Ok((kernel, grid_1d(groups.div_ceil(per_workgroup)), choice))
        }
        GroupNormKernel::Workgroup => {
            // The shader writes its workgroup memory before reading it (see its header).
            let kernel = gpu.kernel_uninit_workgroup(SHADER, portable, &[])?;
            kernel.check_invocations(WORKGROUP_SIZE)?;
            Ok((kernel, grid_1d(groups), choice))
        }
    }
}

/// The gradients of [`group_norm_forward`] from d_y, with the same `gn`, the forward's input x, its saved mean and
/// rstd, and gamma, beta (for the fused SiLU the pre-activation is recomputed from them, not stored). Overwrites
/// d_x [N, C, H, W], d_gamma and d_beta [C]. Two dispatches, in order: per-group d_x together with per-(n, c)
/// partial sums into a scratch tensor [2, N, C] allocated here, then their deterministic sum over n.
#[allow(clippy::too_many_arguments)] // one argument per bound tensor reads best at the call site
pub fn group_norm_backward(
    gpu: &Gpu,
    gn: &GroupNorm,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    d_y: &Tensor,
    d_x: &Tensor,
    d_gamma: &Tensor,
    d_beta: &Tensor,
) -> Result<Vec<Dispatch>> {
    group_norm_backward_via(
        Path::Auto,
        gpu,
        gn,
        x,
        gamma,
        beta,
        mean,
        rstd,
        d_y,
        d_x,
        d_gamma,
        d_beta,
    )
}

/// [`group_norm_backward`] on the kernels of `path`.
#[allow(clippy::too_many_arguments)] // one argument per bound tensor reads best at the call site
pub fn group_norm_backward_via(
    path: Path,
    gpu: &Gpu,
    gn: &GroupNorm,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    d_y: &Tensor,
    d_x: &Tensor,
    d_gamma: &Tensor,
    d_beta: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "group_norm_backward";
    let params = params(OP, gn, x, gamma, beta, mean, rstd)?;
    check_f32(OP, &[d_y, d_x, d_gamma, d_beta])?;
    same_shape(OP, x, d_y)?;
    same_shape(OP, x, d_x)?;
    same_shape(OP, gamma, d_gamma)?;
    same_shape(OP, gamma, d_beta)?;
    let partial = Tensor::zeros(gpu, &[2, params.n as usize, params.c as usize], DType::F32)?;
    // Whole quads as vec4 where H·W is a multiple of 4 (x4, d_y4, d_x4 view the same tensors as vec4).
    let (entries, [x_at, d_y_at, d_x_at]) = if params.hw % 4 == 0 {
        (
            [
                "group_norm_backward_data_vec4",
                "group_norm_backward_data_subgroup_vec4",
            ],
            ["x4", "d_y4", "d_x4"],
        )
    } else {
        (
            [
                "group_norm_backward_data",
                "group_norm_backward_data_subgroup",
            ],
            ["x", "d_y", "d_x"],
        )
    };
    let (data, grid, choice) = per_group_kernel(gpu, path, entries, &params)?;
    let tensors = [
        (x_at, x),
        ("gamma", gamma),
        ("beta", beta),
        ("mean", mean),
        ("rstd", rstd),
        (d_y_at, d_y),
        (d_x_at, d_x),
        ("partial", &partial),
    ];
    let data = Dispatch::new(gpu, &data, &params, &tensors, grid)?.chosen(choice.name());
    let sums = gpu.kernel(SHADER, "group_norm_backward_params")?;
    let tensors = [
        ("partial_in", &partial),
        ("d_gamma", d_gamma),
        ("d_beta", d_beta),
    ];
    let sums = Dispatch::new(
        gpu,
        &sums,
        &params,
        &tensors,
        [sums.workgroups_for(params.c as usize), 1, 1],
    )?;
    Ok(vec![data, sums])
}
