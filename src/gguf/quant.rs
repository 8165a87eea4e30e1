//! GGML's quantized block formats as plain Rust: one `#[repr(C)]` struct per
//! block type (with a compile-time size check), a reference dequantizer that
//! matches GGML bit for bit in layout, and simple round-to-nearest quantizers
//! used to build test tensors and tiny test models.
//!
//! This module owns the CPU meaning of every [`GgmlType`]; the GPU layer
//! (`crate::gpu::weights`) repacks the same bytes for the device and is tested
//! against [`dequantize`]. It reads no files: callers pass byte slices, which
//! may start at any address (they come from a memory map), so blocks are
//! always read with `bytemuck::pod_read_unaligned`, never cast in place.
//!
//! The quantizers are not llama.cpp's optimizing ones (K-quants use a plain
//! per-sub-block min/max search); they only promise the error bounds stated
//! in [`max_rel_error`].

use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

use super::GgmlType;

// GGUF is little-endian and the block structs below are read as native Pod
// values.
#[cfg(target_endian = "big")]
compile_error!("wgserve reads GGUF blocks as native little-endian values");

/// Values per block of the 32-element types.
pub const QK: usize = 32;
/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// `value = (nibble - 8) * d`; low nibbles are elements 0..16, high nibbles 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// `value = nibble * d + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// `value = (q5 - 16) * d`, where bit `j` of `qh` (little-endian u32) is the
/// fifth bit of element `j`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `value = q5 * d + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `value = q * d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// 256 values in 16 sub-blocks of 16, each with a 4-bit scale (low nibble of
/// `scales[e/16]`) and a 4-bit min (high nibble): `value = d*sc*q - dmin*m`
/// with 2-bit `q`. Within each half of 128 values (`n`), quarter `j` and lane
/// `l` (`e = 128n + 32j + l`) take bits `2j..2j+2` of `qs[32n + l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// 256 values in 16 sub-blocks of 16 with 6-bit scales stored plus 32 (see
/// [`get_scale_q3k`]): `value = d * (s - 32) * (q3 - 4)`. The low two bits of
/// `q3` sit in `qs` as in [`BlockQ2K`]; its third bit is bit `e / 32` of
/// `hmask[e % 32]` (GGML subtracts 4 where that bit is clear).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

/// 256 values in 8 sub-blocks of 32, each with a 6-bit scale and min packed
/// into `scales` (see [`get_scale_min_k4`]); `value = d*sc*q - dmin*m`.
/// Bytes `qs[32g..32g+32]` hold elements `64g..64g+32` in their low nibbles
/// and `64g+32..64g+64` in their high nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// As [`BlockQ4K`] plus a fifth bit per value: bit `2g` of `qh[l]` for element
/// `64g + l`, bit `2g + 1` for element `64g + 32 + l`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 values in 16 sub-blocks of 16 with signed 8-bit scales:
/// `value = d * scales[e/16] * (q6 - 32)`. Within each half of 128 values
/// (`n`), quarter `i` and lane `l` (`e = 128n + 32i + l`) take their low four
/// bits from `ql[64n + 32(i&1) + l]` (low nibble for `i < 2`, high otherwise)
/// and their top two bits from bits `2i..2i+2` of `qh[32n + l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// gpt-oss's microscaling FP4: an e8m0 exponent and 32 e2m1 values (nibbles
/// laid out as in Q4_0). `value = KVALUES_MXFP4[nibble] * 2^(e - 128)`: the
/// table holds the e2m1 values doubled, and the half scale compensates, as in
/// GGML (`GGML_E8M0_TO_FP32_HALF`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockMxfp4 {
    pub e: u8,
    pub qs: [u8; QK / 2],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockMxfp4>() == 17);

/// The e2m1 values doubled (GGML's `kvalues_mxfp4`), indexed by nibble.
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// `2^(e - 128)`: half of the e8m0 value, exact for every `e` (GGML's
/// `GGML_E8M0_TO_FP32_HALF`; e = 0 and 1 are f32 subnormals).
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block.
pub fn get_scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The inverse of [`get_scale_min_k4`] for eight 6-bit scales and mins.
pub fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    s
}

/// The stored 6-bit scale `k` (0..16) of a Q3_K block, 0..64 (the value used
/// is this minus 32): its low four bits are the low nibble of byte `k` (`k <
/// 8`) or the high nibble of byte `k - 8`; its top two bits are bits `2(k /
/// 4)..2(k / 4) + 2` of byte `8 + k % 4`.
pub fn get_scale_q3k(k: usize, s: &[u8; 12]) -> u8 {
    let lo = if k < 8 { s[k] & 0xF } else { s[k - 8] >> 4 };
    let hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    lo | (hi << 4)
}

