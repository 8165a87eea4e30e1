// Dequantization of one BF16 weight unit (32 values): a bf16 is the top half
// of an f32, so widening is a shift. Layout: src/gpu/weights.rs.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

const UNIT_V4: u32 = 8u;

fn bf16_pair(v: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(v << 16u, v & 0xFFFF0000u));
}

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    var w: array<vec4<f32>, UNIT_V4>;
    for (var i = 0u; i < 4u; i++) {
        let v = wq[u * 4u + i];
        w[2u * i] = vec4<f32>(bf16_pair(v.x), bf16_pair(v.y));
        w[2u * i + 1u] = vec4<f32>(bf16_pair(v.z), bf16_pair(v.w));
    }
    return w;
}
