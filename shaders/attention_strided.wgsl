// Paged attention, the CPU-driver variant (lavapipe). One workgroup of LANES
// invocations per (token m, slice of HPI query heads sharing one kv head).
// Invocation t owns the positions j = t (mod LANES) of lo..=pos and runs its
// own online softmax over them, for all HPI heads at once; the LANES partial
// results are merged at the end in lane order.
//
// Why this shape: lavapipe (Mesa 25.0) runs LANES invocations as SIMD lanes
// but loads storage one lane and one 32-bit word at a time, each with a bounds
// check, whenever the address is not a constant; on the 2-core test machine a
// word costs ~25 cycles per lane and attention there costs what its loads
// cost. So every lane loads a different position's K/V row, each cached
// element is loaded once per (token, head slice) whatever the GQA group, an
// f16 cache is read two values per word, and the main loop touches no
// workgroup memory and has no barrier. (On a GPU, attention.wgsl is better:
// this keeps q and HPI * HEAD_DIM accumulators per lane.)
//
// Layouts are those of attention.wgsl (lib/attention_common.wgsl), but the
// K/V caches, [num_blocks][BLOCK_SIZE][N_KV_HEADS][HEAD_DIM] of f32, or of f16
// when KV_F16, are bound here as raw 32-bit words.
//
// Batch invariance: which lane sees which position, the order each lane sees
// them in, and the merge order all depend on the token's position alone.

// #include "lib/attention_common.wgsl"

// Query heads per workgroup: a divisor of N_HEADS / N_KV_HEADS, at most
// MAX_HPI, with HPI * HEAD_DIM / 4 <= MAX_QV.
override HPI: u32 = 1u;
// The cache holds f16 (two per word) instead of f32.
override KV_F16: bool = false;
// Invocations per workgroup, at most MAX_LANES.
override LANES: u32 = 16u;

const MAX_HPI: u32 = 8u;
const MAX_QV: u32 = 256u;
const MAX_LANES: u32 = 32u;
// Stands in for -inf: finite, so exp(mx - s) on it never makes NaN.
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;

// The merge: each lane's max and sum for one head, then one slice of
// accumulators (a vec4 per lane) at a time.
var<workgroup> sh_m: array<f32, MAX_LANES>;
var<workgroup> sh_l: array<f32, MAX_LANES>;
var<workgroup> sh_acc: array<vec4<f32>, MAX_LANES * MAX_LANES>;

// The 4 cache values starting at element 4 * i4.
fn load_k4(i4: u32) -> vec4<f32> {
    if (KV_F16) {
        let w = 2u * i4;
        return vec4<f32>(unpack2x16float(k_cache[w]), unpack2x16float(k_cache[w + 1u]));
    }
    let w = 4u * i4;
    return bitcast<vec4<f32>>(
        vec4<u32>(k_cache[w], k_cache[w + 1u], k_cache[w + 2u], k_cache[w + 3u]),
    );
}

fn load_v4(i4: u32) -> vec4<f32> {
    if (KV_F16) {
        let w = 2u * i4;
        return vec4<f32>(unpack2x16float(v_cache[w]), unpack2x16float(v_cache[w + 1u]));
    }
    let w = 4u * i4;
    return bitcast<vec4<f32>>(
        vec4<u32>(v_cache[w], v_cache[w + 1u], v_cache[w + 2u], v_cache[w + 3u]),
    );
}

@compute @workgroup_size(LANES)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let h0 = wid.x * HPI;
    let kvh = h0 / (N_HEADS / N_KV_HEADS);
    let dv = HEAD_DIM / 4u;
    let row4 = N_KV_HEADS * dv;
    let head_off = kvh * dv;

    // Declared once, not per token: zeroing MAX_QV entries per token would
    // cost more than a short prefill token's attention.
    var qv: array<vec4<f32>, MAX_QV>;
    var acc: array<vec4<f32>, MAX_QV>;
    var mx: array<f32, MAX_HPI>;
    var l: array<f32, MAX_HPI>;

    // y strides over tokens so a batch larger than the 65535-workgroup grid
    // limit still works.
    for (var m = wid.y; m < params.num_tokens; m += nwg.y) {
        let pos = positions[m];
        let table = seq_of_token[m] * params.max_blocks_per_seq;
        let lo = window_start(pos);
        let q_off = (m * N_HEADS + h0) * dv;
        for (var i = 0u; i < HPI * dv; i++) {
            qv[i] = q[q_off + i];
            acc[i] = vec4<f32>(0.0);
        }
        for (var g = 0u; g < HPI; g++) {
            mx[g] = NEG_BIG;
            l[g] = 0.0;
        }

        // This lane's first position: the first j >= lo with j = t (mod LANES).
        for (var j = lo + (t + LANES - lo % LANES) % LANES; j <= pos; j += LANES) {
            let block = block_tables[table + j / BLOCK_SIZE];
            let base = (block * BLOCK_SIZE + j % BLOCK_SIZE) * row4 + head_off;
            var s: array<f32, MAX_HPI>;
            for (var i = 0u; i < dv; i++) {
                let k = load_k4(base + i);
                for (var g = 0u; g < HPI; g++) {
                    s[g] += dot(qv[g * dv + i], k);
                }
            }
            var p: array<f32, MAX_HPI>;
            for (var g = 0u; g < HPI; g++) {
                let sg = s[g] * params.scale;
                // Rescaling by exp(mx - mx) = 1 would change nothing, so it
                // is skipped unless the max grows.
                if (sg > mx[g]) {
                    let alpha = exp(mx[g] - sg);
                    l[g] *= alpha;
                    for (var i = 0u; i < dv; i++) {
                        acc[g * dv + i] *= alpha;
                    }
                    mx[g] = sg;
                }
                p[g] = exp(sg - mx[g]);
                l[g] += p[g];
            }
            for (var i = 0u; i < dv; i++) {
                let v = load_v4(base + i);
                for (var g = 0u; g < HPI; g++) {
                    acc[g * dv + i] += p[g] * v;
                }
            }
        }

        // Merge the lanes, head by head, in lane order.
        for (var g = 0u; g < HPI; g++) {
            sh_m[t] = mx[g];
            sh_l[t] = l[g];
            workgroupBarrier();
            var m_all = NEG_BIG;
            if (params.use_sinks != 0u) {
                // A sink is a logit with no value: it joins the max and the
                // denominator only.
                m_all = sinks[h0 + g];
            }
            for (var i = 0u; i < LANES; i++) {
                m_all = max(m_all, sh_m[i]);
            }
            var l_all = 0.0;
            for (var i = 0u; i < LANES; i++) {
                l_all += sh_l[i] * exp(sh_m[i] - m_all);
            }
            if (params.use_sinks != 0u) {
                l_all += exp(sinks[h0 + g] - m_all);
            }
            let mine = exp(mx[g] - m_all);
            // Lane t writes vec4s c0..c0+LANES of its accumulator, then sums
            // column c0 + t over the lanes.
            for (var c0 = 0u; c0 < dv; c0 += LANES) {
                for (var c = 0u; c < LANES; c++) {
                    if (c0 + c < dv) {
                        sh_acc[t * LANES + c] = acc[g * dv + c0 + c] * mine;
                    }
                }
                workgroupBarrier();
                if (c0 + t < dv) {
                    var total = vec4<f32>(0.0);
                    for (var i = 0u; i < LANES; i++) {
                        total += sh_acc[i * LANES + t];
                    }
                    out[q_off + g * dv + c0 + t] = total / l_all;
                }
                workgroupBarrier();
            }
        }
    }
}
