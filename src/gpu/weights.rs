//! Weight tensors on the device, in their quantized form: the repacking of
//! GGUF blocks into 4-byte-aligned arrays, the split of large tensors into
//! row chunks, and the WGSL that reads them back (`shaders/dequant_*.wgsl`,
//! included as `dequant.wgsl` by the matmul and embedding kernels, chosen by
//! [`splice_dequant`]).
//! This module owns that layout; kernels only call `dequant_unit`. It knows
//! nothing of models: callers pass a name, a type, a shape and the bytes.
//!
//! # Layout
//!
//! GGUF blocks of 18, 20, 22, 34, 110, 210 or 17 bytes are not word aligned,
//! so each chunk of rows holds two arrays: `quants` (bound as
//! `array<vec4<u32>>`, read a whole vec4 at a time) and `scales` (bound as
//! `array<u32>`). Blocks are numbered from 0 at the chunk's first row,
//! row-major (`b = row * blocks_per_row + j`). Together the two arrays take
//! exactly the GGUF size (nothing is padded).
//!
//! | type  | quants per block (vec4<u32>)              | scales                                   |
//! |-------|-------------------------------------------|------------------------------------------|
//! | F32   | 8 per 32 values (raw bits)                | none                                     |
//! | F16, BF16 | 4 per 32 values (raw halves)          | none                                     |
//! | Q4_0  | 1: the 16 nibble bytes                    | d (f16), two blocks per word (even low)  |
//! | Q4_1  | 1                                         | one word: d low, m high                  |
//! | Q5_0  | 1: the low-nibble bytes                   | per pair p: [d(2p) \| d(2p+1) << 16, qh(2p), qh(2p+1)] |
//! | Q5_1  | 1                                         | two words: [d \| m << 16, qh]            |
//! | Q8_0  | 2: the 32 signed bytes                    | d (f16), two blocks per word             |
//! | Q2_K  | 5: repacked quants (4), 16 scale bytes | one word: d \| dmin << 16                  |
//! | Q3_K  | 6: repacked quants (4), high bits (2)     | per pair p: [d(2p) \| d(2p+1) << 16, 3 words of 2p's scales, 3 of 2p+1's] |
//! | Q4_K  | 8: the 128 nibble bytes                   | four words: [d \| dmin << 16, scales[0..12]] |
//! | Q5_K  | 10: qh (32 bytes) then the nibble bytes   | four words, as Q4_K                      |
//! | Q6_K  | 13: repacked, see below                   | d (f16), two blocks per word             |
//! | MXFP4 | 1: the 16 nibble bytes                    | e (u8), four blocks per word             |
//!
//! The kernels work in *units* of consecutive values of one row: 32 for the
//! 32-value types and the float types, 64 (a quarter super-block) for the
//! K-quants. Q4_K and Q5_K units are contiguous in GGML's own layout. Q6_K's
//! are not (its high bits for values `l, l+32, l+64, l+96` share a byte), so
//! the loader permutes each super-block's bits so unit `g` (values
//! `64g..64g+64`) reads three contiguous vec4s: low nibbles in vec4s `2g,
//! 2g+1` (byte `l` holds value `l` low and `l+32` high), top bits in vec4
//! `8+g` (byte `l` holds values `l, l+16, l+32, l+48` in bit pairs 0, 2, 4,
//! 6), and the sixteen i8 scales in vec4 12.
//!
//! Q2_K and Q3_K share GGML's 2-bit field layout (byte `l` of each 32-byte
//! half holds lane `l` of four quarters), so they are permuted the same way:
//! unit `g`'s 2-bit fields fill vec4 `g`, byte `l` holding values `l, l+16,
//! l+32, l+48` in bit pairs 0, 2, 4, 6 (as Q6_K's top bits). Q2_K's vec4 4 is
//! its scale bytes as GGML stores them (word `g` is unit `g`'s four). Q3_K's
//! vec4s 4 and 5 hold the third bits, two words per unit (`2g, 2g+1` of the
//! pair): value `v = 4i + c` is bit `i / 2` of byte `c` of the unit's word `i
//! % 2`. Its sixteen 6-bit scales (stored + 32) are regrouped into three
//! words: the low nibbles of scales 0..8 and 8..16 (nibble `k` of the first
//! word is scale `k`'s), then the top bit pairs (byte `g`, pair `k` is scale
//! `4g + k`'s), so a unit reads its four scales from one half-word and one
//! byte. A chunk with an odd number of blocks ends with a one-block pair,
//! [d, 3 words].
//!
//! A tensor whose arrays would exceed the device's storage-binding limit
//! (128 MiB on lavapipe) is split into row chunks, each with its own buffers;
//! kernels run once per chunk.

