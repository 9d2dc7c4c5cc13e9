// conv2d_winograd.wgsl — the transforms of a 3×3, stride-1, padding-1 convolution by Winograd's minimal filtering
// F(4×4, 3×3) (Lavin & Gray 2016): each 4×4 output tile is Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A, with d_c
// the tile's 6×6 input patch and g_c the 3×3 weights of channel c. For each of the 36 positions ξ the Σ_c is a
// matrix product over channels, which the matmul kernels compute. Forward (and backward input: the forward of d_y
// with weight_transform's `transpose`, flipped and transposed weights; forward M = Co, K = Ci, else swapped):
//   weight_transform  w [Co, Ci, 3, 3] → u [36, M, K]   input_transform  xp → v [36, K, Tp]
//   matmul (batch 36) u[ξ]·v[ξ] → z [36, M, Tp]          output_transform(_vec2, _vec4)  z (+ bias) → y [N, M, H, W]
// Weight gradient, the same chain backwards (derivation at "Weight gradient" below): input_transform, then
//   grad_output_transform d_y → dz [36, M, Tp], matmul_nt dz[ξ]·v[ξ]ᵀ → du [36, M, K], weight_grad_transform → d_w.
// xp [N, K, xp_h, 4·xp_w4] is conv2d.wgsl's packed input (1-pixel zero border): tile (i, j) reads rows 4i..4i+5,
// columns 4j..4j+5. Tile t = (n·row_blocks + i)·col_blocks + j, counted up to Tp (a multiple of 4): v's padding
// columns repeat tile T − 1, dz's are zero, z's are never written out.
// Numerics: transform entries up to 8 (and 1/6, 1/24) make intermediates larger than the result; the tests bound
// the error by the same algorithm on |inputs| with |matrices| (reference: src/reference/conv2d_winograd.rs).
// Dispatch: 64 invocations per workgroup on a 2-D grid (grid_1d); one invocation per (m, k) (weight_transform,
// weight_grad_transform) or per channel and 4 consecutive tiles (the others: v, z and dz move as vec4s).
// Saved for backward: x, whose packed xp the weight gradient reads (kept by the forward or packed again).
// Wrapper: src/kernels/conv2d/winograd.rs (when it runs: src/kernels/select.rs).

struct Params {
    n: u32,           // batch
    in_c: u32,        // K: input channels of the pass
    out_c: u32,       // M: output channels of the pass
    h: u32,           // output rows, columns (= input rows, columns)
    w: u32,
    row_blocks: u32,  // ⌈h / 4⌉
    col_blocks: u32,  // ⌈w / 4⌉
    tiles_pad: u32,   // Tp: the tile count rounded up to a multiple of 4 (the matmul kernels read vec4s)
    xp_h: u32,        // rows of a packed input plane
    xp_w4: u32,       // vec4s per packed input row
    flags: u32,       // bit 0: add bias; bit 1: y += … instead of y = …
    transpose: u32,   // weight_transform: 1 = backward-input weights (swap Co and Ci, flip the taps)
    len: u32,         // invocations with work
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read> xp4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> xp2: array<vec2<f32>>;
// Transformed tiles as vec4s of 4 tiles: V (input_transform) or dZ (grad_output_transform).
@group(0) @binding(5) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;
// y as f32s, vec4s (planes whose width is a multiple of 4) and vec2s (even width): an entry point binds one view.
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(10) var<storage, read_write> yv: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> yh: array<vec2<f32>>;

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 64u + lid;
}

// Every small matrix below lives in named vector fields, never in an array indexed at run time: llvmpipe puts
// such arrays in per-workgroup scratch memory, which costs more than the whole transform.

// Six values: a row of a packed input patch.
struct Six {
    a: vec4<f32>,
    b: vec2<f32>,
}

// Six vec4s: one row or column of a transformed tile, each entry holding the same position of 4 tiles (the
// input and output transforms work on 4 consecutive tiles at once, so that V and Z move as vec4s).
struct Six4 {
    v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32>,
}

// Four vec4s: a row or column of output tiles, 4 tiles at once.
struct Four4 {
    v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
}

