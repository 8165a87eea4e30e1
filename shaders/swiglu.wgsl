// Gated activation over flat [M][F] arrays: out = act(gate) * up.
//
// mode 0 (SwiGLU, llama/qwen2): out = gate * sigmoid(gate) * up.
// mode 1 (gpt-oss's clamped variant):
//   g = min(gate, limit); u = clamp(up, -limit, limit);
//   out = g * sigmoid(alpha * g) * (u + 1).
// The `_vec4` entry point covers the first n/4 vec4s, the scalar one the
// elements `start..n` (only the tail when n % 4 != 0). 2-D workgroup grid.

override WG: u32 = 256u;

struct Params {
    n: u32,
    start: u32,
    mode: u32,
    _pad: u32,
    alpha: f32,
    limit: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> up4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(5) var<storage, read> up: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// exp(-x) overflows to +inf for very negative x, and x / inf = -0, the limit
// of silu; no clamp needed.
fn act4(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    if (params.mode == 0u) {
        return g / (vec4<f32>(1.0) + exp(-g)) * u;
    }
    let gc = min(g, vec4<f32>(params.limit));
    let uc = clamp(u, vec4<f32>(-params.limit), vec4<f32>(params.limit));
    return gc / (vec4<f32>(1.0) + exp(-params.alpha * gc)) * (uc + vec4<f32>(1.0));
}

fn act(g: f32, u: f32) -> f32 {
    return act4(vec4<f32>(g), vec4<f32>(u)).x;
}

// #include "lib/flat_index.wgsl"

@compute @workgroup_size(WG)
fn swiglu_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i < params.n / 4u) {
        out4[i] = act4(gate4[i], up4[i]);
    }
}

@compute @workgroup_size(WG)
fn swiglu_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = params.start + flat_index(wid, nwg, lid);
    if (i < params.n) {
        out[i] = act(gate[i], up[i]);
    }
}
