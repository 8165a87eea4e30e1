// Mixture-of-experts matrix multiply over a stack of expert matrices
// W[e][n][k] (experts e0..e1 of the stack held by this dispatch's buffers),
// each token row using the experts its router chose.
//
// Per-slot mode (flag 4 clear): for token m and slot s with expert
// e = ids[m][s] in e0..e1,
//     y[m][s][n] = sum_k x[m or (m, s)][k] * W[e][n][k] (+ bias[e][n]).
// Combine mode (flag 2): y[m][n] += sum over the slots s with e in e0..e1 of
//     weights[m][s] * (sum_k x[(m, s)][k] * W[e][n][k] (+ bias[e][n])),
// the weighted sum of the experts' outputs added into the residual.
// x is [M][K] (flag 1 clear: every slot reads the token's row) or [M][S][K]
// (flag 1: each slot has its own input row).
//
// One invocation owns one output value and reduces its K in unit order (a
// vec4 fma chain per unit, folded into one f32), slots in slot order: the
// result depends only on the token's own row and choices (batch invariant).
// `#include "dequant.wgsl"` is the F32 dequantizer unless the Rust side
// names another type's shaders/dequant_<type>.wgsl.

override WG: u32 = 64u;

struct Params {
    // Token rows.
    m: u32,
    // Slots (experts used) per token.
    k_used: u32,
    // Input row length in vec4s.
    k4: u32,
    // Rows per expert (N).
    rows: u32,
    // Units per weight row.
    upr: u32,
    // Experts e0..e1 are in this dispatch's weight buffers, e0 first.
    e0: u32,
    e1: u32,
    // Bit 0: x has one row per slot. Bit 1: combine into y. Bit 2: bias.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// #include "lib/matmul_io.wgsl"
@group(0) @binding(6) var<storage, read> ids: array<u32>;
@group(0) @binding(7) var<storage, read> weights: array<f32>;

// The weight type's `wq`, `ws`, `UNIT_V4` and `dequant_unit`
// (shaders/dequant_<type>.wgsl; F32 unless the Rust side names another).
// #include "dequant.wgsl"

// #include "lib/hsum.wgsl"

// One expert row's dot product with one input row, plus its bias.
fn expert_dot(e: u32, n: u32, xrow: u32) -> f32 {
    let w0 = ((e - params.e0) * params.rows + n) * params.upr;
    let x0 = xrow * params.k4;
    var acc = 0.0;
    for (var j = 0u; j < params.upr; j++) {
        let w = dequant_unit(w0 + j);
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < UNIT_V4; i++) {
            s = fma(w[i], x[x0 + j * UNIT_V4 + i], s);
        }
        acc = acc + hsum(s);
    }
    if ((params.flags & 4u) != 0u) {
        acc = acc + bias[e * params.rows + n];
    }
    return acc;
}

fn x_row(m: u32, s: u32) -> u32 {
    if ((params.flags & 1u) != 0u) {
        return m * params.k_used + s;
    }
    return m;
}

// Grid: x = tiles of WG output rows, y = the (token, slot) pair (per-slot
// mode) or the token (combine mode).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x * WG + lid;
    if (n >= params.rows) {
        return;
    }
    if ((params.flags & 2u) == 0u) {
        let p = wid.y;
        let m = p / params.k_used;
        let e = ids[p];
        if (m >= params.m || e < params.e0 || e >= params.e1) {
            return;
        }
        y[p * params.rows + n] = expert_dot(e, n, x_row(m, p % params.k_used));
    } else {
        let m = wid.y;
        if (m >= params.m) {
            return;
        }
        var total = 0.0;
        var any = false;
        for (var s = 0u; s < params.k_used; s++) {
            let p = m * params.k_used + s;
            let e = ids[p];
            if (e >= params.e0 && e < params.e1) {
                total = total + weights[p] * expert_dot(e, n, x_row(m, s));
                any = true;
            }
        }
        if (any) {
            y[m * params.rows + n] = y[m * params.rows + n] + total;
        }
    }
}

// ---- Lanes variant, for GPUs ----
//
// TPR invocations share each output row: lane l takes the row's units
// l, l + TPR, ... (a vec4 accumulator per lane), and lane 0 adds the TPR lane
// totals in lane order, so neighbouring invocations read neighbouring
// weight units (coalesced loads) instead of one row each. The order of the
// reduction depends only on the row, so results stay batch invariant. A
// workgroup holds WG / TPR rows. Barriers sit in uniform control flow:
// routing decisions (read from storage) only select what is computed.

override TPR: u32 = 32u;

const MAX_WG: u32 = 256u;

var<workgroup> lane_sums: array<f32, MAX_WG>;

// Lane `lane`'s share of one expert row's dot product with one input row.
fn lane_dot(e: u32, n: u32, xrow: u32, lane: u32) -> f32 {
    let w0 = ((e - params.e0) * params.rows + n) * params.upr;
    let x0 = xrow * params.k4;
    var s = vec4<f32>(0.0);
    for (var j = lane; j < params.upr; j += TPR) {
        let w = dequant_unit(w0 + j);
        for (var i = 0u; i < UNIT_V4; i++) {
            s = fma(w[i], x[x0 + j * UNIT_V4 + i], s);
        }
    }
    return hsum(s);
}

// The lanes' totals of the row owned by `group` (lane 0 calls it after the
// barrier), in lane order, plus the bias.
fn row_total(group: u32, e: u32, n: u32) -> f32 {
    var t = 0.0;
    for (var l = 0u; l < TPR; l++) {
        t = t + lane_sums[group * TPR + l];
    }
    if ((params.flags & 4u) != 0u) {
        t = t + bias[e * params.rows + n];
    }
    return t;
}

@compute @workgroup_size(WG)
fn main_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = lid / TPR;
    let lane = lid % TPR;
    let n = wid.x * (WG / TPR) + group;
    let row_ok = n < params.rows;
    if ((params.flags & 2u) == 0u) {
        let p = wid.y;
        let m = p / params.k_used;
        let e = ids[min(p, arrayLength(&ids) - 1u)];
        let on = row_ok && m < params.m && e >= params.e0 && e < params.e1;
        var part = 0.0;
        if (on) {
            part = lane_dot(e, n, x_row(m, p % params.k_used), lane);
        }
        lane_sums[lid] = part;
        workgroupBarrier();
        if (on && lane == 0u) {
            y[p * params.rows + n] = row_total(group, e, n);
        }
    } else {
        let m = wid.y;
        var total = 0.0;
        var any = false;
        for (var s = 0u; s < params.k_used; s++) {
            let p = m * params.k_used + s;
            let e = ids[min(p, arrayLength(&ids) - 1u)];
            let on = row_ok && m < params.m && e >= params.e0 && e < params.e1;
            var part = 0.0;
            if (on) {
                part = lane_dot(e, n, x_row(m, s), lane);
            }
            workgroupBarrier();
            lane_sums[lid] = part;
            workgroupBarrier();
            if (on && lane == 0u) {
                total = total + weights[p] * row_total(group, e, n);
                any = true;
            }
        }
        if (any) {
            y[m * params.rows + n] = y[m * params.rows + n] + total;
        }
    }
}