// Bᵀ d for a column d of six entries (interpolation points 0, −1, 1, −2, 2 and ∞).
fn bt(d: Six4) -> Six4 {
    return Six4(4.0 * d.v0 - 5.0 * d.v2 + d.v4,
                -4.0 * (d.v1 + d.v2) + d.v3 + d.v4,
                4.0 * (d.v1 - d.v2) - d.v3 + d.v4,
                2.0 * (d.v3 - d.v1) + d.v4 - d.v2,
                2.0 * (d.v1 - d.v3) + d.v4 - d.v2,
                4.0 * d.v1 - 5.0 * d.v3 + d.v5);
}

// Aᵀ z for a column z of six entries: four outputs.
fn at(z: Six4) -> Four4 {
    let s12 = z.v1 + z.v2; let d12 = z.v1 - z.v2; let s34 = z.v3 + z.v4; let d34 = z.v3 - z.v4;
    return Four4(z.v0 + s12 + s34, d12 + 2.0 * d34, s12 + 4.0 * s34, d12 + 8.0 * d34 + z.v5);
}

// G g for a column g of three taps (each a vec3 here: three columns at once): six rows.
struct Six3 {
    v0: vec3<f32>, v1: vec3<f32>, v2: vec3<f32>, v3: vec3<f32>, v4: vec3<f32>, v5: vec3<f32>,
}

fn gt(g0: vec3<f32>, g1: vec3<f32>, g2: vec3<f32>) -> Six3 {
    let s = g0 + g2;
    return Six3(0.25 * g0,
                -(s + g1) / 6.0,
                -(s - g1) / 6.0,
                (g0 + 2.0 * g1 + 4.0 * g2) / 24.0,
                (g0 - 2.0 * g1 + 4.0 * g2) / 24.0,
                g2);
}

// Row a of U = (G g) Gᵀ: G applied along row `r` of G g, stored at positions ξ = 6a + b.
fn store_u_row(o: u32, plane: u32, r: vec3<f32>) {
    let e = gt(vec3(r.x, 0.0, 0.0), vec3(r.y, 0.0, 0.0), vec3(r.z, 0.0, 0.0));
    u[o] = e.v0.x;
    u[o + plane] = e.v1.x;
    u[o + 2u * plane] = e.v2.x;
    u[o + 3u * plane] = e.v3.x;
    u[o + 4u * plane] = e.v4.x;
    u[o + 5u * plane] = e.v5.x;
}

// U = G g Gᵀ for one (m, k): g is read from w (flipped and transposed for the backward input), U stored at
// u[(ξ·M + m)·K + k] for ξ = 6·row + column.
@compute @workgroup_size(64)
fn weight_transform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let k = i % p.in_c;
    let m = i / p.in_c;
    // g0, g1, g2: the rows of the 3×3 kernel.
    var g0: vec3<f32>; var g1: vec3<f32>; var g2: vec3<f32>;
    if (p.transpose == 1u) {
        // Backward input: g[r][c] = w[k, m, 2 − r, 2 − c] (w is [K, M, 3, 3] here: K = Co, M = Ci).
        let base = (k * p.out_c + m) * 9u;
        g0 = vec3(w[base + 8u], w[base + 7u], w[base + 6u]);
        g1 = vec3(w[base + 5u], w[base + 4u], w[base + 3u]);
        g2 = vec3(w[base + 2u], w[base + 1u], w[base]);
    } else {
        let base = (m * p.in_c + k) * 9u;
        g0 = vec3(w[base], w[base + 1u], w[base + 2u]);
        g1 = vec3(w[base + 3u], w[base + 4u], w[base + 5u]);
        g2 = vec3(w[base + 6u], w[base + 7u], w[base + 8u]);
    }
    // The rows of G g, then G along each.
    let r = gt(g0, g1, g2);
    let plane = p.out_c * p.in_c;
    let o = m * p.in_c + k;
    store_u_row(o, plane, r.v0);
    store_u_row(o + 6u * plane, plane, r.v1);
    store_u_row(o + 12u * plane, plane, r.v2);
    store_u_row(o + 18u * plane, plane, r.v3);
    store_u_row(o + 24u * plane, plane, r.v4);
    store_u_row(o + 30u * plane, plane, r.v5);
}

// The 6×6 input patch of one tile, row by row.
struct Patch {
    r0: Six, r1: Six, r2: Six, r3: Six, r4: Six, r5: Six,
}

