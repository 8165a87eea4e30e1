// Rounds activations the way llama.cpp quantizes them before a quantized
// matmul, keeping f32 storage: x' = d * round(x / d) per block. Mode 0 is
// GGML's Q8_0/Q8_1 (blocks of 32, d = amax / 127 rounded to f16), mode 1 is
// Q8_K (blocks of 256, iscale = -127 / max with the sign of the largest
// magnitude, d = 1 / iscale in f32), mode 2 rounds each value to f16.
// One invocation per block; a row's blocks are independent, so the result
// for a row never depends on the batch.

override WG: u32 = 64u;

struct Params {
    // Blocks in all rows together.
    n_blocks: u32,
    // Values per block (32, 256, or 4 for mode 2).
    block: u32,
    mode: u32,
    // Workgroups along x, for 2-D dispatches.
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Round-to-nearest-even to f16 precision, done by hand: drivers differ in
// how pack2x16float rounds. Normal f16 range keeps 10 mantissa bits;
// below 2^-14 the f16 grid is 2^-24.
fn f16_round(v: f32) -> f32 {
    let a = abs(v);
    if (a < 6.103515625e-05) {
        return round(v * 16777216.0) / 16777216.0;
    }
    let bits = bitcast<u32>(v);
    let r = (bits + 0x0FFFu + ((bits >> 13u) & 1u)) & 0xFFFFE000u;
    return bitcast<f32>(r);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = (wid.x + wid.y * params.groups_x) * WG + lid;
    if (b >= params.n_blocks) {
        return;
    }
    let n = params.block;
    let base = b * n;
    if (params.mode == 2u) {
        for (var i = 0u; i < n; i++) {
            y[base + i] = f16_round(x[base + i]);
        }
        return;
    }
    var amax = 0.0;
    var vmax = 0.0;
    for (var i = 0u; i < n; i++) {
        let v = x[base + i];
        if (abs(v) > amax) {
            amax = abs(v);
            vmax = v;
        }
    }
    if (amax == 0.0) {
        for (var i = 0u; i < n; i++) {
            y[base + i] = 0.0;
        }
        return;
    }
    if (params.mode == 0u) {
        let d = amax / 127.0;
        let id = 1.0 / d;
        let dh = f16_round(d);
        for (var i = 0u; i < n; i++) {
            y[base + i] = dh * round(x[base + i] * id);
        }
    } else {
        let iscale = -127.0 / vmax;
        let d = 1.0 / iscale;
        for (var i = 0u; i < n; i++) {
            y[base + i] = d * min(round(iscale * x[base + i]), 127.0);
        }
    }
}
