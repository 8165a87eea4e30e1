// Dequantization of one Q4_K unit: 64 values, a quarter g of a 256-value
// super-block, `d*sc*q - dmin*m` with two 6-bit (scale, min) pairs.
// wq: the super-block's 128 nibble bytes as 8 vec4<u32>, GGML's order (unit g
// is vec4s 2g and 2g+1: low nibbles elements 0..32, high nibbles 32..64).
// ws: four words per super-block: [d | dmin << 16, scales 0..4, 4..8, 8..12].
// Layout: src/gpu/weights.rs.

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
    let qa = wq[8u * sb + 2u * g];
    let qb = wq[8u * sb + 2u * g + 1u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        w[c] = fma(vec4<f32>(unpack4xU8(qa[c] & 0x0F0F0F0Fu)), d0, m0);
        w[c + 4u] = fma(vec4<f32>(unpack4xU8(qb[c] & 0x0F0F0F0Fu)), d0, m0);
        w[c + 8u] = fma(vec4<f32>(unpack4xU8((qa[c] >> 4u) & 0x0F0F0F0Fu)), d1, m1);
        w[c + 12u] = fma(vec4<f32>(unpack4xU8((qb[c] >> 4u) & 0x0F0F0F0Fu)), d1, m1);
    }
    return w;
}
