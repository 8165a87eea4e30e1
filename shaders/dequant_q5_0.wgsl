// Dequantization of one Q5_0 block (32 values): `(q5 - 16) * d`.
// wq: 16 low-nibble bytes as one vec4<u32> (as Q4_0). ws: three words per
// pair of blocks p: [d(2p) | d(2p+1) << 16, qh(2p), qh(2p+1)], where bit e of
// qh is the fifth bit of element e. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

// #include "lib/q5_high_bits.wgsl"

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let p = 3u * (u >> 1u);
    let d = unpack2x16float(ws[p])[u & 1u];
    let qh = ws[p + 1u + (u & 1u)];
    let v = wq[u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        let lo = (v[c] & 0x0F0F0F0Fu) | high_bits(qh, 4u * c);
        let hi = ((v[c] >> 4u) & 0x0F0F0F0Fu) | high_bits(qh, 16u + 4u * c);
        w[c] = (vec4<f32>(unpack4xU8(lo)) - 16.0) * d;
        w[c + 4u] = (vec4<f32>(unpack4xU8(hi)) - 16.0) * d;
    }
    return w;
}
