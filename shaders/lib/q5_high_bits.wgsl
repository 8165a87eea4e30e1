// The fifth bits of Q5_0 and Q5_1: qh holds one bit per element of a block.

// Four bits of `qh` (from bit `s`) as 0x10 in each byte of a word.
fn high_bits(qh: u32, s: u32) -> u32 {
    let b = qh >> s;
    return ((b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u)) << 4u;
}