/// The inverse of [`get_scale_q3k`] for sixteen 6-bit stored scales.
pub fn pack_scales_q3k(sc: &[u8; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (k, &v) in sc.iter().enumerate() {
        if k < 8 {
            s[k] |= v & 0xF;
        } else {
            s[k - 8] |= (v & 0xF) << 4;
        }
        s[8 + k % 4] |= ((v >> 4) & 3) << (2 * (k / 4));
    }
    s
}

/// GGML's position of the 2-bit field of value `e` in a Q2_K/Q3_K `qs`
/// array: (byte, shift).
fn q2_pos(e: usize) -> (usize, usize) {
    let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
    (32 * n + l, 2 * j)
}

/// One GGML block type: its layout and its reference (de)quantizer.
pub trait Block: Pod {
    const TYPE: GgmlType;
    const ELEMS: usize;
    /// Writes the block's `ELEMS` values into `out`.
    fn dequantize(&self, out: &mut [f32]);
    /// Quantizes exactly `ELEMS` values.
    fn quantize(x: &[f32]) -> Self;
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = ((q & 0xF) as i32 - 8) as f32 * d;
            out[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        // The value of largest magnitude maps to -8 exactly; its sign picks
        // which end of the asymmetric range [-8, 7] it uses.
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
            qs[j] = q0 | (q1 << 4);
        }
        Self {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = (q & 0xF) as f32 * d + m;
            out[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let (d, m) = (f16::from_f32((max - min) / 15.0), f16::from_f32(min));
        let (df, mf) = (d.to_f32(), m.to_f32());
        let mut qs = [0u8; 16];
        for j in 0..16 {
            qs[j] = round_q(x[j] - mf, df, 15) | (round_q(x[j + 16] - mf, df, 15) << 4);
        }
        Self { d, m, qs }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            out[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
            out[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as i32).clamp(0, 31) as u32;
            let q1 = ((x[j + 16] * id + 16.5) as i32).clamp(0, 31) as u32;
            qs[j] = ((q0 & 0xF) | ((q1 & 0xF) << 4)) as u8;
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        Self {
            d: f16::from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            out[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
            out[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let (d, m) = (f16::from_f32((max - min) / 31.0), f16::from_f32(min));
        let (df, mf) = (d.to_f32(), m.to_f32());
        let mut qs = [0u8; 16];
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = u32::from(round_q(x[j] - mf, df, 31));
            let q1 = u32::from(round_q(x[j + 16] - mf, df, 31));
            qs[j] = ((q0 & 0xF) | ((q1 & 0xF) << 4)) as u8;
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        Self {
            d,
            m,
            qh: qh.to_le_bytes(),
            qs,
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        for (q, v) in qs.iter_mut().zip(x) {
            *q = (v * id).round().clamp(-127.0, 127.0) as i8;
        }
        Self {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (e, o) in out.iter_mut().enumerate().take(QK_K) {
            let sc = self.scales[e / 16];
            let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
            let (byte, shift) = q2_pos(e);
            let q = (self.qs[byte] >> shift) & 3;
            *o = dl * q as f32 - ml;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let k = quantize_affine(x, 16, 15, 3);
        let mut scales = [0u8; QK_K / 16];
        for (i, s) in scales.iter_mut().enumerate() {
            *s = k.sc[i] | (k.m[i] << 4);
        }
        let mut qs = [0u8; QK_K / 4];
        for (e, &q) in k.q.iter().enumerate() {
            let (byte, shift) = q2_pos(e);
            qs[byte] |= q << shift;
        }
        Self {
            scales,
            qs,
            d: k.d,
            dmin: k.dmin,
        }
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (e, o) in out.iter_mut().enumerate().take(QK_K) {
            let dl = d * (get_scale_q3k(e / 16, &self.scales) as i32 - 32) as f32;
            let (byte, shift) = q2_pos(e);
            let lo = ((self.qs[byte] >> shift) & 3) as i32;
            let high = (self.hmask[e % 32] >> (e / 32)) & 1 != 0;
            let q = lo - if high { 0 } else { 4 };
            *o = dl * q as f32;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        // Symmetric per 16 values: the largest magnitude maps to +-3 (the
        // grid is -4..=3), with non-negative scales 0..=31 (stored + 32).
        let mut s = [0f32; 16];
        for (i, si) in s.iter_mut().enumerate() {
            let amax = x[16 * i..16 * i + 16]
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()));
            *si = amax / 3.0;
        }
        let d = f16_at_least(s.iter().fold(0f32, |a, &v| a.max(v)) / 31.0);
        let df = d.to_f32();
        let mut sc = [0u8; 16];
        for (i, sci) in sc.iter_mut().enumerate() {
            let v = if df > 0.0 {
                (s[i] / df).ceil().min(31.0) as u8
            } else {
                0
            };
            *sci = v + 32;
        }
        let mut hmask = [0u8; QK_K / 8];
        let mut qs = [0u8; QK_K / 4];
        for (e, &v) in x.iter().enumerate().take(QK_K) {
            let step = df * (sc[e / 16] - 32) as f32;
            let q = if step > 0.0 {
                ((v / step).round() as i32).clamp(-4, 3)
            } else {
                0
            };
            let q = (q + 4) as u8;
            let (byte, shift) = q2_pos(e);
            qs[byte] |= (q & 3) << shift;
            hmask[e % 32] |= (q >> 2) << (e / 32);
        }
        Self {
            hmask,
            qs,
            scales: pack_scales_q3k(&sc),
            d,
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for g in 0..4 {
            let (sc0, m0) = get_scale_min_k4(2 * g, &self.scales);
            let (sc1, m1) = get_scale_min_k4(2 * g + 1, &self.scales);
            let (d0, min0) = (d * sc0 as f32, dmin * m0 as f32);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            for l in 0..32 {
                let q = self.qs[32 * g + l];
                out[64 * g + l] = d0 * (q & 0xF) as f32 - min0;
                out[64 * g + 32 + l] = d1 * (q >> 4) as f32 - min1;
            }
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let k = quantize_k_scales(x, 15);
        let mut qs = [0u8; QK_K / 2];
        for (e, &q) in k.q.iter().enumerate() {
            let (g, half, l) = (e / 64, (e % 64) / 32, e % 32);
            qs[32 * g + l] |= q << (4 * half);
        }
        Self {
            d: k.d,
            dmin: k.dmin,
            scales: pack_scale_min_k4(&k.sc, &k.m),
            qs,
        }
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for g in 0..4 {
            let (sc0, m0) = get_scale_min_k4(2 * g, &self.scales);
            let (sc1, m1) = get_scale_min_k4(2 * g + 1, &self.scales);
            let (d0, min0) = (d * sc0 as f32, dmin * m0 as f32);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            for l in 0..32 {
                let q = self.qs[32 * g + l];
                let h = self.qh[l] >> (2 * g);
                let q0 = (q & 0xF) | ((h & 1) << 4);
                let q1 = (q >> 4) | (((h >> 1) & 1) << 4);
                out[64 * g + l] = d0 * q0 as f32 - min0;
                out[64 * g + 32 + l] = d1 * q1 as f32 - min1;
            }
        }
    }
    fn quantize(x: &[f32]) -> Self {
        let k = quantize_k_scales(x, 31);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for (e, &q) in k.q.iter().enumerate() {
            let (g, half, l) = (e / 64, (e % 64) / 32, e % 32);
            qs[32 * g + l] |= (q & 0xF) << (4 * half);
            qh[l] |= (q >> 4) << (2 * g + half);
        }
        Self {
            d: k.d,
            dmin: k.dmin,
            scales: pack_scale_min_k4(&k.sc, &k.m),
            qh,
            qs,
        }
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;
    const ELEMS: usize = QK_K;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (e, o) in out.iter_mut().enumerate().take(QK_K) {
            let (n, i, l) = (e / 128, (e % 128) / 32, e % 32);
            let lo = (self.ql[64 * n + 32 * (i & 1) + l] >> (4 * (i >> 1))) & 0xF;
            let hi = (self.qh[32 * n + l] >> (2 * i)) & 3;
            let q = (lo | (hi << 4)) as i32 - 32;
            *o = d * self.scales[e / 16] as f32 * q as f32;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        // Symmetric per 16 values: the largest magnitude maps to +-31.
        let mut s = [0f32; 16];
        for (i, si) in s.iter_mut().enumerate() {
            let amax = x[16 * i..16 * i + 16]
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()));
            *si = amax / 31.0;
        }
        let d = f16_at_least(s.iter().fold(0f32, |a, &v| a.max(v)) / 127.0);
        let df = d.to_f32();
        let mut scales = [0i8; 16];
        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for (i, sc) in scales.iter_mut().enumerate() {
            *sc = if df > 0.0 {
                (s[i] / df).ceil().min(127.0) as i8
            } else {
                0
            };
        }
        for (e, &v) in x.iter().enumerate().take(QK_K) {
            let step = df * scales[e / 16] as f32;
            let q = if step > 0.0 {
                ((v / step).round() as i32).clamp(-32, 31)
            } else {
                0
            };
            let q = (q + 32) as u8;
            let (n, i, l) = (e / 128, (e % 128) / 32, e % 32);
            ql[64 * n + 32 * (i & 1) + l] |= (q & 0xF) << (4 * (i >> 1));
            qh[32 * n + l] |= (q >> 4) << (2 * i);
        }
        Self { ql, qh, scales, d }
    }
}

impl Block for BlockMxfp4 {
    const TYPE: GgmlType = GgmlType::MXFP4;
    const ELEMS: usize = QK;
    fn dequantize(&self, out: &mut [f32]) {
        let d = e8m0_to_f32_half(self.e);
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = KVALUES_MXFP4[(q & 0xF) as usize] as f32 * d;
            out[j + 16] = KVALUES_MXFP4[(q >> 4) as usize] as f32 * d;
        }
    }
    fn quantize(x: &[f32]) -> Self {
        // As GGML: the exponent puts the largest magnitude in [4, 8) units,
        // so it lands on (or clips to) the table's top value 6.
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let e = if amax > 0.0 {
            (amax.log2().floor() as i32 - 2 + 127).clamp(0, 255) as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(e);
        // The first of the closest table entries, as GGML's search.
        let nearest = |v: f32| -> u8 {
            let err = |i: usize| (KVALUES_MXFP4[i] as f32 * d - v).abs();
            (1..16).fold(0usize, |best, i| if err(i) < err(best) { i } else { best }) as u8
        };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            qs[j] = nearest(x[j]) | (nearest(x[j + 16]) << 4);
        }
        Self { e, qs }
    }
}

/// The value of largest magnitude, with its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter()
        .fold(0f32, |best, &v| if v.abs() > best.abs() { v } else { best })
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `round(v / step)` clamped to `0..=max` (0 when `step` is 0).
fn round_q(v: f32, step: f32, max: u8) -> u8 {
    if step > 0.0 {
        (v / step).round().clamp(0.0, f32::from(max)) as u8
    } else {
        0
    }
}

/// The nearest f16 at or above `v` (v >= 0), so a range computed from it
/// never shrinks below the data.
fn f16_at_least(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() < v {
        f16::from_bits(h.to_bits() + 1)
    } else {
        h
    }
}

/// Scales, mins and quants of one Q4_K/Q5_K super-block.
struct KScales {
    d: f16,
    dmin: f16,
    sc: [u8; 8],
    m: [u8; 8],
    q: [u8; QK_K],
}

/// [`quantize_affine`] for Q4_K/Q5_K: 8 sub-blocks of 32, 6-bit scales and mins.
fn quantize_k_scales(x: &[f32], qmax: u8) -> KScales {
    let a = quantize_affine(x, 32, 63, qmax);
    KScales {
        d: a.d,
        dmin: a.dmin,
        sc: a.sc.try_into().expect("8 sub-blocks"),
        m: a.m.try_into().expect("8 sub-blocks"),
        q: a.q.try_into().expect("256 values"),
    }
}

/// Scales, mins (one per sub-block) and quants of one affine K-quant super-block.
struct Affine {
    d: f16,
    dmin: f16,
    sc: Vec<u8>,
    m: Vec<u8>,
    q: Vec<u8>,
}

/// Per sub-block min/max quantization of a 256-value super-block into
/// sub-blocks of `sub` values with scales and mins in `0..=smax` and quants
/// in `0..=qmax` (`value = d*sc*q - dmin*m`): the mins are rounded up (the
/// grid starts at or below the data) and then the scales rounded up (the
/// grid ends at or above it), so nothing clips by more than f16 rounding and
/// every error is at most half a step.
fn quantize_affine(x: &[f32], sub: usize, smax: u8, qmax: u8) -> Affine {
    let n_sub = QK_K / sub;
    let smaxf = f32::from(smax);
    let mut lo = vec![0f32; n_sub];
    let mut hi = vec![0f32; n_sub];
    for i in 0..n_sub {
        let (mn, mx) = min_max(&x[sub * i..sub * i + sub]);
        lo[i] = mn.min(0.0);
        hi[i] = mx.max(0.0);
    }
    let dmin = f16_at_least(lo.iter().fold(0f32, |a, &v| a.max(-v)) / smaxf);
    let dminf = dmin.to_f32();
    let mut m = vec![0u8; n_sub];
    let mut range = vec![0f32; n_sub];
    for i in 0..n_sub {
        m[i] = if dminf > 0.0 {
            (-lo[i] / dminf).ceil().min(smaxf) as u8
        } else {
            0
        };
        range[i] = hi[i] + dminf * m[i] as f32;
    }
    let qmaxf = f32::from(qmax);
    let d = f16_at_least(range.iter().fold(0f32, |a, &v| a.max(v)) / (qmaxf * smaxf));
    let df = d.to_f32();
    let mut sc = vec![0u8; n_sub];
    for i in 0..n_sub {
        sc[i] = if df > 0.0 {
            (range[i] / (qmaxf * df)).ceil().min(smaxf) as u8
        } else {
            0
        };
    }
    let mut q = vec![0u8; QK_K];
    for (e, qe) in q.iter_mut().enumerate() {
        let i = e / sub;
        let step = df * sc[i] as f32;
        *qe = round_q(x[e] + dminf * m[i] as f32, step, qmax);
    }
    Affine { d, dmin, sc, m, q }
}

fn dequantize_blocks<B: Block>(bytes: &[u8], out: &mut [f32]) {
    let bsize = size_of::<B>();
    for (raw, o) in bytes
        .chunks_exact(bsize)
        .zip(out.chunks_exact_mut(B::ELEMS))
    {
        bytemuck::pod_read_unaligned::<B>(raw).dequantize(o);
    }
}

fn quantize_blocks<B: Block>(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / B::ELEMS * size_of::<B>());
    for x in values.chunks_exact(B::ELEMS) {
        out.extend_from_slice(bytemuck::bytes_of(&B::quantize(x)));
    }
    out
}

/// Decodes `out.len()` values of type `ty` from `bytes` (GGML layout, any
/// alignment).
///
/// Panics if `out.len()` is not a whole number of blocks or `bytes` is not
/// exactly that many blocks: both sizes come from the same tensor shape, so a
/// mismatch is a bug in the caller, not bad input.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let want = ty.bytes_for(out.len());
    assert!(
        want == Some(bytes.len()),
        "dequantize {ty}: {} values need {want:?} bytes, got {}",
        out.len(),
        bytes.len()
    );
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => dequantize_blocks::<BlockQ4_0>(bytes, out),
        GgmlType::Q4_1 => dequantize_blocks::<BlockQ4_1>(bytes, out),
        GgmlType::Q5_0 => dequantize_blocks::<BlockQ5_0>(bytes, out),
        GgmlType::Q5_1 => dequantize_blocks::<BlockQ5_1>(bytes, out),
        GgmlType::Q8_0 => dequantize_blocks::<BlockQ8_0>(bytes, out),
        GgmlType::Q2K => dequantize_blocks::<BlockQ2K>(bytes, out),
        GgmlType::Q3K => dequantize_blocks::<BlockQ3K>(bytes, out),
        GgmlType::Q4K => dequantize_blocks::<BlockQ4K>(bytes, out),
        GgmlType::Q5K => dequantize_blocks::<BlockQ5K>(bytes, out),
        GgmlType::Q6K => dequantize_blocks::<BlockQ6K>(bytes, out),
        GgmlType::MXFP4 => dequantize_blocks::<BlockMxfp4>(bytes, out),
    }
}

/// Convenience: [`dequantize`] into a new vector of `n` values.
pub fn dequantize_vec(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize(ty, bytes, &mut out);
    out
}

/// Encodes `values` as type `ty` in GGML's layout with a simple
/// round-to-nearest quantizer (see [`max_rel_error`] for its accuracy).
///
/// Panics if `values.len()` is not a whole number of blocks (a test or
/// tool bug: real tensors are never quantized here).
pub fn quantize(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    assert!(
        values.len().is_multiple_of(ty.block_elems()),
        "quantize {ty}: {} values is not a whole number of {}-value blocks",
        values.len(),
        ty.block_elems()
    );
    match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q4_0 => quantize_blocks::<BlockQ4_0>(values),
        GgmlType::Q4_1 => quantize_blocks::<BlockQ4_1>(values),
        GgmlType::Q5_0 => quantize_blocks::<BlockQ5_0>(values),
        GgmlType::Q5_1 => quantize_blocks::<BlockQ5_1>(values),
        GgmlType::Q8_0 => quantize_blocks::<BlockQ8_0>(values),
        GgmlType::Q2K => quantize_blocks::<BlockQ2K>(values),
        GgmlType::Q3K => quantize_blocks::<BlockQ3K>(values),
        GgmlType::Q4K => quantize_blocks::<BlockQ4K>(values),
        GgmlType::Q5K => quantize_blocks::<BlockQ5K>(values),
        GgmlType::Q6K => quantize_blocks::<BlockQ6K>(values),
        GgmlType::MXFP4 => quantize_blocks::<BlockMxfp4>(values),
    }
}

/// The worst round-trip error of [`quantize`] then [`dequantize`] for one
/// block, as a fraction of that block's largest magnitude (for the float
/// types: of each value's own magnitude). The tests hold the quantizers to
/// these bounds; kernel tests use them to size tolerances.
pub fn max_rel_error(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 1.0 / 2048.0,
        GgmlType::BF16 => 1.0 / 256.0,
        // GGML's Q4_0/Q5_0 map the signed extreme to -8/-16, so a value near the
        // opposite extreme clips by up to one step (amax/8, amax/16).
        GgmlType::Q4_0 => 0.126,
        GgmlType::Q5_0 => 0.0635,
        // Half a step of range/15 <= 2*amax/15 (Q4_1), 2*amax/31 (Q5_1), plus f16 scales.
        GgmlType::Q4_1 => 0.07,
        GgmlType::Q5_1 => 0.035,
        GgmlType::Q8_0 => 0.0045,
        // Half a step of (range + dmin)/qmax, with the step rounded up to a 6-bit multiple
        // (Q2_K: 4-bit scales and mins, range <= (2 + 1/15) amax, step <= 16/45 range).
        GgmlType::Q2K => 0.37,
        GgmlType::Q4K => 0.075,
        GgmlType::Q5K => 0.04,
        GgmlType::Q6K => 0.02,
        // Half a step of amax/3 per 16 values, plus up to d = amax/93 from the 5-bit scale.
        GgmlType::Q3K => 0.175,
        // e2m1 keeps 1 mantissa bit and GGML's exponent choice clips (6, 8) units to 6.
        GgmlType::MXFP4 => 0.25,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn bytes_of<B: Block>(b: &B) -> Vec<u8> {
        bytemuck::bytes_of(b).to_vec()
    }

    fn deq(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        dequantize_vec(ty, bytes, bytes.len() / ty.block_bytes() * ty.block_elems())
    }

    #[test]
    fn struct_sizes_match_ggml_type_table() {
        let sizes = [
            (GgmlType::Q4_0, size_of::<BlockQ4_0>()),
            (GgmlType::Q4_1, size_of::<BlockQ4_1>()),
            (GgmlType::Q5_0, size_of::<BlockQ5_0>()),
            (GgmlType::Q5_1, size_of::<BlockQ5_1>()),
            (GgmlType::Q8_0, size_of::<BlockQ8_0>()),
            (GgmlType::Q2K, size_of::<BlockQ2K>()),
            (GgmlType::Q3K, size_of::<BlockQ3K>()),
            (GgmlType::Q4K, size_of::<BlockQ4K>()),
            (GgmlType::Q5K, size_of::<BlockQ5K>()),
            (GgmlType::Q6K, size_of::<BlockQ6K>()),
            (GgmlType::MXFP4, size_of::<BlockMxfp4>()),
        ];
        for (ty, size) in sizes {
            assert_eq!(ty.block_bytes(), size, "{ty}");
        }
    }

    #[test]
    fn q4_0_known_block() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let b = BlockQ4_0 {
            d: f16::from_f32(0.5),
            qs,
        };
        let got = deq(GgmlType::Q4_0, &bytes_of(&b));
        for j in 0..16 {
            assert_eq!(got[j], -4.0 + 0.5 * j as f32, "low nibble {j}");
            assert_eq!(got[16 + j], 3.5 - 0.5 * j as f32, "high nibble {j}");
        }
    }

    #[test]
    fn q4_1_known_block() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | (3 << 4);
        }
        let b = BlockQ4_1 {
            d: f16::from_f32(0.25),
            m: f16::from_f32(-1.0),
            qs,
        };
        let got = deq(GgmlType::Q4_1, &bytes_of(&b));
        for j in 0..16 {
            assert_eq!(got[j], 0.25 * j as f32 - 1.0);
            assert_eq!(got[16 + j], -0.25);
        }
    }

    #[test]
    fn q5_0_and_q5_1_known_blocks() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((j as u8) << 4);
        }
        // Fifth bit set for elements 16..32 only.
        let b0 = BlockQ5_0 {
            d: f16::from_f32(1.0),
            qh: 0xFFFF_0000u32.to_le_bytes(),
            qs,
        };
        let got = deq(GgmlType::Q5_0, &bytes_of(&b0));
        for j in 0..16 {
            assert_eq!(got[j], j as f32 - 16.0);
            assert_eq!(got[16 + j], j as f32);
        }
        // Fifth bit set for elements 0..16, and for element 31.
        let b1 = BlockQ5_1 {
            d: f16::from_f32(2.0),
            m: f16::from_f32(1.0),
            qh: 0x8000_FFFFu32.to_le_bytes(),
            qs,
        };
        let got = deq(GgmlType::Q5_1, &bytes_of(&b1));
        for j in 0..16 {
            assert_eq!(got[j], (j + 16) as f32 * 2.0 + 1.0);
            let hi = if j == 15 { 16 } else { 0 };
            assert_eq!(got[16 + j], (j + hi) as f32 * 2.0 + 1.0);
        }
    }

    #[test]
    fn q8_0_known_block() {
        let mut qs = [0i8; 32];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = (j as i32 * 8 - 128) as i8;
        }
        let b = BlockQ8_0 {
            d: f16::from_f32(0.5),
            qs,
        };
        let got = deq(GgmlType::Q8_0, &bytes_of(&b));
        for (j, g) in got.iter().enumerate() {
            assert_eq!(*g, (j as f32 * 8.0 - 128.0) * 0.5);
        }
    }

    #[test]
    fn k4_scale_packing_known_bytes() {
        let s = [0x41, 2, 3, 4, 5, 6, 7, 0xC8, 0x21, 0x43, 0x65, 0x87];
        // Low sub-blocks: 6 bits each of bytes 0..4 and 4..8.
        assert_eq!(get_scale_min_k4(0, &s), (1, 5));
        assert_eq!(get_scale_min_k4(3, &s), (4, 8));
        // High sub-blocks: nibbles of bytes 8..12 plus the top two bits of bytes 0..8.
        assert_eq!(get_scale_min_k4(4, &s), (1 | (1 << 4), 2));
        assert_eq!(get_scale_min_k4(5, &s), (3, 4));
        assert_eq!(get_scale_min_k4(7, &s), (7, 8 | (3 << 4)));
        let (sc, m): (Vec<u8>, Vec<u8>) = (0..8).map(|j| get_scale_min_k4(j, &s)).unzip();
        let packed = pack_scale_min_k4(&sc.try_into().unwrap(), &m.try_into().unwrap());
        assert_eq!(packed, s);
    }

    #[test]
    fn q4_k_known_block() {
        // Scales 1,2,..,8 and mins 0,1,..,7 with d = 0.5, dmin = 0.25.
        let sc: [u8; 8] = std::array::from_fn(|i| i as u8 + 1);
        let m: [u8; 8] = std::array::from_fn(|i| i as u8);
        let mut qs = [0u8; 128];
        for (i, q) in qs.iter_mut().enumerate() {
            *q = (i % 16) as u8 | (((i + 3) % 16) as u8) << 4;
        }
        let b = BlockQ4K {
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
            scales: pack_scale_min_k4(&sc, &m),
            qs,
        };
        let got = deq(GgmlType::Q4K, &bytes_of(&b));
        for g in 0..4 {
            for l in 0..32 {
                let i = 32 * g + l;
                let (s0, m0) = (2 * g + 1, 2 * g);
                let want_lo = 0.5 * s0 as f32 * (i % 16) as f32 - 0.25 * m0 as f32;
                let want_hi =
                    0.5 * (s0 + 1) as f32 * ((i + 3) % 16) as f32 - 0.25 * (m0 + 1) as f32;
                assert_eq!(got[64 * g + l], want_lo, "g {g} l {l}");
                assert_eq!(got[64 * g + 32 + l], want_hi, "g {g} l {l}");
            }
        }
    }

    #[test]
    fn q5_k_known_block() {
        let sc = [1u8; 8];
        let m = [0u8; 8];
        // All nibbles 1; qh bit 2g+1 set for g = 1 only (elements 96..128 get +16).
        let b = BlockQ5K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(0.0),
            scales: pack_scale_min_k4(&sc, &m),
            qh: [0b1000; 32],
            qs: [0x11; 128],
        };
        let got = deq(GgmlType::Q5K, &bytes_of(&b));
        for (e, &v) in got.iter().enumerate() {
            let want = if (96..128).contains(&e) { 17.0 } else { 1.0 };
            assert_eq!(v, want, "element {e}");
        }
    }

    #[test]
    fn q6_k_known_block() {
        // Low nibbles 1, high nibbles 2; qh gives quarter i the top bits i.
        let scales: [i8; 16] = std::array::from_fn(|i| i as i8 - 8);
        let b = BlockQ6K {
            ql: [0x21; 128],
            qh: [0b11_10_01_00; 64],
            scales,
            d: f16::from_f32(0.5),
        };
        let got = deq(GgmlType::Q6K, &bytes_of(&b));
        let q_of_quarter = [1 - 32, (1 | 16) - 32, (2 | 32) - 32, (2 | 48) - 32];
        for (e, &v) in got.iter().enumerate() {
            let i = (e % 128) / 32;
            let want = 0.5 * ((e / 16) as f32 - 8.0) * q_of_quarter[i] as f32;
            assert_eq!(v, want, "element {e}");
        }
    }

    #[test]
    fn q2_k_known_block() {
        // Sub-block k has scale k and min 15 - k; d = 0.5, dmin = 0.25.
        let scales: [u8; 16] = std::array::from_fn(|k| k as u8 | ((15 - k as u8) << 4));
        let mut qs = [0u8; 64];
        // Byte l of each 32-byte half holds lane l of its four quarters in
        // bit pairs 0, 2, 4, 6.
        qs[0] = 0b11_10_01_00; // elements 0, 32, 64, 96 -> 0, 1, 2, 3
        qs[32] = 0b00_01_10_11; // elements 128, 160, 192, 224 -> 3, 2, 1, 0
        qs[49] = 0b01_00_00_00; // element 128 + 96 + 17 -> 1
        qs[5] = 0b00_00_10_00; // element 32 + 5 -> 2
        let b = BlockQ2K {
            scales,
            qs,
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
        };
        let got = deq(GgmlType::Q2K, &bytes_of(&b));
        let mut q = [0u8; 256];
        for (e, v) in [
            (32, 1),
            (64, 2),
            (96, 3),
            (128, 3),
            (160, 2),
            (192, 1),
            (241, 1),
            (37, 2),
        ] {
            q[e] = v;
        }
        for (e, &v) in got.iter().enumerate() {
            let k = (e / 16) as f32;
            let want = 0.5 * k * q[e] as f32 - 0.25 * (15.0 - k);
            assert_eq!(v, want, "element {e}");
        }
        // Spot checks in plain numbers: element 241 is sub-block 15 (scale
        // 15, min 0), element 96 sub-block 6 (scale 6, min 9).
        assert_eq!(got[241], 7.5);
        assert_eq!(got[96], 0.5 * 6.0 * 3.0 - 0.25 * 9.0);
    }

    #[test]
    fn q3_k_scale_packing_known_bytes() {
        let s = [
            0x10,
            0x32,
            0x54,
            0x76,
            0x98,
            0xBA,
            0xDC,
            0xFE,
            0b11_10_01_00,
            0,
            0,
            0b11,
        ];
        // Low nibbles: bytes 0..8 low for scales 0..8, high for 8..16; top
        // bits: byte 8 + k % 4, bit pair k / 4.
        let want: [u8; 16] = [
            0,
            2,
            4,
            6 | (3 << 4),
            8 | (1 << 4),
            10,
            12,
            14,
            1 | (2 << 4),
            3,
            5,
            7,
            9 | (3 << 4),
            11,
            13,
            15,
        ];
        let got: [u8; 16] = std::array::from_fn(|k| get_scale_q3k(k, &s));
        assert_eq!(got, want);
        assert_eq!(pack_scales_q3k(&want), s);
    }

    #[test]
    fn q3_k_known_block() {
        // Stored scales 30 + k, so sub-block k multiplies by d * (k - 2).
        let sc: [u8; 16] = std::array::from_fn(|k| 30 + k as u8);
        let mut qs = [0u8; 64];
        let mut hmask = [0u8; 32];
        qs[0] = 0b11_10_01_00; // low bits of elements 0, 32, 64, 96: 0, 1, 2, 3
        hmask[0] = 0b101; // third bit of elements 0 and 64
        qs[49] = 0b10_00_00_00; // low bits of element 128 + 96 + 17: 2
        hmask[17] = 0x80; // third bit of element 7 * 32 + 17 = 241
        hmask[5] = 0x10; // third bit of element 4 * 32 + 5 = 133
        let b = BlockQ3K {
            hmask,
            qs,
            scales: pack_scales_q3k(&sc),
            d: f16::from_f32(0.5),
        };
        let got = deq(GgmlType::Q3K, &bytes_of(&b));
        // Every other element has low bits 0 and no third bit: q = -4.
        let mut q = [-4i32; 256];
        for (e, v) in [(0, 0), (32, -3), (64, 2), (96, -1), (241, 2), (133, 0)] {
            q[e] = v;
        }
        for (e, &v) in got.iter().enumerate() {
            let want = 0.5 * ((e / 16) as f32 - 2.0) * q[e] as f32;
            assert_eq!(v, want, "element {e}");
        }
        assert_eq!(got[241], 13.0);
        assert_eq!(got[1], 4.0);
    }

    #[test]
    fn mxfp4_known_block() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        let value = |n: usize| if n < 8 { e2m1[n] } else { -e2m1[n - 8] };
        // e = 127 is a scale of 1: the block decodes to the plain e2m1 values.
        let got = deq(GgmlType::MXFP4, &bytes_of(&BlockMxfp4 { e: 127, qs }));
        for j in 0..16 {
            assert_eq!(got[j], value(j), "element {j}");
            assert_eq!(got[16 + j], value(15 - j), "element {}", 16 + j);
        }
        let got = deq(GgmlType::MXFP4, &bytes_of(&BlockMxfp4 { e: 130, qs }));
        assert_eq!(got[7], 48.0);
        // The subnormal end: 2^(0-127) * 0.5.
        let got = deq(GgmlType::MXFP4, &bytes_of(&BlockMxfp4 { e: 0, qs }));
        assert_eq!(got[1], f32::from_bits(0x0020_0000));
        assert_eq!(e8m0_to_f32_half(1), f32::from_bits(0x0040_0000));
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(127));
    }

    #[test]
    fn float_types_known_values() {
        let vals = [1.0f32, -2.5, 65504.0, 0.0];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(deq(GgmlType::F32, &f32b), vals);
        let f16b = [0x00, 0x3C, 0x00, 0xC1, 0xFF, 0x7B, 0x00, 0x80];
        assert_eq!(deq(GgmlType::F16, &f16b), [1.0, -2.5, 65504.0, -0.0]);
        let bf16b = [0x80, 0x3F, 0x20, 0xC0];
        assert_eq!(deq(GgmlType::BF16, &bf16b), [1.0, -2.5]);
    }

    #[test]
    fn unaligned_input_is_read_correctly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let vals: Vec<f32> = (0..64).map(|_| rng.random_range(-1.0..1.0)).collect();
        for ty in GgmlType::ALL {
            let n = 256.max(ty.block_elems());
            let vals: Vec<f32> = vals.iter().cycle().take(n).copied().collect();
            let bytes = quantize(ty, &vals);
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            assert_eq!(deq(ty, &bytes), deq(ty, &shifted[1..]), "{ty}");
        }
    }

    /// quantize -> dequantize stays within [`max_rel_error`] of each block's
    /// largest magnitude, over blocks of very different scales and with
    /// all-positive, all-negative and all-zero blocks.
    #[test]
    fn round_trip_within_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for ty in GgmlType::ALL {
            let be = ty.block_elems().max(QK_K);
            let n_blocks = 24;
            let mut vals = Vec::new();
            for b in 0..n_blocks {
                // Block magnitudes from 0.02 to 10: much smaller ones push
                // the f16 scales into subnormals, a limit of the formats.
                let scale = 10f32.powi(b % 3 - 1);
                let (lo, hi) = match b % 4 {
                    0 => (0.0, 1.0),
                    1 => (-1.0, 0.0),
                    _ => (-1.0, 1.0),
                };
                for i in 0..be {
                    // A few sub-blocks of small values inside large ones.
                    let sub = if (i / 32) % 3 == 1 { 0.2 } else { 1.0 };
                    vals.push(rng.random_range(lo..hi) * scale * sub);
                }
            }
            vals.extend(std::iter::repeat_n(0.0, be));
            let got = deq(ty, &quantize(ty, &vals));
            let bound = max_rel_error(ty);
            let mut worst = 0f32;
            for (x, y) in vals
                .chunks(ty.block_elems())
                .zip(got.chunks(ty.block_elems()))
            {
                let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (&a, &b) in x.iter().zip(y) {
                    // f16 subnormals (below 2^-14) have a fixed absolute step.
                    let denom = if ty.is_quantized() {
                        amax
                    } else {
                        a.abs().max(2f32.powi(-14))
                    };
                    let err = (a - b).abs();
                    assert!(
                        err <= bound * denom,
                        "{ty}: {a} -> {b}, error {err} > {bound} * {denom}"
                    );
                    if denom > 0.0 {
                        worst = worst.max(err / denom);
                    }
                }
            }
            let of = if ty.is_quantized() {
                "block max"
            } else {
                "value"
            };
            eprintln!("{ty}: worst round-trip error {worst:.5} of {of} (bound {bound})");
        }
    }
}
