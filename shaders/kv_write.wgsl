// KV write: copies each new token's k and v rows into the paged K and V caches
// at the slot the scheduler chose for it (slot = block_id * block_size +
// position % block_size), converting f32 to the cache element type kv_t.
//
// Layouts: k, v are [M][ROW] f32 with ROW = n_kv_heads * head_dim; each cache is
// [num_blocks * block_size][ROW] kv_t, so slot s starts at element s * ROW.
// Rows are moved as vec4s (ROW is a multiple of 4). A slot outside the cache
// (u32::MAX marks a padding token) is skipped, so a bad slot never writes
// another sequence's page.

alias kv_t = f32;

// vec4s per cache slot: n_kv_heads * head_dim / 4.
override ROW4: u32 = 16u;

const WG: u32 = 64u;

struct Params {
    num_tokens: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> slot_mapping: array<u32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<vec4<kv_t>>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<vec4<kv_t>>;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x;
    if (i >= ROW4) {
        return;
    }
    let n_slots = arrayLength(&k_cache) / ROW4;
    // y strides over tokens so a batch larger than the 65535-workgroup grid
    // limit still works.
    for (var m = gid.y; m < params.num_tokens; m += nwg.y) {
        let slot = slot_mapping[m];
        if (slot < n_slots) {
            let dst = slot * ROW4 + i;
            let src = m * ROW4 + i;
            k_cache[dst] = vec4<kv_t>(k_new[src]);
            v_cache[dst] = vec4<kv_t>(v_new[src]);
        }
    }
}
