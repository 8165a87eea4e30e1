// Paged attention for a batch of M new tokens (prefill chunks and decode steps
// alike). One workgroup per (query head h, token m): the token attends over
// its sequence's positions lo..=pos (lo = 0, or pos + 1 - window with a sliding
// window), reading K and V through the sequence's block table.
//
// Layouts: the K/V caches are [num_blocks][BLOCK_SIZE][N_KV_HEADS][HEAD_DIM]
// kv_t; the other bindings are lib/attention_common.wgsl's.
//
// Batch invariance: positions are visited in tiles of WG anchored at multiples
// of WG, each tile's max and sum are taken in position order, and the value
// sums are split over a fixed number of lanes combined in lane order. Every
// choice depends on the token's position alone, so a token gets bitwise the
// same output whatever else is in the batch and however it was scheduled.

alias kv_t = f32;

// #include "lib/attention_common.wgsl"

// Threads per workgroup, and positions per tile (one score per thread).
const WG: u32 = 64u;
// Largest HEAD_DIM / 4 the workgroup arrays hold (head_dim 256).
const MAX_DV: u32 = 64u;
// Stands in for -inf: finite, so max/exp arithmetic on it never makes NaN.
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(2) var<storage, read> k_cache: array<vec4<kv_t>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<kv_t>>;

var<workgroup> sh_q: array<vec4<f32>, MAX_DV>;
var<workgroup> sh_s: array<f32, WG>;
var<workgroup> sh_p: array<f32, WG>;
var<workgroup> sh_slot: array<u32, WG>;
var<workgroup> sh_acc: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let h = wid.x;
    let dv = HEAD_DIM / 4u;
    // The value sums run on `lanes` groups of dv threads; thread t owns the
    // vec4 column c of head_dim and every lanes-th position of a tile.
    let lanes = WG / dv;
    let c = t % dv;
    let lane = t / dv;
    let kvh = h / (N_HEADS / N_KV_HEADS);
    let row4 = N_KV_HEADS * dv;
    let head_off = kvh * dv;

    // y strides over tokens so a batch larger than the 65535-workgroup grid
    // limit still works.
    for (var m = wid.y; m < params.num_tokens; m += nwg.y) {
        let pos = positions[m];
        let table = seq_of_token[m] * params.max_blocks_per_seq;
        let lo = window_start(pos);
        if (t < dv) {
            sh_q[t] = q[(m * N_HEADS + h) * dv + t];
        }
        // A sink is a logit with no value: starting the running softmax from
        // it (max = sink, sum = exp(0) = 1) puts it in the denominator.
        var mx = NEG_BIG;
        var l = 0.0;
        if (params.use_sinks != 0u) {
            mx = sinks[h];
            l = 1.0;
        }
        var acc = vec4<f32>(0.0);
        workgroupBarrier();

        for (var tile0 = (lo / WG) * WG; tile0 <= pos; tile0 += WG) {
            let j = tile0 + t;
            let valid = j >= lo && j <= pos;
            var s = NEG_BIG;
            var slot = 0u;
            if (valid) {
                let block = block_tables[table + j / BLOCK_SIZE];
                slot = block * BLOCK_SIZE + j % BLOCK_SIZE;
                let base = slot * row4 + head_off;
                var d = 0.0;
                for (var i = 0u; i < dv; i++) {
                    d += dot(sh_q[i], vec4<f32>(k_cache[base + i]));
                }
                s = d * params.scale;
            }
            sh_s[t] = s;
            workgroupBarrier();

            // The tile's valid positions are first..<n (tile-relative).
            let n = min(WG, pos + 1u - tile0);
            var first = 0u;
            if (lo > tile0) {
                first = lo - tile0;
            }
            var tile_max = NEG_BIG;
            for (var i = first; i < n; i++) {
                tile_max = max(tile_max, sh_s[i]);
            }
            let m_new = max(mx, tile_max);
            let alpha = exp(mx - m_new);
            mx = m_new;
            sh_p[t] = select(0.0, exp(s - m_new), valid);
            // Written here, not with sh_s: slower threads may still be
            // reading the previous tile's slots until the barrier above.
            sh_slot[t] = slot;
            workgroupBarrier();

            var tile_sum = 0.0;
            for (var i = first; i < n; i++) {
                tile_sum += sh_p[i];
            }
            l = l * alpha + tile_sum;
            acc *= alpha;
            if (lane < lanes) {
                for (var i = first + lane; i < n; i += lanes) {
                    let v = v_cache[sh_slot[i] * row4 + head_off + c];
                    acc += sh_p[i] * vec4<f32>(v);
                }
            }
        }

        sh_acc[t] = acc;
        workgroupBarrier();
        if (t < dv) {
            var total = sh_acc[t];
            for (var p = 1u; p < lanes; p++) {
                total += sh_acc[p * dv + t];
            }
            out[(m * N_HEADS + h) * dv + t] = total / l;
        }
        // sh_q and sh_acc are rewritten for the next token.
        workgroupBarrier();
    }
}