use std::ops::Range;

use bytemuck::Pod;

use super::shader_include::{expand_with, IncludeError};
use super::{GpuContext, GpuError};
use crate::gguf::quant::{
    get_scale_q3k, BlockMxfp4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use crate::gguf::GgmlType;

/// Values per unit, the slice of a row one `dequant_unit` call expands.
pub fn unit_elems(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256 / 4,
        _ => 32,
    }
}

/// Whether the type has a `scales` array (the float types do not).
pub fn has_scales(ty: GgmlType) -> bool {
    ty.is_quantized()
}

/// The WGSL defining `wq`, `ws`, `UNIT_V4` and `dequant_unit` for `ty`
/// (F32's is also the library's default `dequant.wgsl`).
pub fn dequant_wgsl(ty: GgmlType) -> &'static str {
    match ty {
        GgmlType::F32 => include_str!("../../shaders/dequant_f32.wgsl"),
        GgmlType::F16 => include_str!("../../shaders/dequant_f16.wgsl"),
        GgmlType::BF16 => include_str!("../../shaders/dequant_bf16.wgsl"),
        GgmlType::Q4_0 => include_str!("../../shaders/dequant_q4_0.wgsl"),
        GgmlType::Q4_1 => include_str!("../../shaders/dequant_q4_1.wgsl"),
        GgmlType::Q5_0 => include_str!("../../shaders/dequant_q5_0.wgsl"),
        GgmlType::Q5_1 => include_str!("../../shaders/dequant_q5_1.wgsl"),
        GgmlType::Q8_0 => include_str!("../../shaders/dequant_q8_0.wgsl"),
        GgmlType::Q2K => include_str!("../../shaders/dequant_q2_k.wgsl"),
        GgmlType::Q3K => include_str!("../../shaders/dequant_q3_k.wgsl"),
        GgmlType::Q4K => include_str!("../../shaders/dequant_q4_k.wgsl"),
        GgmlType::Q5K => include_str!("../../shaders/dequant_q5_k.wgsl"),
        GgmlType::Q6K => include_str!("../../shaders/dequant_q6_k.wgsl"),
        GgmlType::MXFP4 => include_str!("../../shaders/dequant_mxfp4.wgsl"),
    }
}

/// `driver` (the kernel file called `shader` in errors, which includes
/// `dequant.wgsl`) with its includes expanded and `ty`'s dequantizer as
/// `dequant.wgsl`.
pub fn splice_dequant(shader: &str, driver: &str, ty: GgmlType) -> Result<String, IncludeError> {
    expand_with(shader, driver, &[("dequant.wgsl", dequant_wgsl(ty))])
}

/// One run of rows of a [`DeviceTensor`] with its own buffers.
#[derive(Debug)]
pub struct WeightChunk {
    /// The tensor rows held here.
    pub rows: Range<u32>,
    /// Binding 1 of the kernels (`wq`).
    pub quants: wgpu::Buffer,
    /// Binding 2 (`ws`); `None` for the float types.
    pub scales: Option<wgpu::Buffer>,
}

/// A GGUF matrix on the device in its quantized form (see the module docs
/// for the layout).
#[derive(Debug)]
pub struct DeviceTensor {
    pub name: String,
    pub ty: GgmlType,
    /// Values per row (GGUF `dims[0]`, the matmul's K).
    pub row_len: u32,
    /// Rows (the matmul's N; the vocabulary for an embedding).
    pub n_rows: u32,
    /// Row chunks in order, covering `0..n_rows`.
    pub chunks: Vec<WeightChunk>,
}

fn invalid(name: &str, message: String) -> GpuError {
    GpuError::Validation {
        what: format!("weight tensor {name}"),
        message,
    }
}