// Tile t of input channel k: packed rows 4i..4i+5, columns 4j..4j+5 (a vec4 and the next vec2 of each row).
fn load_patch(k: u32, t: u32) -> Patch {
    let j = t % p.col_blocks;
    let i = (t / p.col_blocks) % p.row_blocks;
    let n = t / (p.row_blocks * p.col_blocks);
    let s = p.xp_w4;
    let q = ((n * p.in_c + k) * p.xp_h + 4u * i) * s + j;
    return Patch(Six(xp4[q], xp2[2u * q + 2u]),
                 Six(xp4[q + s], xp2[2u * (q + s) + 2u]),
                 Six(xp4[q + 2u * s], xp2[2u * (q + 2u * s) + 2u]),
                 Six(xp4[q + 3u * s], xp2[2u * (q + 3u * s) + 2u]),
                 Six(xp4[q + 4u * s], xp2[2u * (q + 4u * s) + 2u]),
                 Six(xp4[q + 5u * s], xp2[2u * (q + 5u * s) + 2u]));
}

// Row r of 4 tiles' patches as six vec4s (entry c holds column c of each tile), with Bᵀ applied along it:
// row r of d B.
fn row_db(a: Six, b: Six, c: Six, d: Six) -> Six4 {
    return bt(Six4(vec4(a.a.x, b.a.x, c.a.x, d.a.x), vec4(a.a.y, b.a.y, c.a.y, d.a.y),
                   vec4(a.a.z, b.a.z, c.a.z, d.a.z), vec4(a.a.w, b.a.w, c.a.w, d.a.w),
                   vec4(a.b.x, b.b.x, c.b.x, d.b.x), vec4(a.b.y, b.b.y, c.b.y, d.b.y)));
}

// Column c of a transformed 6×6 tile for 4 tiles (e: its six rows), stored at positions ξ = 6a + c.
fn store_column(o: u32, plane: u32, e: Six4) {
    v4[o] = e.v0;
    v4[o + 6u * plane] = e.v1;
    v4[o + 12u * plane] = e.v2;
    v4[o + 18u * plane] = e.v3;
    v4[o + 24u * plane] = e.v4;
    v4[o + 30u * plane] = e.v5;
}

// V = Bᵀ d B for one input channel k and 4 consecutive tiles 4·t4 .. 4·t4 + 3, stored at v[(ξ·K + k)·Tp + t]
// as one vec4 per position.
@compute @workgroup_size(64)
fn input_transform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let quads = p.tiles_pad / 4u;
    let t4 = i % quads;
    let k = i / quads;
    let tiles = p.n * p.row_blocks * p.col_blocks;
    let t = 4u * t4 + vec4(0u, 1u, 2u, 3u);
    // Padding columns (tiles past the last) repeat the last tile: output_transform never writes their results.
    let last = tiles - 1u;
    let a = load_patch(k, min(t.x, last));
    let b = load_patch(k, min(t.y, last));
    let c = load_patch(k, min(t.z, last));
    let d = load_patch(k, min(t.w, last));
    let e0 = row_db(a.r0, b.r0, c.r0, d.r0);
    let e1 = row_db(a.r1, b.r1, c.r1, d.r1);
    let e2 = row_db(a.r2, b.r2, c.r2, d.r2);
    let e3 = row_db(a.r3, b.r3, c.r3, d.r3);
    let e4 = row_db(a.r4, b.r4, c.r4, d.r4);
    let e5 = row_db(a.r5, b.r5, c.r5, d.r5);
    let plane = p.in_c * quads;
    let o = k * quads + t4;
    // Column c of V = Bᵀ (d B).
    store_column(o, plane, bt(Six4(e0.v0, e1.v0, e2.v0, e3.v0, e4.v0, e5.v0)));
    store_column(o + plane, plane, bt(Six4(e0.v1, e1.v1, e2.v1, e3.v1, e4.v1, e5.v1)));
    store_column(o + 2u * plane, plane, bt(Six4(e0.v2, e1.v2, e2.v2, e3.v2, e4.v2, e5.v2)));
    store_column(o + 3u * plane, plane, bt(Six4(e0.v3, e1.v3, e2.v3, e3.v3, e4.v3, e5.v3)));
    store_column(o + 4u * plane, plane, bt(Six4(e0.v4, e1.v4, e2.v4, e3.v4, e4.v4, e5.v4)));
    store_column(o + 5u * plane, plane, bt(Six4(e0.v5, e1.v5, e2.v5, e3.v5, e4.v5, e5.v5)));
}

