// Argmax over rows of logits [rows][vocab] -> ids [rows] (u32), optionally
// with the maximum itself -> values [rows] (f32).
//
// One workgroup per row. Rule: the larger value wins; on equal values the
// lower index wins; NaN never wins (every comparison with NaN is false). A row
// with no number in it gives id 0 and value NaN. Each invocation scans a fixed
// strided subset of the row, then a fixed tree merges the candidates; the
// rule makes the result independent of the order anyway, so a row's answer is
// the same in any batch.
//
// `_vec4` entry points need vocab % 4 == 0; `_values` ones also write the max.

override WG: u32 = 256u; // a power of two

const NONE: u32 = 0xffffffffu;

struct Params {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> logits4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> values: array<f32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

struct Best {
    v: f32,
    i: u32,
}

// NaN is tested on the bits: WGSL lets a compiler assume floats are never
// NaN, which could fold `v != v` away.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether candidate (v, i) beats b. An empty candidate (i == NONE, left by an
// invocation that saw no number) never wins and always loses.
fn better(v: f32, i: u32, b: Best) -> bool {
    if (i == NONE || is_nan(v)) {
        return false;
    }
    if (b.i == NONE) {
        return true;
    }
    return v > b.v || (v == b.v && i < b.i);
}

fn consider(b: Best, v: f32, i: u32) -> Best {
    if (better(v, i, b)) {
        return Best(v, i);
    }
    return b;
}

fn empty() -> Best {
    return Best(0.0, NONE);
}

fn scan_scalar(row: u32, lid: u32) -> Best {
    let base = row * params.vocab;
    var b = empty();
    for (var i = lid; i < params.vocab; i = i + WG) {
        b = consider(b, logits[base + i], i);
    }
    return b;
}

fn scan_vec4(row: u32, lid: u32) -> Best {
    let n4 = params.vocab / 4u;
    let base = row * n4;
    var b = empty();
    for (var j = lid; j < n4; j = j + WG) {
        let v = logits4[base + j];
        let i = 4u * j;
        b = consider(b, v.x, i);
        b = consider(b, v.y, i + 1u);
        b = consider(b, v.z, i + 2u);
        b = consider(b, v.w, i + 3u);
    }
    return b;
}

// Merges every invocation's candidate; all invocations get the winner, whose
// index is NONE when the row holds only NaN.
fn merge(mine: Best, lid: u32) -> Best {
    best_v[lid] = mine.v;
    best_i[lid] = mine.i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let o = lid + s;
            if (better(best_v[o], best_i[o], Best(best_v[lid], best_i[lid]))) {
                best_v[lid] = best_v[o];
                best_i[lid] = best_i[o];
            }
        }
        workgroupBarrier();
    }
    return Best(best_v[0], best_i[0]);
}

// A row with no number answers index 0 and its (NaN) first value.
fn nan_row_fallback(w: Best, first: f32) -> Best {
    if (w.i == NONE) {
        return Best(first, 0u);
    }
    return w;
}

// #include "lib/row_index.wgsl"

@compute @workgroup_size(WG)
fn argmax_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let w = nan_row_fallback(merge(scan_scalar(row, lid), lid), logits[row * params.vocab]);
    if (lid == 0u) {
        ids[row] = w.i;
    }
}

@compute @workgroup_size(WG)
fn argmax_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let w = nan_row_fallback(merge(scan_vec4(row, lid), lid), logits4[row * (params.vocab / 4u)].x);
    if (lid == 0u) {
        ids[row] = w.i;
    }
}

@compute @workgroup_size(WG)
fn argmax_scalar_values(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let w = nan_row_fallback(merge(scan_scalar(row, lid), lid), logits[row * params.vocab]);
    if (lid == 0u) {
        ids[row] = w.i;
        values[row] = w.v;
    }
}

@compute @workgroup_size(WG)
fn argmax_vec4_values(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let w = nan_row_fallback(merge(scan_vec4(row, lid), lid), logits4[row * (params.vocab / 4u)].x);
    if (lid == 0u) {
        ids[row] = w.i;
        values[row] = w.v;
    }
}