impl DeviceTensor {
    /// Uploads `bytes` (GGUF layout, `n_rows` rows of `row_len` values of
    /// type `ty`, any alignment) as `[row_len, n_rows]`, split into chunks
    /// that fit the device's storage-binding limit.
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        dims: [usize; 2],
        bytes: &[u8],
    ) -> Result<Self, GpuError> {
        let limit = ctx.caps.max_storage_binding.min(ctx.caps.max_buffer_size);
        Self::upload_with_limit(ctx, name, ty, dims, bytes, limit)
    }

    /// As [`DeviceTensor::upload`] with chunks of at most `max_chunk_bytes`
    /// per array (tests use a small value to exercise the split).
    pub fn upload_with_limit(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        dims: [usize; 2],
        bytes: &[u8],
        max_chunk_bytes: u64,
    ) -> Result<Self, GpuError> {
        let [row_len, n_rows] = dims;
        let unit = unit_elems(ty).max(ty.block_elems());
        if row_len == 0 || n_rows == 0 || !row_len.is_multiple_of(unit) {
            return Err(invalid(
                name,
                format!(
                    "shape [{row_len}, {n_rows}] of {ty}: rows must be a nonzero multiple of {unit} \
                     values (a whole number of {ty} blocks and kernel units)"
                ),
            ));
        }
        if u32::try_from(n_rows).is_err() || u32::try_from(row_len).is_err() {
            return Err(invalid(
                name,
                format!("shape [{row_len}, {n_rows}] does not fit 32-bit indexing"),
            ));
        }
        let row_bytes = row_len / ty.block_elems() * ty.block_bytes();
        if Some(bytes.len()) != row_bytes.checked_mul(n_rows) {
            return Err(invalid(
                name,
                format!(
                    "{} bytes given, but [{row_len}, {n_rows}] of {ty} takes {}",
                    bytes.len(),
                    row_bytes as u128 * n_rows as u128
                ),
            ));
        }
        let blocks_per_row = row_len / ty.block_elems();
        let quant_row_bytes = quant_bytes(ty, blocks_per_row) as u64;
        // Scale words may round up per chunk; keep a word of slack per array.
        let fits = |rows: usize| {
            let blocks = rows * blocks_per_row;
            quant_bytes(ty, blocks) as u64 <= max_chunk_bytes
                && scale_words(ty, blocks) as u64 * 4 <= max_chunk_bytes
        };
        let mut rows_per_chunk = (max_chunk_bytes / quant_row_bytes.max(1)) as usize;
        rows_per_chunk = rows_per_chunk.min(n_rows);
        while rows_per_chunk > 0 && !fits(rows_per_chunk) {
            rows_per_chunk -= 1;
        }
        if rows_per_chunk == 0 {
            return Err(GpuError::BindingTooLarge {
                label: format!("{name} (one row)"),
                bytes: quant_row_bytes,
                max: max_chunk_bytes,
            });
        }
        let mut chunks = Vec::new();
        let mut r0 = 0;
        while r0 < n_rows {
            let r1 = (r0 + rows_per_chunk).min(n_rows);
            let (q, s) = repack(ty, &bytes[r0 * row_bytes..r1 * row_bytes]);
            let label = format!("{name} rows {r0}..{r1}");
            let quants = ctx.storage_from(&format!("{label} quants"), &q)?;
            let scales = if has_scales(ty) {
                Some(ctx.storage_from(&format!("{label} scales"), &s)?)
            } else {
                None
            };
            chunks.push(WeightChunk {
                rows: r0 as u32..r1 as u32,
                quants,
                scales,
            });
            r0 = r1;
        }
        Ok(Self {
            name: name.to_string(),
            ty,
            row_len: row_len as u32,
            n_rows: n_rows as u32,
            chunks,
        })
    }

    /// Units ([`unit_elems`] values) per row.
    pub fn units_per_row(&self) -> u32 {
        self.row_len / unit_elems(self.ty) as u32
    }

    /// Device memory taken by all chunks.
    pub fn device_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| c.quants.size() + c.scales.as_ref().map_or(0, |s| s.size()))
            .sum()
    }
}

/// Bytes of the `quants` array for `blocks` GGML blocks.
pub(crate) fn quant_bytes(ty: GgmlType, blocks: usize) -> usize {
    let per_block = match ty {
        GgmlType::F32 => 4,
        GgmlType::F16 | GgmlType::BF16 => 2,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::MXFP4 => 16,
        GgmlType::Q8_0 => 32,
        GgmlType::Q2K => 80,
        GgmlType::Q3K => 96,
        GgmlType::Q4K => 128,
        GgmlType::Q5K => 160,
        GgmlType::Q6K => 208,
    };
    blocks * per_block
}

