// Dequantization of one F32 weight unit (32 values): eight vec4 of raw f32
// bits. The default of `// #include "dequant.wgsl"` in the matmul and
// embedding kernels; src/gpu/weights.rs swaps in another type's file.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

const UNIT_V4: u32 = 8u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    var w: array<vec4<f32>, UNIT_V4>;
    for (var i = 0u; i < UNIT_V4; i++) {
        w[i] = bitcast<vec4<f32>>(wq[u * UNIT_V4 + i]);
    }
    return w;
}
