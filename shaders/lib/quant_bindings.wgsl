// The two arrays of a quantized weight chunk, at the bindings every kernel
// that reads weights leaves free for them: wq (the quants, read a vec4 at a
// time) and ws (the scales). Layout: src/gpu/weights.rs.

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;