// Row a of Z (positions 6a .. 6a + 5) for 4 tiles, with Aᵀ applied along it: row a of Z A.
fn row_za(o: u32, plane: u32) -> Four4 {
    return at(Six4(z4[o], z4[o + plane], z4[o + 2u * plane], z4[o + 3u * plane], z4[o + 4u * plane],
                   z4[o + 5u * plane]));
}

// The 4×4 outputs of 4 tiles: column j of Aᵀ (Z A), for j = 0..3, each entry holding the 4 tiles.
struct Out4 {
    c0: Four4, c1: Four4, c2: Four4, c3: Four4,
}

// Where tile t's output row r starts in its plane of y (channel m of the output it belongs to), and whether
// it is inside the image.
struct OutRow {
    ok: bool,
    at: u32,
}

fn out_row(m: u32, t: u32, r: u32) -> OutRow {
    let j = t % p.col_blocks;
    let i = (t / p.col_blocks) % p.row_blocks;
    let n = t / (p.row_blocks * p.col_blocks);
    let row = 4u * i + r;
    let ok = t < p.n * p.row_blocks * p.col_blocks && row < p.h;
    return OutRow(ok, ((n * p.out_c + m) * p.h + row) * p.w + 4u * j);
}

fn put(at: u32, x: f32) {
    if ((p.flags & FLAG_ACCUMULATE) != 0u) { y[at] += x; } else { y[at] = x; }
}

// One output row of one tile (4 columns, those past the image's edge dropped), value by value.
fn write_row(m: u32, t: u32, r: u32, val: vec4<f32>) {
    let o = out_row(m, t, r);
    if (!o.ok) { return; }
    let cols = p.w - 4u * (t % p.col_blocks);
    put(o.at, val.x);
    if (cols > 1u) { put(o.at + 1u, val.y); }
    if (cols > 2u) { put(o.at + 2u, val.z); }
    if (cols > 3u) { put(o.at + 3u, val.w); }
}

// The same for planes of even width: the row's columns as aligned vec2s (a row starts at an even index), the
// second one dropped past the image's edge.
fn put2(at: u32, x: vec2<f32>) {
    if ((p.flags & FLAG_ACCUMULATE) != 0u) { yh[at] += x; } else { yh[at] = x; }
}

fn write_row_vec2(m: u32, t: u32, r: u32, val: vec4<f32>) {
    let o = out_row(m, t, r);
    if (!o.ok) { return; }
    let cols = p.w - 4u * (t % p.col_blocks);
    put2(o.at / 2u, val.xy);
    if (cols > 2u) { put2(o.at / 2u + 1u, val.zw); }
}

// The same for planes whose width is a multiple of 4: the row is one aligned vec4.
fn write_row_vec4(m: u32, t: u32, r: u32, val: vec4<f32>) {
    let o = out_row(m, t, r);
    if (!o.ok) { return; }
    let at = o.at / 4u;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) { yv[at] += val; } else { yv[at] = val; }
}

// Y = Aᵀ Z A for output channel m and 4 consecutive tiles 4·t4 .. 4·t4 + 3, plus the bias.
fn output_tiles(i: u32) -> Out4 {
    let quads = p.tiles_pad / 4u;
    let t4 = i % quads;
    let m = i / quads;
    let plane = p.out_c * quads;
    let o = m * quads + t4;
    let r0 = row_za(o, plane);
    let r1 = row_za(o + 6u * plane, plane);
    let r2 = row_za(o + 12u * plane, plane);
    let r3 = row_za(o + 18u * plane, plane);
    let r4 = row_za(o + 24u * plane, plane);
    let r5 = row_za(o + 30u * plane, plane);
    var b = vec4(0.0);
    if ((p.flags & FLAG_BIAS) != 0u) { b = vec4(bias[m]); }
    let c0 = at(Six4(r0.v0, r1.v0, r2.v0, r3.v0, r4.v0, r5.v0));
    let c1 = at(Six4(r0.v1, r1.v1, r2.v1, r3.v1, r4.v1, r5.v1));
    let c2 = at(Six4(r0.v2, r1.v2, r2.v2, r3.v2, r4.v2, r5.v2));
    let c3 = at(Six4(r0.v3, r1.v3, r2.v3, r3.v3, r4.v3, r5.v3));
    return Out4(Four4(c0.v0 + b, c0.v1 + b, c0.v2 + b, c0.v3 + b),
                Four4(c1.v0 + b, c1.v1 + b, c1.v2 + b, c1.v3 + b),
                Four4(c2.v0 + b, c2.v1 + b, c2.v2 + b, c2.v3 + b),
                Four4(c3.v0 + b, c3.v1 + b, c3.v2 + b, c3.v3 + b));
}

