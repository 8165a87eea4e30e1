// Dequantization of one MXFP4 block (32 values): e2m1 nibbles laid out as
// Q4_0, times 2^(e - 127). GGML stores the e2m1 table doubled with a half
// scale; the product is the same power-of-two scaling, computed here from the
// nibble's bits. wq: 16 nibble bytes as one vec4<u32>; ws: the e8m0 exponent
// bytes, four blocks per word. Layout: src/gpu/weights.rs.

// #include "lib/quant_bindings.wgsl"

const UNIT_V4: u32 = 8u;

// GGML's doubled e2m1 values {0,1,2,3,4,6,8,12} with sign, for four nibbles.
fn e2m1x2(n: vec4<u32>) -> vec4<f32> {
    let i = n & vec4<u32>(7u);
    let big = (vec4<u32>(2u) + (i & vec4<u32>(1u))) << ((i >> vec4<u32>(1u)) - vec4<u32>(1u));
    let mag = vec4<f32>(select(i, big, i >= vec4<u32>(4u)));
    return select(mag, -mag, n >= vec4<u32>(8u));
}

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    let e = (ws[u >> 2u] >> (8u * (u & 3u))) & 0xFFu;
    // 2^(e - 128), the half scale (e < 2 gives f32 subnormals, as in GGML).
    let d = bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << e, e < 2u));
    let v = wq[u];
    var w: array<vec4<f32>, UNIT_V4>;
    for (var c = 0u; c < 4u; c++) {
        w[c] = e2m1x2(unpack4xU8(v[c] & 0x0F0F0F0Fu)) * d;
        w[c + 4u] = e2m1x2(unpack4xU8((v[c] >> 4u) & 0x0F0F0F0Fu)) * d;
    }
    return w;
}