/// Words of the `scales` array for `blocks` GGML blocks.
fn scale_words(ty: GgmlType, blocks: usize) -> usize {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 0,
        GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q6K => blocks.div_ceil(2),
        GgmlType::Q4_1 | GgmlType::Q2K => blocks,
        GgmlType::Q3K => 3 * blocks + blocks.div_ceil(2),
        GgmlType::Q5_0 => 3 * blocks.div_ceil(2),
        GgmlType::Q5_1 => 2 * blocks,
        GgmlType::Q4K | GgmlType::Q5K => 4 * blocks,
        GgmlType::MXFP4 => blocks.div_ceil(4),
    }
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Packs 16-bit values two per word, the even index in the low half.
fn push_half(out: &mut Vec<u32>, index: usize, bits: u16) {
    if index.is_multiple_of(2) {
        out.push(u32::from(bits));
    } else {
        *out.last_mut().expect("even half pushed first") |= u32::from(bits) << 16;
    }
}

fn blocks<B: Pod>(bytes: &[u8]) -> impl Iterator<Item = B> + '_ {
    bytes
        .chunks_exact(size_of::<B>())
        .map(bytemuck::pod_read_unaligned::<B>)
}

/// Repacks whole rows of GGUF bytes into the (quants, scales) word arrays of
/// the module docs.
fn repack(ty: GgmlType, bytes: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let n_blocks = bytes.len() / ty.block_bytes();
    let mut q = Vec::with_capacity(quant_bytes(ty, n_blocks) / 4);
    let mut s = Vec::with_capacity(scale_words(ty, n_blocks));
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => q.extend(words(bytes)),
        GgmlType::Q4_0 => {
            for (i, b) in blocks::<BlockQ4_0>(bytes).enumerate() {
                push_half(&mut s, i, b.d.to_bits());
                q.extend(words(&b.qs));
            }
        }
        GgmlType::Q4_1 => {
            for b in blocks::<BlockQ4_1>(bytes) {
                s.push(u32::from(b.d.to_bits()) | u32::from(b.m.to_bits()) << 16);
                q.extend(words(&b.qs));
            }
        }
        GgmlType::Q5_0 => {
            let all: Vec<BlockQ5_0> = blocks(bytes).collect();
            for pair in all.chunks(2) {
                let d1 = pair.get(1).map_or(0, |b| b.d.to_bits());
                s.push(u32::from(pair[0].d.to_bits()) | u32::from(d1) << 16);
                s.push(u32::from_le_bytes(pair[0].qh));
                s.push(pair.get(1).map_or(0, |b| u32::from_le_bytes(b.qh)));
                for b in pair {
                    q.extend(words(&b.qs));
                }
            }
        }
        GgmlType::Q5_1 => {
            for b in blocks::<BlockQ5_1>(bytes) {
                s.push(u32::from(b.d.to_bits()) | u32::from(b.m.to_bits()) << 16);
                s.push(u32::from_le_bytes(b.qh));
                q.extend(words(&b.qs));
            }
        }
        GgmlType::Q8_0 => {
            for (i, b) in blocks::<BlockQ8_0>(bytes).enumerate() {
                push_half(&mut s, i, b.d.to_bits());
                q.extend(words(bytemuck::cast_slice(&b.qs)));
            }
        }
        GgmlType::Q2K => {
            for b in blocks::<BlockQ2K>(bytes) {
                s.push(u32::from(b.d.to_bits()) | u32::from(b.dmin.to_bits()) << 16);
                q.extend(words(&permute_2bit(&b.qs)));
                q.extend(words(&b.scales));
            }
        }
        GgmlType::Q3K => {
            let all: Vec<BlockQ3K> = blocks(bytes).collect();
            for pair in all.chunks(2) {
                let d1 = pair.get(1).map_or(0, |b| b.d.to_bits());
                s.push(u32::from(pair[0].d.to_bits()) | u32::from(d1) << 16);
                for b in pair {
                    s.extend(repack_q3k_scales(&b.scales));
                    q.extend(words(&permute_2bit(&b.qs)));
                    q.extend(words(&repack_q3k_hmask(&b.hmask)));
                }
            }
        }
        GgmlType::Q4K => {
            for b in blocks::<BlockQ4K>(bytes) {
                s.push(u32::from(b.d.to_bits()) | u32::from(b.dmin.to_bits()) << 16);
                s.extend(words(&b.scales));
                q.extend(words(&b.qs));
            }
        }
        GgmlType::Q5K => {
            for b in blocks::<BlockQ5K>(bytes) {
                s.push(u32::from(b.d.to_bits()) | u32::from(b.dmin.to_bits()) << 16);
                s.extend(words(&b.scales));
                q.extend(words(&b.qh));
                q.extend(words(&b.qs));
            }
        }
        GgmlType::Q6K => {
            for (i, b) in blocks::<BlockQ6K>(bytes).enumerate() {
                push_half(&mut s, i, b.d.to_bits());
                q.extend(words(&repack_q6k(&b)));
            }
        }
        GgmlType::MXFP4 => {
            for (i, b) in blocks::<BlockMxfp4>(bytes).enumerate() {
                if i.is_multiple_of(4) {
                    s.push(0);
                }
                *s.last_mut().expect("pushed above") |= u32::from(b.e) << (8 * (i % 4));
                q.extend(words(&b.qs));
            }
        }
    }
    (q, s)
}

