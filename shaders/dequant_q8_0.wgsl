// Dequantization of one Q8_0 block (32 values): `q * d`.
// wq: the 32 signed bytes as two vec4<u32>; ws: d as f16, two blocks per
// word. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let d = unpack2x16float(ws[u >> 1u])[u & 1u];
    let a = wq[2u * u];
    let b = wq[2u * u + 1u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        w[c] = vec4<f32>(unpack4xI8(a[c])) * d;
        w[c + 4u] = vec4<f32>(unpack4xI8(b[c])) * d;
    }
    return w;
}
