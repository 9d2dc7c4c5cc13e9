// attention_common.wgsl — what attention.wgsl and attention_subgroup.wgsl share: Params and the bindings. Not a
// module of its own (no entry points): src/gpu/shaders.rs prepends it to each of the two files, so read the header
// of attention.wgsl first.

struct Params {
    // attention_matmul: element (r, s) of operand X lives at x_base + n·x_batch + h·x_head + r·x_rows + s·x_cols.
    m: u32,
    n: u32,
    k: u32,
    heads: u32,
    a_base: u32,
    a_batch: u32,
    a_head: u32,
    a_rows: u32,
    a_cols: u32,
    b_base: u32,
    b_batch: u32,
    b_head: u32,
    b_rows: u32,
    b_cols: u32,
    c_base: u32,
    c_batch: u32,
    c_head: u32,
    c_rows: u32,
    c_cols: u32,
    alpha: f32,
    // The row kernels: rows = N·heads·L, len = L, head_dim = d, channels = C (heads is shared with the matmul).
    rows: u32,
    len: u32,
    head_dim: u32,
    channels: u32,
    row_lanes: u32, // invocations per row: 8 (8 rows per workgroup) where L ≤ 64, else 64 (one row)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// attention_matmul
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// The row kernels.
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;   // S in; P out
@group(0) @binding(5) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> d_scores: array<f32>; // d_P in; d_S out
@group(0) @binding(8) var<storage, read> d_out: array<f32>;
@group(0) @binding(9) var<storage, read> out: array<f32>;
