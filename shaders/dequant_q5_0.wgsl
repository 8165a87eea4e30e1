// Dequantization of one Q5_0 block (32 values): `(q5 - 16) * d`.
// wq: 16 low-nibble bytes as one vec4<u32> (as Q4_0). ws: three words per
// pair of blocks p: [d(2p) | d(2p+1) << 16, qh(2p), qh(2p+1)], where bit e of
// qh is the fifth bit of element e. Layout: src/gpu/weights.rs.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

const UNIT_V4: u32 = 8u;

// Four bits of `qh` (from bit `s`) as 0x10 in each byte of a word.
fn high_bits(qh: u32, s: u32) -> u32 {
    let b = qh >> s;
    return ((b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u)) << 4u;
}

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
