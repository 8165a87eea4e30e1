// Dequantization of one Q3_K unit: 64 values, a quarter g of a 256-value
// super-block, `d * (s - 32) * (q3 - 4)` with one 6-bit scale s per 16
// values. The loader repacks GGML's Q3_K so each unit's bits are contiguous:
// wq holds 6 vec4<u32> per super-block, first the low two bits (one vec4 per
// unit, as Q2_K: byte l holds elements l, l+16, l+32, l+48 in bit pairs 0, 2,
// 4, 6), then the third bits (two words per unit, 2g and 2g+1 of vec4s 4..6:
// element 4i+c is bit i/2 of byte c of word i%2). ws, per pair of
// super-blocks: [d0 | d1 << 16, then three words for each: the low nibbles of
// scales 0..8, of 8..16, and the top bit pairs (byte g, pair k: scale 4g+k)].
// Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 16u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let sb = u >> 2u;
    let g = u & 3u;
    let pb = 7u * (sb >> 1u);
    let d = unpack2x16float(ws[pb])[sb & 1u];
    let s0 = pb + 1u + 3u * (sb & 1u);
    let lo = vec4<u32>((ws[s0 + (g >> 1u)] >> (16u * (g & 1u))) & 0xFFFFu);
    let hi = vec4<u32>((ws[s0 + 2u] >> (8u * g)) & 0xFFu);
    let sh = vec4<u32>(0u, 2u, 4u, 6u);
    let raw = ((lo >> (2u * sh)) & vec4<u32>(0xFu)) | (((hi >> sh) & vec4<u32>(3u)) << vec4<u32>(4u));
    let sc = (vec4<f32>(raw) - 32.0) * d;
    let base = 6u * sb;
    let q = wq[base + g];
    let hv = wq[base + 4u + (g >> 1u)];
    let h0 = hv[2u * (g & 1u)];
    let h1 = hv[2u * (g & 1u) + 1u];
    var w: array<vec4<f32>, UNIT_V4>;
    // vec4 i holds elements 4i..4i+4 (sub-block i / 4): low bits from bit
    // pair i / 4 of word i % 4 of q, third bits from bit i / 2 of h0 or h1.
    for (var i = 0u; i < 16u; i++) {
        let k = i >> 2u;
        let l2 = (q[i & 3u] >> (2u * k)) & 0x03030303u;
        let hw = select(h0, h1, (i & 1u) != 0u);
        let h = ((hw >> (i >> 1u)) & 0x01010101u) << 2u;
        w[i] = (vec4<f32>(unpack4xU8(l2 | h)) - 4.0) * sc[k];
    }
    return w;
}
