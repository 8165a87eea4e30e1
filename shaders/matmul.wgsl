// Quantized matrix multiply: y[m][n0 + r] = sum_k x[m][k] * W[r][k] for the
// rows r of one weight chunk, optionally plus bias[n0 + r] and plus the old
// y (accumulate). W stays in its GGML type on the device; `dequant_unit`
// expands one unit (32 or 64 consecutive values of a row) to f32; it comes
// from `#include "dequant.wgsl"` (src/gpu/shader_include.rs), F32 unless the
// Rust side swaps in shaders/dequant_<type>.wgsl for another type.
//
// Two entry points share the bindings and the dequantizer:
//
// `main` (GPUs): a workgroup owns WG / TPR weight rows and TM token rows; the
// TPR invocations of a row take its units round-robin (unit j goes to lane
// j % TPR), each keeping one vec4 accumulator per token, and one invocation
// then sums the TPR lane totals of a (row, token) in lane order.
//
// `main_rows` (CPU drivers, below): each invocation owns R whole rows.
//
// In both, nothing in the reduction order depends on M, TM or which tile a
// token is in, so every y value is bitwise the same for any batch (batch
// invariance).

override WG: u32 = 64u;
// Invocations per weight row; divides WG.
override TPR: u32 = 1u;
// Token rows per workgroup, at most MAX_TM.
override TM: u32 = 1u;

const MAX_TM: u32 = 8u;
const MAX_WG: u32 = 256u;

struct Params {
    // Token rows in x and y.
    m: u32,
    // Row length in vec4s (x's row stride).
    k4: u32,
    // Weight rows in this chunk.
    rows: u32,
    // The y column of the chunk's first row.
    n0: u32,
    // y's row stride (N, all chunks together).
    ldy: u32,
    // Units per weight row.
    upr: u32,
    // Bit 0: add bias. Bit 1: add into y instead of overwriting it.
    flags: u32,
    // Workgroups along x: a dispatch too long for one dimension wraps into y.
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// #include "lib/matmul_io.wgsl"

// The weight type's `wq`, `ws`, `UNIT_V4` and `dequant_unit`
// (shaders/dequant_<type>.wgsl; F32 unless the Rust side names another).
// #include "dequant.wgsl"

var<workgroup> partial: array<f32, 2048>; // MAX_WG * MAX_TM

// #include "lib/hsum.wgsl"

fn store(row: u32, m: u32, v: f32) {
    let col = params.n0 + row;
    var r = v;
    if ((params.flags & 1u) != 0u) {
        r = r + bias[col];
    }
    let idx = m * params.ldy + col;
    if ((params.flags & 2u) != 0u) {
        r = y[idx] + r;
    }
    y[idx] = r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let slot = lid / TPR;
    let lane = lid % TPR;
    let row = (wid.x + wid.y * params.groups_x) * (WG / TPR) + slot;
    let m0 = wid.z * TM;
    let mc = min(TM, params.m - m0);
    var acc: array<vec4<f32>, MAX_TM>;
    for (var t = 0u; t < TM; t++) {
        acc[t] = vec4<f32>(0.0);
    }
    if (row < params.rows) {
        for (var j = lane; j < params.upr; j += TPR) {
            let w = dequant_unit(row * params.upr + j);
            for (var t = 0u; t < TM; t++) {
                if (t < mc) {
                    let xo = (m0 + t) * params.k4 + j * UNIT_V4;
                    var a = acc[t];
                    for (var i = 0u; i < UNIT_V4; i++) {
                        a = fma(w[i], x[xo + i], a);
                    }
                    acc[t] = a;
                }
            }
        }
    }
    if (TPR == 1u) {
        if (row < params.rows) {
            for (var t = 0u; t < TM; t++) {
                if (t < mc) {
                    store(row, m0 + t, hsum(acc[t]));
                }
            }
        }
    } else {
        for (var t = 0u; t < TM; t++) {
            partial[lid * TM + t] = hsum(acc[t]);
        }
        workgroupBarrier();
        if (row < params.rows) {
            for (var t = lane; t < mc; t += TPR) {
                var s = 0.0;
                for (var l = 0u; l < TPR; l++) {
                    s = s + partial[(slot * TPR + l) * TM + t];
                }
                store(row, m0 + t, s);
            }
        }
    }
}

// ---- Row-per-invocation variant, for CPU drivers (lavapipe) ----
//
// Each invocation owns R weight rows (r * WG + lid of its group's WG * R) and
// the workgroup's TM tokens. The x tile is staged in workgroup memory, a K
// slice at a time, so each x value read serves R rows: on lavapipe every
// storage load is issued lane by lane with a bounds check, and workgroup
// loads cost about a third of that. Every row is reduced by one invocation,
// unit by unit in order (a vec4 per unit, folded into the row total), so the
// result depends neither on M, nor on the tile, nor on R or WG.

override R: u32 = 4u;

const MAX_R: u32 = 8u;
// Staged x, in vec4: TM tokens times a slice of the row.
const XS: u32 = 1536u;

var<workgroup> xs: array<vec4<f32>, XS>;

@compute @workgroup_size(WG)
fn main_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = (wid.x + wid.y * params.groups_x) * WG * R + lid;
    let m0 = wid.z * TM;
    let mc = min(TM, params.m - m0);
    let slice = XS / (TM * UNIT_V4);
    var acc: array<array<f32, MAX_TM>, MAX_R>;
    for (var r = 0u; r < R; r++) {
        for (var t = 0u; t < TM; t++) {
            acc[r][t] = 0.0;
        }
    }
    for (var u0 = 0u; u0 < params.upr; u0 += slice) {
        let un = min(slice, params.upr - u0);
        let nv = un * UNIT_V4;
        workgroupBarrier();
        for (var i = lid; i < mc * nv; i += WG) {
            let t = i / nv;
            xs[i] = x[(m0 + t) * params.k4 + u0 * UNIT_V4 + (i - t * nv)];
        }
        workgroupBarrier();
        for (var j = 0u; j < un; j++) {
            var w: array<array<vec4<f32>, UNIT_V4>, MAX_R>;
            for (var r = 0u; r < R; r++) {
                let row = min(base + r * WG, params.rows - 1u);
                w[r] = dequant_unit(row * params.upr + u0 + j);
            }
            for (var t = 0u; t < TM; t++) {
                if (t < mc) {
                    let xo = t * nv + j * UNIT_V4;
                    var xv: array<vec4<f32>, UNIT_V4>;
                    for (var i = 0u; i < UNIT_V4; i++) {
                        xv[i] = xs[xo + i];
                    }
                    for (var r = 0u; r < R; r++) {
                        var s = vec4<f32>(0.0);
                        for (var i = 0u; i < UNIT_V4; i++) {
                            s = fma(w[r][i], xv[i], s);
                        }
                        acc[r][t] = acc[r][t] + hsum(s);
                    }
                }
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        let row = base + r * WG;
        if (row < params.rows) {
            for (var t = 0u; t < TM; t++) {
                if (t < mc) {
                    store(row, m0 + t, acc[r][t]);
                }
            }
        }
    }
}
