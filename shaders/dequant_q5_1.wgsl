// Dequantization of one Q5_1 block (32 values): `q5 * d + m`.
// wq: 16 low-nibble bytes as one vec4<u32> (as Q4_0). ws: two words per
// block: [d | m << 16, qh], bit e of qh the fifth bit of element e.
// Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

// #include "lib/q5_high_bits.wgsl"

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let dm = unpack2x16float(ws[2u * u]);
    let qh = ws[2u * u + 1u];
    let v = wq[u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        let lo = (v[c] & 0x0F0F0F0Fu) | high_bits(qh, 4u * c);
        let hi = ((v[c] >> 4u) & 0x0F0F0F0Fu) | high_bits(qh, 16u + 4u * c);
        w[c] = fma(vec4<f32>(unpack4xU8(lo)), vec4<f32>(dm.x), vec4<f32>(dm.y));
        w[c + 4u] = fma(vec4<f32>(unpack4xU8(hi)), vec4<f32>(dm.x), vec4<f32>(dm.y));
    }
    return w;
}
