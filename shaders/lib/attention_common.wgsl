// What the two paged-attention kernels (attention.wgsl for GPUs,
// attention_strided.wgsl for CPU drivers) share: the shape overrides, the
// parameters, every binding but the K/V caches (2 and 3, whose element type
// differs), and the sliding window. Layouts:
//   q, out        [M][N_HEADS][HEAD_DIM] f32
//   positions     [M] u32   absolute position of each token in its sequence
//   seq_of_token  [M] u32   row of block_tables this token reads
//   block_tables  [S][max_blocks_per_seq] u32, global block ids
//   sinks         [N_HEADS] f32, read only when use_sinks != 0

override HEAD_DIM: u32 = 64u;
override N_HEADS: u32 = 1u;
override N_KV_HEADS: u32 = 1u;
override BLOCK_SIZE: u32 = 16u;

struct Params {
    num_tokens: u32,
    max_blocks_per_seq: u32,
    window: u32,
    use_sinks: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read> seq_of_token: array<u32>;
@group(0) @binding(6) var<storage, read> block_tables: array<u32>;
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;

// The first position a token at `pos` attends to: 0, or pos + 1 - window
// with a sliding window.
fn window_start(pos: u32) -> u32 {
    var lo = 0u;
    if (params.window > 0u && pos >= params.window) {
        lo = pos + 1u - params.window;
    }
    return lo;
}
