// pairwise.wgsl — the farthest pair of 8-bit images: max over i < j of ‖b_i − b_j‖² in the bytes themselves, for
// NCSNv2's rule σ_max = the largest distance between two training images (src/data/farthest.rs scales it by
// 1/127.5, the training map's). Integer arithmetic throughout, so the result is exact and the same on every GPU:
// a 64-byte slice of a pair sums to at most 64·255² < 2³², added to a 64-bit (hi, lo) accumulator with its carry.
//   farthest_pair: over the rectangle i ∈ [i0, i1), j ∈ [j0, j1) of global image indices, pairs with i < j only,
//                  each workgroup writes its best (hi, lo, i, j): the largest distance, ties to the smallest i,
//                  then j (the order the reference keeps, so the pair is exact too); (0, 0, 0, 0) where it saw
//                  no pair at a positive distance.
// Buffers: a, b: images [a_first, a_first + a_rows) and [b_first, …) packed little-endian 4 bytes to a word, rows
// of D bytes back to back (rows need not start on a word; a and b may be one buffer); best [G, 4] u32.
// Dispatch: G workgroups of 16×16 invocations (1-D grid); each walks the rectangle's 16×16 tiles t = wg, wg + G, …
// (so any size runs in a bounded grid), one pair per invocation, staging 64 bytes of its 16 + 16 rows per slice
// in workgroup memory. The wrapper keeps tiles per workgroup × (slices + 1) within llvmpipe's loop limit; the
// host sizes rectangles to bound one dispatch's work, and reduces the G rows.
// Wrapper: src/kernels/pairwise.rs. Reference: src/reference/pairwise.rs.

