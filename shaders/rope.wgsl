// Rotary position embedding, in place on x = [tokens][n_heads][head_dim],
// following GGML's rope (normal = interleaved, and neox modes) with YaRN.
//
// One invocation per rotated pair. Pair i (0 <= i < n_rot / 2) of a head is
// (2i, 2i + 1) in interleaved mode, (i, i + n_rot / 2) in neox mode; dims at
// and beyond n_rot are left alone. The host precomputes per pair
//   freqs[i].x = freq_base^(-2i / n_rot) / freq_factor[i]
//   freqs[i].y = YaRN ramp(i) * ext_factor   (0 without YaRN)
// so the angle is one f32 multiply of the position, then GGML's rope_yarn:
//   theta_extrap = pos * freqs[i].x, theta_interp = freq_scale * theta_extrap,
//   theta = theta_interp * (1 - mix) + theta_extrap * mix   (YaRN only),
//   cos/sin(theta) scaled by mscale (attn_factor, YaRN-corrected on the host).

override WG: u32 = 256u;

struct Params {
    tokens: u32,
    n_heads: u32,
    head_dim: u32,
    half: u32,       // n_rot / 2: pairs per head
    neox: u32,
    yarn: u32,       // ext_factor != 0
    freq_scale: f32,
    mscale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> freqs: array<vec2<f32>>;

// 2*pi split so that k * TWO_PI_A and k * TWO_PI_B are exact for k < 2^16:
// GPU sin/cos are only accurate near [-pi, pi] (NVIDIA's own reduction loses
// ~|theta| * 2^-24), and positions in the thousands give angles in the
// thousands.
const TWO_PI_A: f32 = 6.28125;
const TWO_PI_B: f32 = 0.0019378662109375;
const TWO_PI_C: f32 = -2.559031372584286e-06;
const INV_TWO_PI: f32 = 0.15915493667125702;

fn reduce_angle(theta: f32) -> f32 {
    let k = round(theta * INV_TWO_PI);
    return ((theta - k * TWO_PI_A) - k * TWO_PI_B) - k * TWO_PI_C;
}

// #include "lib/flat_index.wgsl"

@compute @workgroup_size(WG)
fn rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    if (idx >= params.tokens * params.n_heads * params.half) {
        return;
    }
    let i = idx % params.half;
    let head = idx / params.half; // token * n_heads + h
    let token = head / params.n_heads;
    let base = head * params.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if (params.neox != 0u) {
        a = base + i;
        b = a + params.half;
    }

    let f = freqs[i];
    let theta_extrap = f32(positions[token]) * f.x;
    var theta = params.freq_scale * theta_extrap;
    if (params.yarn != 0u) {
        theta = theta * (1.0 - f.y) + theta_extrap * f.y;
    }
    let r = reduce_angle(theta);
    let c = cos(r) * params.mscale;
    let s = sin(r) * params.mscale;

    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
