// Residual add over a flat f32 array: `a += b` (in place) or `out = a + b`.
//
// The `*_vec4` entry points cover the first n/4 vec4s; the scalar entry points
// cover elements `start..n` and run only for the tail when n % 4 != 0 (a vec4
// view and a scalar view of one writable buffer cannot share a dispatch).
// Workgroups are laid out on a 2-D grid so n may exceed 65535 * WG.

override WG: u32 = 256u;

struct Params {
    n: u32,
    start: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// In place, vec4.
@group(0) @binding(1) var<storage, read_write> a4_rw: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
// In place, scalar.
@group(0) @binding(3) var<storage, read_write> a_rw: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
// Out of place: a and out.
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> a: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

// #include "lib/flat_index.wgsl"

@compute @workgroup_size(WG)
fn add_in_place_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i < params.n / 4u) {
        a4_rw[i] = a4_rw[i] + b4[i];
    }
}

@compute @workgroup_size(WG)
fn add_in_place_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = params.start + flat_index(wid, nwg, lid);
    if (i < params.n) {
        a_rw[i] = a_rw[i] + b[i];
    }
}

@compute @workgroup_size(WG)
fn add_out_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i < params.n / 4u) {
        out4[i] = a4[i] + b4[i];
    }
}

@compute @workgroup_size(WG)
fn add_out_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = params.start + flat_index(wid, nwg, lid);
    if (i < params.n) {
        out[i] = a[i] + b[i];
    }
}
