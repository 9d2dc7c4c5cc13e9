// batch.wgsl — assembling a training batch on the GPU from 8-bit images (the whole dataset, or the rows the host
// uploaded for this step).
//   gather_rows:      x0[n, e] = unit[byte(index[n]·D + e)]   (index drawn by random.wgsl's fill_uniform_int, or
//                     the rows of an upload in order); unit is the host's table of b/127.5 − 1, so the batch is
//                     bit-identical to the CPU's whatever the GPU's division
//   gather_rows_flip: the same, each image mirrored left–right where u[n] < 0.5 (data augmentation): element
//                     (c, h, w) of x0[n] reads (c, h, W − 1 − w) of its data row
//   gather_labels:    label[n] = (u[n] < p_uncond) ? null_class : labels[index[n]]   (classifier-free guidance
//                     training: a fraction p_uncond of the batch sees the "no class" label)
//   fill_u32:         label[n] = value (a sampling step's timestep for the whole batch, or its class labels)
// Buffers: data [⌈M·D/4⌉] u32, the M·D bytes packed little-endian, 4 to a word (any D: rows need not start on a
// word); unit [256] f32; index [N] u32, x0 [N, D] f32; labels [M] u32, u [N] f32 uniforms, label [N] u32.
// An index ≥ M is clamped to M − 1 (indices come from the GPU, where the host cannot check them).
// Dispatch: gather_rows and gather_rows_flip: 256 invocations per workgroup, one element each, 2-D grid
// (wg.y·num_workgroups.x + wg.x); gather_labels and fill_u32: 64 per workgroup, one sample each, 1-D grid.
// Nothing is saved for backward (the data is not differentiated). Wrapper: src/kernels/batch.rs

struct Params {
    len: u32,         // elements written (N·D for rows, N for labels)
    d: u32,           // elements per sample
    rows: u32,        // M, samples in the dataset
    null_class: u32,  // the "no class" label
    p_uncond: f32,    // probability of dropping a label
    value: u32,       // fill_u32
    width: u32,       // gather_rows_flip: W, the image width
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> x0: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<u32>;
@group(0) @binding(5) var<storage, read> u: array<f32>;
@group(0) @binding(6) var<storage, read_write> label: array<u32>;
@group(0) @binding(7) var<storage, read> unit: array<f32>;

// The training value of byte `at` of the packed data (at < M·D < 2³², checked by the wrapper).
fn pixel(at: u32) -> f32 {
    return unit[(data[at >> 2u] >> ((at & 3u) * 8u)) & 0xFFu];
}

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let n = i / p.d;
    let row = min(index[n], p.rows - 1u);
    x0[i] = pixel(row * p.d + (i - n * p.d));
}

@compute @workgroup_size(256)
fn gather_rows_flip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let n = i / p.d;
    let row = min(index[n], p.rows - 1u);
    let e = i - n * p.d;
    let w = e % p.width;
    let source = select(e, e - w + (p.width - 1u - w), u[n] < 0.5);
    x0[i] = pixel(row * p.d + source);
}

@compute @workgroup_size(64)
fn gather_labels(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= p.len) { return; }
    let row = min(index[n], p.rows - 1u);
    label[n] = select(labels[row], p.null_class, u[n] < p.p_uncond);
}

@compute @workgroup_size(64)
fn fill_u32(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.len) { return; }
    label[gid.x] = p.value;
}
