// Fills a buffer with one f32 value (used to poison outputs in tests and to
// clear scratch buffers). One invocation per element.

override WG: u32 = 256u;

struct Params {
    n: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < params.n) {
        out[gid.x] = params.value;
    }
}