// The output rows of the 4 tiles (each a Four4 of 4 rows × 4 columns), from their transposed form in
// output_tiles, where the 4 tiles sit in the x, y, z, w lanes of every entry.
struct Tiles4 {
    a: Four4, b: Four4, c: Four4, d: Four4,
}

fn tiles_of(i: u32) -> Tiles4 {
    let y = output_tiles(i);
    let a = y.c0; let b = y.c1; let c = y.c2; let d = y.c3;
    return Tiles4(
        Four4(vec4(a.v0.x, b.v0.x, c.v0.x, d.v0.x), vec4(a.v1.x, b.v1.x, c.v1.x, d.v1.x),
              vec4(a.v2.x, b.v2.x, c.v2.x, d.v2.x), vec4(a.v3.x, b.v3.x, c.v3.x, d.v3.x)),
        Four4(vec4(a.v0.y, b.v0.y, c.v0.y, d.v0.y), vec4(a.v1.y, b.v1.y, c.v1.y, d.v1.y),
              vec4(a.v2.y, b.v2.y, c.v2.y, d.v2.y), vec4(a.v3.y, b.v3.y, c.v3.y, d.v3.y)),
        Four4(vec4(a.v0.z, b.v0.z, c.v0.z, d.v0.z), vec4(a.v1.z, b.v1.z, c.v1.z, d.v1.z),
              vec4(a.v2.z, b.v2.z, c.v2.z, d.v2.z), vec4(a.v3.z, b.v3.z, c.v3.z, d.v3.z)),
        Four4(vec4(a.v0.w, b.v0.w, c.v0.w, d.v0.w), vec4(a.v1.w, b.v1.w, c.v1.w, d.v1.w),
              vec4(a.v2.w, b.v2.w, c.v2.w, d.v2.w), vec4(a.v3.w, b.v3.w, c.v3.w, d.v3.w)));
}

fn write_tile(m: u32, t: u32, rows: Four4) {
    write_row(m, t, 0u, rows.v0);
    write_row(m, t, 1u, rows.v1);
    write_row(m, t, 2u, rows.v2);
    write_row(m, t, 3u, rows.v3);
}

fn write_tile_vec2(m: u32, t: u32, rows: Four4) {
    write_row_vec2(m, t, 0u, rows.v0);
    write_row_vec2(m, t, 1u, rows.v1);
    write_row_vec2(m, t, 2u, rows.v2);
    write_row_vec2(m, t, 3u, rows.v3);
}

fn write_tile_vec4(m: u32, t: u32, rows: Four4) {
    write_row_vec4(m, t, 0u, rows.v0);
    write_row_vec4(m, t, 1u, rows.v1);
    write_row_vec4(m, t, 2u, rows.v2);
    write_row_vec4(m, t, 3u, rows.v3);
}

// Y for 4 tiles of one output channel, written value by value (any plane width).
@compute @workgroup_size(64)
fn output_transform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let quads = p.tiles_pad / 4u;
    let m = i / quads;
    let t = 4u * (i % quads);
    let y = tiles_of(i);
    write_tile(m, t, y.a);
    write_tile(m, t + 1u, y.b);
    write_tile(m, t + 2u, y.c);
    write_tile(m, t + 3u, y.d);
}

// Y for 4 tiles of one output channel, each tile row two aligned vec2 stores (plane width even).
@compute @workgroup_size(64)
fn output_transform_vec2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let quads = p.tiles_pad / 4u;
    let m = i / quads;
    let t = 4u * (i % quads);
    let y = tiles_of(i);
    write_tile_vec2(m, t, y.a);
    write_tile_vec2(m, t + 1u, y.b);
    write_tile_vec2(m, t + 2u, y.c);
    write_tile_vec2(m, t + 3u, y.d);
}