struct Params {
    d: u32,        // bytes per image
    a_first: u32,  // global index of a's row 0
    b_first: u32,  // global index of b's row 0
    i0: u32,
    i1: u32,
    j0: u32,
    j1: u32,
    groups: u32,   // G, workgroups in the grid
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> best: array<u32>;

const TILE: u32 = 16u;
const WORDS: u32 = 16u;   // words (4 bytes each) per staged slice; 64·255² = 4,161,600 keeps a slice's sum below 2³²
const STRIDE: u32 = 17u;  // a staged row's length: one more than WORDS, so the 16 rows read at once fall in 16 banks

var<workgroup> rows_a: array<u32, 272>;  // [TILE, STRIDE]: 64 bytes of each of the tile's rows, repacked aligned
var<workgroup> rows_b: array<u32, 272>;
var<workgroup> red: array<vec4<u32>, 256>;

// Byte k of image `row` (a global index) in a or b; 0 past the image's end.
fn byte_a(row: u32, k: u32) -> u32 {
    if (k >= p.d) { return 0u; }
    let at = (row - p.a_first) * p.d + k;
    return (a[at >> 2u] >> ((at & 3u) * 8u)) & 0xFFu;
}

fn byte_b(row: u32, k: u32) -> u32 {
    if (k >= p.d) { return 0u; }
    let at = (row - p.b_first) * p.d + k;
    return (b[at >> 2u] >> ((at & 3u) * 8u)) & 0xFFu;
}

// Bytes k … k + 3 of an image as one word (rows need not start on a word in the buffer).
fn word_a(row: u32, k: u32) -> u32 {
    return byte_a(row, k) | (byte_a(row, k + 1u) << 8u) | (byte_a(row, k + 2u) << 16u) | (byte_a(row, k + 3u) << 24u);
}

fn word_b(row: u32, k: u32) -> u32 {
    return byte_b(row, k) | (byte_b(row, k + 1u) << 8u) | (byte_b(row, k + 2u) << 16u) | (byte_b(row, k + 3u) << 24u);
}

// Σ (x_e − y_e)² over the four bytes of two words.
fn sq4(x: u32, y: u32) -> u32 {
    let d0 = i32(x & 0xFFu) - i32(y & 0xFFu);
    let d1 = i32((x >> 8u) & 0xFFu) - i32((y >> 8u) & 0xFFu);
    let d2 = i32((x >> 16u) & 0xFFu) - i32((y >> 16u) & 0xFFu);
    let d3 = i32(x >> 24u) - i32(y >> 24u);
    return u32(d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3);
}

// Whether (hi, lo, i, j) = x beats y: larger distance, then smaller i, then smaller j.
fn beats(x: vec4<u32>, y: vec4<u32>) -> bool {
    if (x.x != y.x) { return x.x > y.x; }
    if (x.y != y.y) { return x.y > y.y; }
    if (x.z != y.z) { return x.z < y.z; }
    return x.w < y.w;
}

// The slice's 16 words of rows li (of a's tile) and lj (of b's), written out: llvmpipe ends any loop nest after
// 65,535 iterations per invocation without a word, so the only loops left are over tiles and slices, which the
// wrapper bounds (src/kernels/pairwise.rs).
fn slice_sum(ra: u32, rb: u32) -> u32 {
    return sq4(rows_a[ra], rows_b[rb]) + sq4(rows_a[ra + 1u], rows_b[rb + 1u])
        + sq4(rows_a[ra + 2u], rows_b[rb + 2u]) + sq4(rows_a[ra + 3u], rows_b[rb + 3u])
        + sq4(rows_a[ra + 4u], rows_b[rb + 4u]) + sq4(rows_a[ra + 5u], rows_b[rb + 5u])
        + sq4(rows_a[ra + 6u], rows_b[rb + 6u]) + sq4(rows_a[ra + 7u], rows_b[rb + 7u])
        + sq4(rows_a[ra + 8u], rows_b[rb + 8u]) + sq4(rows_a[ra + 9u], rows_b[rb + 9u])
        + sq4(rows_a[ra + 10u], rows_b[rb + 10u]) + sq4(rows_a[ra + 11u], rows_b[rb + 11u])
        + sq4(rows_a[ra + 12u], rows_b[rb + 12u]) + sq4(rows_a[ra + 13u], rows_b[rb + 13u])
        + sq4(rows_a[ra + 14u], rows_b[rb + 14u]) + sq4(rows_a[ra + 15u], rows_b[rb + 15u]);
}

@compute @workgroup_size(16, 16)
fn farthest_pair(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let li = lid.y;  // this invocation's row in the i tile
    let lj = lid.x;  // and in the j tile
    let flat = li * TILE + lj;
    let tiles_i = (p.i1 - p.i0 + TILE - 1u) / TILE;
    let tiles_j = (p.j1 - p.j0 + TILE - 1u) / TILE;
    var mine = vec4<u32>(0u, 0u, 0u, 0u);
    for (var t = wg.x; t < tiles_i * tiles_j; t += p.groups) {
        let ti0 = p.i0 + (t / tiles_j) * TILE;
        let tj0 = p.j0 + (t % tiles_j) * TILE;
        // A tile whose every i is at or past its every j has no pair i < j (uniform over the workgroup).
        if (ti0 >= min(tj0 + TILE, p.j1)) { continue; }
        let i = ti0 + li;
        let j = tj0 + lj;
        var hi = 0u;
        var lo = 0u;
        for (var k0 = 0u; k0 < p.d; k0 += 4u * WORDS) {
            // Invocation (y, x) stages word x of row y of both tiles (0 past the tile's rows).
            let k = k0 + 4u * lj;
            var wa = 0u;
            var wb = 0u;
            if (ti0 + li < p.i1) { wa = word_a(ti0 + li, k); }
            if (tj0 + li < p.j1) { wb = word_b(tj0 + li, k); }
            rows_a[li * STRIDE + lj] = wa;
            rows_b[li * STRIDE + lj] = wb;
            workgroupBarrier();
            let sum = slice_sum(li * STRIDE, lj * STRIDE);
            lo += sum;
            if (lo < sum) { hi += 1u; }
            workgroupBarrier();
        }
    let cand = vec4<u32>(hi, lo, i, j);
        if (i < p.i1 && j < p.j1 && i < j && (hi | lo) != 0u && beats(cand, mine)) {
            mine = cand;
        }
    }
    red[flat] = mine;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (flat < half && beats(red[flat + half], red[flat])) {
            red[flat] = red[flat + half];
        }
        workgroupBarrier();
    }
    if (flat == 0u) {
        let o = wg.x * 4u;
        best[o] = red[0].x;
        best[o + 1u] = red[0].y;
        best[o + 2u] = red[0].z;
        best[o + 3u] = red[0].w;
    }
}