/// A Q6_K super-block's quants and scales in unit-contiguous order (module
/// docs): 128 low-nibble bytes, 64 top-bit bytes, 16 scale bytes.
fn repack_q6k(b: &BlockQ6K) -> [u8; 208] {
    let mut out = [0u8; 208];
    for e in 0..256 {
        // GGML's position of value e.
        let (n, i, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo = (b.ql[64 * n + 32 * (i & 1) + l] >> (4 * (i >> 1))) & 0xF;
        let hi = (b.qh[32 * n + l] >> (2 * i)) & 3;
        // Its position in unit g.
        let (g, v) = (e / 64, e % 64);
        out[32 * g + v % 32] |= lo << (4 * (v / 32));
        out[128 + 16 * g + v % 16] |= hi << (2 * (v / 16));
    }
    out[192..].copy_from_slice(bytemuck::cast_slice(&b.scales));
    out
}

/// Q2_K/Q3_K `qs` (GGML: value `e = 128n + 32j + l` in bits `2j..2j+2` of
/// byte `32n + l`) in unit-contiguous order (module docs): unit `g`'s 16
/// bytes, byte `v % 16` holding unit value `v` in bit pair `v / 16`.
fn permute_2bit(qs: &[u8; 64]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for e in 0..256 {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = (qs[32 * n + l] >> (2 * j)) & 3;
        let (g, v) = (e / 64, e % 64);
        out[16 * g + v % 16] |= q << (2 * (v / 16));
    }
    out
}

/// Q3_K's third bits (GGML: value `e` in bit `e / 32` of `hmask[e % 32]`) in
/// unit-contiguous order (module docs): unit `g`'s 8 bytes, value `v = 4i +
/// c` in bit `i / 2` of byte `4 (i % 2) + c`.
fn repack_q3k_hmask(hmask: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for e in 0..256 {
        let h = (hmask[e % 32] >> (e / 32)) & 1;
        let (g, v) = (e / 64, e % 64);
        let (i, c) = (v / 4, v % 4);
        out[8 * g + 4 * (i % 2) + c] |= h << (i / 2);
    }
    out
}

/// Q3_K's sixteen 6-bit scales regrouped (module docs): the low nibbles of
/// scales 0..8, of scales 8..16, then the top bit pairs, four per byte.
fn repack_q3k_scales(scales: &[u8; 12]) -> [u32; 3] {
    let mut out = [0u32; 3];
    for k in 0..16 {
        let sc = u32::from(get_scale_q3k(k, scales));
        out[k / 8] |= (sc & 0xF) << (4 * (k % 8));
        out[2] |= (sc >> 4) << (2 * k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant;
    use crate::gpu::testing::{ctx, random_f32, rng};

    #[test]
    fn arrays_take_exactly_the_gguf_size() {
        for ty in GgmlType::ALL {
            let n = 4 * 256;
            let bytes = quant::quantize(ty, &vec![0.5; n]);
            let (q, s) = repack(ty, &bytes);
            assert_eq!((q.len() + s.len()) * 4, bytes.len(), "{ty}");
            assert_eq!(q.len() * 4, quant_bytes(ty, n / ty.block_elems()), "{ty}");
            assert_eq!(s.len(), scale_words(ty, n / ty.block_elems()), "{ty}");
        }
    }

    #[test]
    fn splice_replaces_only_the_dequant_section() {
        let driver = include_str!("../../shaders/matmul.wgsl");
        let out = splice_dequant("matmul.wgsl", driver, GgmlType::Q8_0).unwrap();
        assert!(out.contains("unpack4xI8"));
        assert!(!out.contains("bitcast<vec4<f32>>(wq["));
        assert!(out.contains("fn main("));
        assert!(
            !out.lines()
                .any(|l| l.trim_start().starts_with("// #include")),
            "nested includes are expanded too"
        );
        assert!(out.contains("fn hsum"), "and the driver's own");
        // F32 is the file as written, its includes expanded.
        let f32_out = splice_dequant("matmul.wgsl", driver, GgmlType::F32).unwrap();
        assert_eq!(
            f32_out,
            crate::gpu::shader_include::expand("matmul.wgsl", driver).unwrap()
        );
        assert!(f32_out.contains("bitcast<vec4<f32>>(wq["));
    }

    /// Every spliced kernel (each type into each driver) validates with naga;
    /// the standalone files are covered by the shader_source test.
    #[test]
    fn spliced_kernels_compile_with_naga() {
        let drivers = [
            ("matmul", include_str!("../../shaders/matmul.wgsl")),
            ("embedding", include_str!("../../shaders/embedding.wgsl")),
            ("moe_matmul", include_str!("../../shaders/moe_matmul.wgsl")),
        ];
        let mut failures = Vec::new();
        for (dname, driver) in drivers {
            for ty in GgmlType::ALL {
                let src = splice_dequant(dname, driver, ty).unwrap();
                let res = naga::front::wgsl::parse_str(&src)
                    .map_err(|e| e.emit_to_string(&src))
                    .and_then(|m| {
                        naga::valid::Validator::new(
                            naga::valid::ValidationFlags::all(),
                            naga::valid::Capabilities::all(),
                        )
                        .validate(&m)
                        .map(|_| ())
                        .map_err(|e| e.emit_to_string(&src))
                    });
                if let Err(e) = res {
                    failures.push(format!("{dname} {ty}:\n{e}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    #[test]
    fn splits_into_row_chunks_under_the_limit() {
        let ctx = ctx();
        let (k, n) = (256, 37);
        let vals = random_f32(&mut rng(1), k * n, 1.0);
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q6K,
            GgmlType::Q3K,
            GgmlType::F16,
        ] {
            let bytes = quant::quantize(ty, &vals);
            let limit = 5 * quant_bytes(ty, k / ty.block_elems()) as u64 + 3;
            let t = DeviceTensor::upload_with_limit(ctx, "t", ty, [k, n], &bytes, limit).unwrap();
            assert_eq!(t.chunks.len(), n.div_ceil(5), "{ty}");
            let mut next = 0;
            for c in &t.chunks {
                assert_eq!(c.rows.start, next);
                assert!(c.quants.size() <= limit);
                next = c.rows.end;
            }
            assert_eq!(next, n as u32);
            // Exact but for a half-used scale word per chunk (and 16-byte minimums).
            let dev = t.device_bytes() as usize;
            assert!(
                dev >= bytes.len() && dev <= bytes.len() + 32 * t.chunks.len(),
                "{ty}"
            );
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let ctx = ctx();
        let bytes = quant::quantize(GgmlType::Q4_0, &[0.0; 64]);
        let e = DeviceTensor::upload(ctx, "w", GgmlType::Q4_0, [64, 2], &bytes).unwrap_err();
        assert!(e.to_string().contains("bytes given"), "{e}");
        let e = DeviceTensor::upload(ctx, "w", GgmlType::Q4K, [64, 1], &bytes).unwrap_err();
        assert!(e.to_string().contains("multiple of 256"), "{e}");
        let e = DeviceTensor::upload_with_limit(ctx, "w", GgmlType::Q4_0, [64, 1], &bytes, 16)
            .unwrap_err();
        assert!(matches!(e, GpuError::BindingTooLarge { .. }), "{e}");
    }
}
