// Dequantization of one F16 weight unit (32 values), spliced into the matmul
// and embedding kernels in place of their F32 default (see src/gpu/weights.rs
// for the layout). Each vec4<u32> of `wq` holds 8 halves.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

const UNIT_V4: u32 = 8u;

fn dequant_unit(u: u32) -> array<vec4<f32>, UNIT_V4> {
    var w: array<vec4<f32>, UNIT_V4>;
    for (var i = 0u; i < 4u; i++) {
        let v = wq[u * 4u + i];
        w[2u * i] = vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
        w[2u * i + 1u] = vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
    }
    return w;
}
