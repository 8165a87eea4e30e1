// Mixture-of-experts routing (gpt-oss): for each token, the K experts with
// the largest raw router logits (ties to the lower expert id), and their
// weights, a softmax over those K logits only.
//
// logits: [M][E] f32 (router matmul output, bias included).
// ids: [M][K] u32, in descending logit order. weights: [M][K] f32.
// One invocation per token, which walks its E logits itself: the result
// depends on nothing but the token's own row (batch invariant).

override WG: u32 = 64u;

const MAX_K: u32 = 8u;

struct Params {
    m: u32,
    n_experts: u32,
    k: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> weights: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m = (wid.x + wid.y * params.groups_x) * WG + lid;
    if (m >= params.m) {
        return;
    }
    let row = m * params.n_experts;
    var chosen: array<u32, MAX_K>;
    var val: array<f32, MAX_K>;
    for (var s = 0u; s < params.k; s++) {
        // The largest logit not yet chosen. A chosen expert is excluded by
        // id, so even a row of NaNs yields K distinct ids; a NaN is replaced
        // by any number that follows it.
        var best = params.n_experts;
        var best_v = 0.0;
        for (var e = 0u; e < params.n_experts; e++) {
            var taken = false;
            for (var t = 0u; t < s; t++) {
                taken = taken || chosen[t] == e;
            }
            let v = logits[row + e];
            if (!taken && (best == params.n_experts || v > best_v || (best_v != best_v && v == v))) {
                best = e;
                best_v = v;
            }
        }
        chosen[s] = best;
        val[s] = best_v;
    }
    // val[0] is the largest chosen logit: subtracting it keeps exp <= 1.
    let mx = val[0];
    var total = 0.0;
    for (var s = 0u; s < params.k; s++) {
        val[s] = exp(val[s] - mx);
        total = total + val[s];
    }
    for (var s = 0u; s < params.k; s++) {
        ids[m * params.k + s] = chosen[s];
        weights[m * params.k + s] = val[s] / total;
    }
}
