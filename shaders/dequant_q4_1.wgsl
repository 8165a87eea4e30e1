// Dequantization of one Q4_1 block (32 values): `nibble * d + m`.
// wq: 16 nibble bytes as one vec4<u32> (as Q4_0); ws: one word per block,
// d in the low half and m in the high half. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let dm = unpack2x16float(ws[u]);
    let v = wq[u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        w[c] = fma(vec4<f32>(unpack4xU8(v[c] & 0x0F0F0F0Fu)), vec4<f32>(dm.x), vec4<f32>(dm.y));
        w[c + 4u] = fma(vec4<f32>(unpack4xU8((v[c] >> 4u) & 0x0F0F0F0Fu)), vec4<f32>(dm.x), vec4<f32>(dm.y));
    }
    return w;
}
