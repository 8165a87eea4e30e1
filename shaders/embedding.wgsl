// Embedding gather: out[m] = W[ids[m]] dequantized to f32, for the rows of
// one weight chunk (ids outside the chunk are left for the dispatch of the
// chunk that holds them). One invocation per unit (32 or 64 values) of an
// output row. `#include "dequant.wgsl"` is the F32 dequantizer unless the
// Rust side names another type's shaders/dequant_<type>.wgsl.

override WG: u32 = 64u;

struct Params {
    // Token rows (ids) to gather.
    m: u32,
    // Row length in vec4s (out's row stride).
    k4: u32,
    // Units per weight row.
    upr: u32,
    // First weight row of this chunk.
    row0: u32,
    // Weight rows in this chunk.
    rows: u32,
    // Nonzero on the last chunk: ids past the end of the table write zeros.
    zero_above: u32,
    // Workgroups along y: a batch too long for one dimension wraps into z.
    groups_y: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// The weight type's `wq`, `ws`, `UNIT_V4` and `dequant_unit`
// (shaders/dequant_<type>.wgsl; F32 unless the Rust side names another).
// #include "dequant.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    let mi = wid.y + wid.z * params.groups_y;
    if (j >= params.upr || mi >= params.m) {
        return;
    }
    let id = ids[mi];
    let o = mi * params.k4 + j * UNIT_V4;
    if (id >= params.row0 && id - params.row0 < params.rows) {
        let w = dequant_unit((id - params.row0) * params.upr + j);
        for (var i = 0u; i < UNIT_V4; i++) {
            out[o + i] = w[i];
        }
    } else if (params.zero_above != 0u && id >= params.row0 + params.rows) {
        for (var i = 0u; i < UNIT_V4; i++) {
            out[o + i] = vec4<f32>(0.0);
        }
    }
}