// Y for 4 tiles of one output channel, each tile row one aligned vec4 store (plane width a multiple of 4).
@compute @workgroup_size(64)
fn output_transform_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let quads = p.tiles_pad / 4u;
    let m = i / quads;
    let t = 4u * (i % quads);
    let y = tiles_of(i);
    write_tile_vec4(m, t, y.a);
    write_tile_vec4(m, t + 1u, y.b);
    write_tile_vec4(m, t + 2u, y.c);
    write_tile_vec4(m, t + 3u, y.d);
}

// ---------------------------------------------------------------------------------------------------------
// Weight gradient. With Y = Aᵀ Z A and Z = Σ_k U ⊙ V as above, the chain rule through these linear maps gives
//     dZ = A dY Aᵀ (per tile),   dU[ξ] = Σ_t dZ[ξ][m, t] · V[ξ][k, t],   d_w = Gᵀ dU G,
// so the weight gradient is the same kind of chain run backwards (src/kernels/conv2d/winograd.rs):
//     input_transform       xp (the forward's packed input) → V [36, K, Tp]
//     grad_output_transform d_y                             → dZ [36, M, Tp]   (padding tiles: zeros)
//     matmul_nt (batch 36)  dZ[ξ] · V[ξ]ᵀ                   → dU [36, M, K]
//     weight_grad_transform dU                              → d_w [M, K, 3, 3] (overwritten)
// Output positions past the image count as d_y = 0, so the result is the direct convolution's weight gradient
// exactly in exact arithmetic; its rounding error is bounded on magnitudes like the forward's.
// Buffers: d_y [N, M, H, W] (bound twice: as vec4s where W is a multiple of 4, and as f32), dz (at v4's binding),
// du, d_w as above.

@group(0) @binding(12) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read> dy: array<f32>;
@group(0) @binding(14) var<storage, read> du: array<f32>;
@group(0) @binding(15) var<storage, read_write> d_w: array<f32>;

// A g for a column g of four entries (each a vec4: 4 tiles): six entries, A = (Aᵀ)ᵀ.
fn a_col(g: Four4) -> Six4 {
    let s02 = g.v0 + g.v2; let s13 = g.v1 + g.v3;
    let t02 = g.v0 + 4.0 * g.v2; let t13 = 2.0 * g.v1 + 8.0 * g.v3;
    return Six4(g.v0, s02 + s13, s02 - s13, t02 + t13, t02 - t13, g.v3);
}

// Row r of d_y for 4 consecutive tiles of output channel m (zeros for tiles past the last), transposed so that
// entry c holds column c of each tile, with A applied along it: row r of dY Aᵀ.
fn dy_row_a(m: u32, t: vec4<u32>, r: u32) -> Six4 {
    let tiles = p.n * p.row_blocks * p.col_blocks;
    let a = dy_tile_row(m, t.x, r, tiles);
    let b = dy_tile_row(m, t.y, r, tiles);
    let c = dy_tile_row(m, t.z, r, tiles);
    let d = dy_tile_row(m, t.w, r, tiles);
    return a_col(Four4(vec4(a.x, b.x, c.x, d.x), vec4(a.y, b.y, c.y, d.y), vec4(a.z, b.z, c.z, d.z),
                       vec4(a.w, b.w, c.w, d.w)));
}

// Row r of tile t of d_y [N, M, H, W] for output channel m: columns 4j .. 4j + 3 of image row 4i + r, zero past
// the image's edges and for tiles past the last (so they add nothing). Planes of whole vec4s read the row as one
// aligned vec4 (the branch is uniform), others value by value.
fn dy_tile_row(m: u32, t: u32, r: u32, tiles: u32) -> vec4<f32> {
    let tt = min(t, tiles - 1u);
    let j = tt % p.col_blocks;
    let i = (tt / p.col_blocks) % p.row_blocks;
    let n = tt / (p.row_blocks * p.col_blocks);
    let row = 4u * i + r;
    let live = t < tiles && row < p.h;
    let start = ((n * p.out_c + m) * p.h + min(row, p.h - 1u)) * p.w + 4u * j;
    if (p.w % 4u == 0u) {
        return select(vec4(0.0), dy4[start / 4u], live);
    }
    // Columns past the edge read the row's last value and are masked to zero.
    let last = start - 4u * j + p.w - 1u;
    let v = vec4(dy[start], dy[min(start + 1u, last)], dy[min(start + 2u, last)], dy[min(start + 3u, last)]);
    let cols = vec4(4u * j) + vec4(0u, 1u, 2u, 3u);
    return select(vec4(0.0), v, vec4(live) & (cols < vec4(p.w)));
}

