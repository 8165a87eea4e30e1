// Dequantization of one Q4_0 block (32 values): `(nibble - 8) * d`.
// wq: the block's 16 nibble bytes as one vec4<u32>; word c holds elements
// 4c..4c+4 in its low nibbles and 16+4c..16+4c+4 in its high nibbles.
// ws: d as f16, two blocks per word. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let d = unpack2x16float(ws[u >> 1u])[u & 1u];
    let v = wq[u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        w[c] = (vec4<f32>(unpack4xU8(v[c] & 0x0F0F0F0Fu)) - 8.0) * d;
        w[c + 4u] = (vec4<f32>(unpack4xU8((v[c] >> 4u) & 0x0F0F0F0Fu)) - 8.0) * d;
    }
    return w;
}
