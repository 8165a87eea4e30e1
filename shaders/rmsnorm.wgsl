// RMSNorm over rows: out[r][i] = x[r][i] * (1 / sqrt(mean(x[r]^2) + eps)) * w[i].
//
// One workgroup per row. Each invocation sums the squares of a fixed strided
// subset of the row in index order, then the workgroup adds the partial sums
// in a fixed tree, so a row's result depends only on that row and the width,
// never on how many rows are in the batch (batch invariance).
//
// The `_vec4` entry points need width % 4 == 0 (rows then start on a vec4);
// the scalar ones take any width. The `_in_place` entry points overwrite x.
// Rows are laid out on a 2-D workgroup grid so rows may exceed 65535 (qk-norm
// runs one row per token per head).

override WG: u32 = 256u; // a power of two

struct Params {
    rows: u32,
    width: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> xio: array<f32>;
@group(0) @binding(8) var<storage, read_write> xio4: array<vec4<f32>>;

var<workgroup> partial: array<f32, WG>;

// Returns 1 / sqrt(sum / width + eps), the same value to every invocation.
fn inv_rms(local_sum: f32, lid: u32) -> f32 {
    partial[lid] = local_sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    let mean = partial[0] / f32(params.width);
    return 1.0 / sqrt(mean + params.eps);
}

// #include "lib/row_index.wgsl"
// #include "lib/hsum.wgsl"

@compute @workgroup_size(WG)
fn rmsnorm_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    var acc = 0.0;
    for (var i = lid; i < params.width; i = i + WG) {
        let v = x[base + i];
        acc = acc + v * v;
    }
    let scale = inv_rms(acc, lid);
    for (var i = lid; i < params.width; i = i + WG) {
        out[base + i] = (x[base + i] * scale) * w[i];
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let width4 = params.width / 4u;
    let base = row * width4;
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < width4; i = i + WG) {
        let v = x4[base + i];
        acc = acc + v * v;
    }
    let scale = inv_rms(hsum(acc), lid);
    for (var i = lid; i < width4; i = i + WG) {
        out4[base + i] = (x4[base + i] * scale) * w4[i];
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_scalar_in_place(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    var acc = 0.0;
    for (var i = lid; i < params.width; i = i + WG) {
        let v = xio[base + i];
        acc = acc + v * v;
    }
    let scale = inv_rms(acc, lid);
    for (var i = lid; i < params.width; i = i + WG) {
        xio[base + i] = (xio[base + i] * scale) * w[i];
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_vec4_in_place(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= params.rows) {
        return;
    }
    let width4 = params.width / 4u;
    let base = row * width4;
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < width4; i = i + WG) {
        let v = xio4[base + i];
        acc = acc + v * v;
    }
    let scale = inv_rms(hsum(acc), lid);
    for (var i = lid; i < width4; i = i + WG) {
        xio4[base + i] = (xio4[base + i] * scale) * w4[i];
    }
}
