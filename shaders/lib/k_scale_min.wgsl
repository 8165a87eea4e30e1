// The 6-bit (scale, min) pairs of a Q4_K or Q5_K super-block, from its three
// scale words s (GGML's 12 scale bytes, little-endian).

fn scale_byte(s: vec3<u32>, k: u32) -> u32 {
    return (s[k >> 2u] >> (8u * (k & 3u))) & 0xFFu;
}

// GGML's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..8).
fn scale_min(s: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(scale_byte(s, j) & 63u), f32(scale_byte(s, j + 4u) & 63u));
    }
    let b = scale_byte(s, j + 4u);
    let sc = (b & 0xFu) | ((scale_byte(s, j - 4u) >> 6u) << 4u);
    let m = (b >> 4u) | ((scale_byte(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}
