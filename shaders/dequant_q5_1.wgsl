// Dequantization of one Q5_1 block (32 values): `q5 * d + m`.
// wq: 16 low-nibble bytes as one vec4<u32> (as Q4_0). ws: two words per
// block: [d | m << 16, qh], bit e of qh the fifth bit of element e.
// Layout: src/gpu/weights.rs.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

const UNIT_V4: u32 = 8u;

// Four bits of `qh` (from bit `s`) as 0x10 in each byte of a word.
fn high_bits(qh: u32, s: u32) -> u32 {
    let b = qh >> s;
    return ((b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u)) << 4u;
}

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
