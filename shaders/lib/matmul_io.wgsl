// The activations of the dense and the mixture-of-experts matmul: x [rows][K]
// read as vec4s, y written as f32, and the bias (bound to a dummy when
// unused). Bindings 1 and 2 are the weight's (lib/quant_bindings.wgsl).

@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