// dZ for output channel m and 4 consecutive tiles 4·t4 .. 4·t4 + 3, stored at dz[(ξ·M + m)·Tp + t] (bound as
// v4) as one vec4 per position.
@compute @workgroup_size(64)
fn grad_output_transform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let quads = p.tiles_pad / 4u;
    let t4 = i % quads;
    let m = i / quads;
    let t = 4u * t4 + vec4(0u, 1u, 2u, 3u);
    let e0 = dy_row_a(m, t, 0u);
    let e1 = dy_row_a(m, t, 1u);
    let e2 = dy_row_a(m, t, 2u);
    let e3 = dy_row_a(m, t, 3u);
    let plane = p.out_c * quads;
    let o = m * quads + t4;
    // Column c of dZ = A (dY Aᵀ).
    store_column(o, plane, a_col(Four4(e0.v0, e1.v0, e2.v0, e3.v0)));
    store_column(o + plane, plane, a_col(Four4(e0.v1, e1.v1, e2.v1, e3.v1)));
    store_column(o + 2u * plane, plane, a_col(Four4(e0.v2, e1.v2, e2.v2, e3.v2)));
    store_column(o + 3u * plane, plane, a_col(Four4(e0.v3, e1.v3, e2.v3, e3.v3)));
    store_column(o + 4u * plane, plane, a_col(Four4(e0.v4, e1.v4, e2.v4, e3.v4)));
    store_column(o + 5u * plane, plane, a_col(Four4(e0.v5, e1.v5, e2.v5, e3.v5)));
}

// Gᵀ u for a column u of six entries (each a vec3: three columns at once): three entries. Multiplies by the
// rounded constants rather than dividing (WGSL's division is only good to 2.5 ULP).
fn gt_col(u0: vec3<f32>, u1: vec3<f32>, u2: vec3<f32>, u3: vec3<f32>, u4: vec3<f32>, u5: vec3<f32>) -> mat3x3<f32> {
    let s12 = u1 + u2; let s34 = u3 + u4;
    return mat3x3<f32>(0.25 * u0 - (1.0 / 6.0) * s12 + (1.0 / 24.0) * s34,
                       (1.0 / 6.0) * (u2 - u1) + (1.0 / 12.0) * (u3 - u4),
                       (1.0 / 6.0) * (s34 - s12) + u5);
}

// Column b of three rows of dU for one (m, k): rows `first` .. first + 2 at positions ξ = 6a + b.
fn du_col(i: u32, plane: u32, first: u32, b: u32) -> vec3<f32> {
    let o = i + (6u * first + b) * plane;
    return vec3(du[o], du[o + 6u * plane], du[o + 12u * plane]);
}

// d_w[m, k] = Gᵀ dU G for one (m, k): dU read at du[(ξ·M + m)·K + k], the 3×3 result written over d_w.
@compute @workgroup_size(64)
fn weight_grad_transform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let plane = p.out_c * p.in_c;
    // dU G, rows 0..2 and 3..5 at once: column c of `lo` holds rows 0..2 of column c of dU G.
    let lo = gt_col(du_col(i, plane, 0u, 0u), du_col(i, plane, 0u, 1u), du_col(i, plane, 0u, 2u),
                    du_col(i, plane, 0u, 3u), du_col(i, plane, 0u, 4u), du_col(i, plane, 0u, 5u));
    let hi = gt_col(du_col(i, plane, 3u, 0u), du_col(i, plane, 3u, 1u), du_col(i, plane, 3u, 2u),
                    du_col(i, plane, 3u, 3u), du_col(i, plane, 3u, 4u), du_col(i, plane, 3u, 5u));
    // Gᵀ down the columns of dU G (rows a = 0..5, three columns at once): r[row] is row `row` of d_w.
    let tl = transpose(lo);
    let th = transpose(hi);
    let r = gt_col(tl[0], tl[1], tl[2], th[0], th[1], th[2]);
    let base = i * 9u;
    d_w[base] = r[0].x; d_w[base + 1u] = r[0].y; d_w[base + 2u] = r[0].z;
    d_w[base + 3u] = r[1].x; d_w[base + 4u] = r[1].y; d_w[base + 5u] = r[1].z;
    d_w[base + 6u] = r[2].x; d_w[base + 7u] = r[2].y; d_w[base + 8u] = r[2].z;
}
