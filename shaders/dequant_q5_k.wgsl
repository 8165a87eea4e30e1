// Dequantization of one Q5_K unit: 64 values, a quarter g of a 256-value
// super-block, `d*sc*q5 - dmin*m`. wq: ten vec4<u32> per super-block, first
// qh (32 bytes: bit 2g of byte l is the fifth bit of element 64g+l, bit 2g+1
// that of 64g+32+l), then the 128 nibble bytes as in Q4_K. ws: four words per
// super-block, as Q4_K. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 16u;

// #include "lib/k_scale_min.wgsl"

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let sb = u >> 2u;
    let g = u & 3u;
    let dm = unpack2x16float(ws[4u * sb]);
    let s = vec3<u32>(ws[4u * sb + 1u], ws[4u * sb + 2u], ws[4u * sb + 3u]);
    let sm0 = scale_min(s, 2u * g);
    let sm1 = scale_min(s, 2u * g + 1u);
    let d0 = vec4<f32>(dm.x * sm0.x);
    let m0 = vec4<f32>(-(dm.y * sm0.y));
    let d1 = vec4<f32>(dm.x * sm1.x);
    let m1 = vec4<f32>(-(dm.y * sm1.y));
    let base = 10u * sb;
    let ha = wq[base];
    let hb = wq[base + 1u];
    let qa = wq[base + 2u + 2u * g];
    let qb = wq[base + 3u + 2u * g];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        let h0a = ((ha[c] >> (2u * g)) & 0x01010101u) << 4u;
        let h0b = ((hb[c] >> (2u * g)) & 0x01010101u) << 4u;
        let h1a = ((ha[c] >> (2u * g + 1u)) & 0x01010101u) << 4u;
        let h1b = ((hb[c] >> (2u * g + 1u)) & 0x01010101u) << 4u;
        w[c] = fma(vec4<f32>(unpack4xU8((qa[c] & 0x0F0F0F0Fu) | h0a)), d0, m0);
        w[c + 4u] = fma(vec4<f32>(unpack4xU8((qb[c] & 0x0F0F0F0Fu) | h0b)), d0, m0);
        w[c + 8u] = fma(vec4<f32>(unpack4xU8(((qa[c] >> 4u) & 0x0F0F0F0Fu) | h1a)), d1, m1);
        w[c + 12u] = fma(vec4<f32>(unpack4xU8(((qb[c] >> 4u) & 0x0F0F0F0Fu) | h1b)), d1, m1);
    }
    return w;
}
