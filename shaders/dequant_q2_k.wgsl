// Dequantization of one Q2_K unit: 64 values, a quarter g of a 256-value
// super-block, `d*sc*q - dmin*m` with 2-bit q and a 4-bit (scale, min) pair
// per 16 values. The loader repacks GGML's 2-bit fields so each unit's are
// contiguous: wq holds 5 vec4<u32> per super-block, first one per unit (byte
// l holds elements l, l+16, l+32, l+48 in bit pairs 0, 2, 4, 6), then the 16
// scale bytes as GGML stores them (low nibble scale, high nibble min; word g
// is unit g's four). ws: one word per super-block, d | dmin << 16.
// Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 16u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let sb = u >> 2u;
    let g = u & 3u;
    let dm = unpack2x16float(ws[sb]);
    let base = 5u * sb;
    let q = wq[base + g];
    let s = unpack4xU8(wq[base + 4u][g]);
    let sc = vec4<f32>(s & vec4<u32>(0xFu)) * dm.x;
    let mn = -(vec4<f32>(s >> vec4<u32>(4u)) * dm.y);
    var w: array<vec4<f32>, UNIT_V4>;
    // vec4 i holds elements 4i..4i+4 (sub-block i / 4): bit pair i / 4 of
    // word i % 4.
    for (var i = 0u; i < 16u; i++) {
        let k = i >> 2u;
        let qi = (q[i & 3u] >> (2u * k)) & 0x03030303u;
        w[i] = fma(vec4<f32>(unpack4xU8(qi)), vec4<f32>(sc[k]), vec4<f32>(mn[k]));
    }
    return w;
}
