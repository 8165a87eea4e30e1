// Dequantization of one Q6_K unit: 64 contiguous values, a quarter g of a
// 256-value super-block, `d * sc * (q6 - 32)` with one signed 8-bit scale per
// 16 values. The loader repacks GGML's Q6_K so each unit's bits are
// contiguous: wq holds 13 vec4<u32> per super-block, first the low nibbles (2
// vec4 per unit: byte l holds element l low and l+32 high), then the top two
// bits (1 vec4 per unit: byte l holds elements l, l+16, l+32, l+48 in bit
// pairs 0, 2, 4, 6), then the 16 scale bytes. ws: d as f16, two super-blocks
// per word. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 16u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let sb = u >> 2u;
    let g = u & 3u;
    let d = unpack2x16float(ws[sb >> 1u])[sb & 1u];
    let base = 13u * sb;
    let la = wq[base + 2u * g];
    let lb = wq[base + 2u * g + 1u];
    let h = wq[base + 8u + g];
    let sc = vec4<f32>(unpack4xI8(wq[base + 12u][g])) * d;
    var w: array<vec4<f32>, UNIT_V4>;
    // vec4 i holds elements 4i..4i+4: low nibbles from word i % 8 of la|lb
    // (high nibbles for i >= 8), top bits from word i % 4 of h, bit pair i / 4.
    for (var i = 0u; i < 16u; i++) {
        let lw = select(la[i & 3u], lb[i & 3u], (i & 4u) != 0u);
        let lo = (lw >> (4u * (i >> 3u))) & 0x0F0F0F0Fu;
        let hi = ((h[i & 3u] >> (2u * (i >> 2u))) & 0x03030303u) << 4u;
        w[i] = (vec4<f32>(unpack4xU8(lo | hi)) - 32.0) * sc[i >> 2u];
    }
    return w;
}
