//! `kv_write`: copies a batch's new K and V rows into the paged KV cache, and
//! the types that describe that cache ([`KvCacheLayout`], [`KvDtype`]) and a
//! step's token-to-page map ([`PagedBatch`]), which paged attention reads too.
//! This module owns the cache's memory layout; it does not allocate blocks
//! (the scheduler's block pool does) or own the cache buffers (the shard does).
//!
//! Layouts (agreed with the team):
//! - Per layer, one K and one V buffer, each
//!   `[num_blocks][block_size][n_kv_heads][head_dim]` of `kv_t`, where `kv_t` is
//!   f16 when the device has SHADER_F16 and f32 otherwise ([`KvDtype`]). Block
//!   ids are global indices into that buffer; slot `block * block_size + i`
//!   holds position `i` of that block.
//! - A batch of M new tokens from S sequences: `positions [M] u32` (absolute
//!   position in its sequence), `seq_of_token [M] u32` (its row in
//!   `block_tables`), `slot_mapping [M] u32` (`block_id * block_size +
//!   position % block_size`; a slot past the cache, e.g. `u32::MAX`, is skipped,
//!   for padding tokens), `block_tables [S][max_blocks_per_seq] u32`.
//! - New k and v: `[M][n_kv_heads][head_dim]` f32.

use bytemuck::{Pod, Zeroable};

use super::entry;
use crate::gpu::shader_include::expand;
use crate::gpu::shader_source::specialise;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/kv_write.wgsl");
/// Matches `WG` in kv_write.wgsl.
const WG: u32 = 64;
/// The per-dimension workgroup grid limit every Vulkan device guarantees; the
/// shaders stride over tokens past it.
pub(crate) const MAX_GRID_Y: u32 = 65_535;

/// Element type of the KV cache buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    F32,
    F16,
}

impl KvDtype {
    /// f16 where the device can store and compute it, else f32.
    pub fn for_device(ctx: &GpuContext) -> Self {
        if ctx.caps.shader_f16 {
            KvDtype::F16
        } else {
            KvDtype::F32
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }

    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
        }
    }

    /// The shader source with `kv_t` set to this type.
    pub(crate) fn specialise(self, source: &str) -> String {
        specialise(source, &[("kv_t", self.wgsl())])
    }
}

/// Errors from building the KV write or paged attention kernels.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("head_dim {0} is not supported: it must be a multiple of 4 between 4 and 256")]
    HeadDim(u32),
    #[error("block_size must be at least 1")]
    BlockSize,
    #[error("n_kv_heads must be at least 1")]
    NoKvHeads,
    #[error("n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}; GQA needs whole groups of query heads")]
    HeadGroups { n_heads: u32, n_kv_heads: u32 },
    #[error("the KV cache dtype is f16 but this device lacks SHADER_F16; use KvDtype::F32")]
    F16Unsupported,
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// The shape of one layer's K (or V) cache buffer, minus its block count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheLayout {
    /// Positions per block (16 by default).
    pub block_size: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub dtype: KvDtype,
}

impl KvCacheLayout {
    /// Checks the shape is one the kernels handle on this device.
    pub fn validate(&self, ctx: &GpuContext) -> Result<(), KvError> {
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(4) || self.head_dim > 256 {
            return Err(KvError::HeadDim(self.head_dim));
        }
        if self.block_size == 0 {
            return Err(KvError::BlockSize);
        }
        if self.n_kv_heads == 0 {
            return Err(KvError::NoKvHeads);
        }
        if self.dtype == KvDtype::F16 && !ctx.caps.shader_f16 {
            return Err(KvError::F16Unsupported);
        }
        Ok(())
    }

    /// Elements per slot (one position of one layer): `n_kv_heads * head_dim`.
    pub fn slot_elems(&self) -> u64 {
        u64::from(self.n_kv_heads) * u64::from(self.head_dim)
    }

    /// Bytes of one block in one layer's K (or V) buffer.
    pub fn block_bytes(&self) -> u64 {
        u64::from(self.block_size) * self.slot_elems() * self.dtype.bytes()
    }

    /// Size of one layer's K (or V) buffer holding `num_blocks` blocks.
    pub fn buffer_bytes(&self, num_blocks: u32) -> u64 {
        u64::from(num_blocks) * self.block_bytes()
    }
}

/// One step's token-to-page map, shared by every layer's KV write and
/// attention (see the module docs for the layouts).
#[derive(Clone, Copy)]
pub struct PagedBatch<'a> {
    /// M: tokens in the batch.
    pub num_tokens: u32,
    pub positions: &'a wgpu::Buffer,
    pub seq_of_token: &'a wgpu::Buffer,
    pub slot_mapping: &'a wgpu::Buffer,
    pub block_tables: &'a wgpu::Buffer,
    /// Row stride of `block_tables`.
    pub max_blocks_per_seq: u32,
}

/// One layer's K and V cache buffers (two distinct buffers).
#[derive(Clone, Copy)]
pub struct LayerCache<'a> {
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) num_tokens: u32,
    pub(super) _pad: [u32; 3],
}

/// Writes new K/V rows into their slots.
pub struct KvWrite {
    pipeline: wgpu::ComputePipeline,
    layout: KvCacheLayout,
}

impl KvWrite {
    pub fn new(ctx: &GpuContext, layout: KvCacheLayout) -> Result<Self, KvError> {
        layout.validate(ctx)?;
        let source = layout
            .dtype
            .specialise(&expand("kv_write.wgsl", SOURCE).map_err(GpuError::from)?);
        let module = ctx.shader_module("kv_write", &source)?;
        let row4 = (layout.slot_elems() / 4) as f64;
        let pipeline = ctx.compute_pipeline("kv_write", &module, "main", &[("ROW4", row4)])?;
        Ok(Self { pipeline, layout })
    }

    pub fn layout(&self) -> &KvCacheLayout {
        &self.layout
    }

    /// Records `cache.k[slot_mapping[m]] = k[m]` (and the same for v) for the
    /// batch's tokens, converting to the cache dtype. Attention dispatched
    /// later in the same encoder sees these writes.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        batch: &PagedBatch<'_>,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        cache: LayerCache<'_>,
    ) {
        if batch.num_tokens == 0 {
            return;
        }
        let params = Params {
            num_tokens: batch.num_tokens,
            _pad: [0; 3],
        };
        let entries = [
            entry(1, k),
            entry(2, v),
            entry(3, batch.slot_mapping),
            entry(4, cache.k),
            entry(5, cache.v),
        ];
        let row4 = (self.layout.slot_elems() / 4) as u32;
        let groups = [row4.div_ceil(WG), batch.num_tokens.min(MAX_GRID_Y), 1];
        ctx.dispatch(pass, "kv_write", &self.pipeline, &params, &entries, groups);
    }
}

/// Host-side helpers shared by the KV write and attention tests.
#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// The cache element bits for `x` (f32 bits, or f16 bits widened).
    pub fn to_cache(dtype: KvDtype, xs: &[f32]) -> Vec<u8> {
        match dtype {
            KvDtype::F32 => bytemuck::cast_slice(xs).to_vec(),
            KvDtype::F16 => {
                let h: Vec<half::f16> = xs.iter().map(|&x| half::f16::from_f32(x)).collect();
                bytemuck::cast_slice(&h).to_vec()
            }
        }
    }

    /// What storing `x` in the cache and reading it back gives.
    pub fn round(dtype: KvDtype, x: f32) -> f32 {
        match dtype {
            KvDtype::F32 => x,
            KvDtype::F16 => half::f16::from_f32(x).to_f32(),
        }
    }

    /// Reads a whole cache buffer back as f32.
    pub fn read_cache(ctx: &GpuContext, dtype: KvDtype, buf: &wgpu::Buffer) -> Vec<f32> {
        match dtype {
            KvDtype::F32 => ctx.read::<f32>(buf).unwrap(),
            KvDtype::F16 => ctx
                .read::<half::f16>(buf)
                .unwrap()
                .into_iter()
                .map(f32::from)
                .collect(),
        }
    }

    /// The dtypes this device can run (f16 only with SHADER_F16).
    pub fn dtypes(ctx: &GpuContext) -> Vec<KvDtype> {
        let mut d = vec![KvDtype::F32];
        if ctx.caps.shader_f16 {
            d.push(KvDtype::F16);
        } else {
            eprintln!("device lacks SHADER_F16: f16 KV cache not tested");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng};
    use rand::seq::SliceRandom;

    /// Writes `m` tokens to a shuffled set of slots of a cache already full of
    /// other data, plus one padding token (slot u32::MAX), and checks every
    /// slot: written ones hold the input (rounded to the cache dtype), the rest
    /// are bitwise unchanged.
    fn check_write(layout: KvCacheLayout, num_blocks: u32, m: usize, seed: u64) {
        let ctx = ctx();
        let mut r = rng(seed);
        let row = layout.slot_elems() as usize;
        let n_slots = (num_blocks * layout.block_size) as usize;
        assert!(m < n_slots);
        let k = random_f32(&mut r, m * row, 1.0);
        let v = random_f32(&mut r, m * row, 1.0);
        let mut all: Vec<u32> = (0..n_slots as u32).collect();
        all.shuffle(&mut r);
        let mut slots: Vec<u32> = all[..m].to_vec();
        // A padding token in the middle of the batch: skipped, not written.
        let pad = m / 2;
        slots[pad] = u32::MAX;
        let old_k = random_f32(&mut r, n_slots * row, 4.0);
        let old_v = random_f32(&mut r, n_slots * row, 4.0);
        let k_cache = ctx
            .storage_from("k cache", &to_cache(layout.dtype, &old_k))
            .unwrap();
        let v_cache = ctx
            .storage_from("v cache", &to_cache(layout.dtype, &old_v))
            .unwrap();
        let kb = ctx.storage_from("k", &k).unwrap();
        let vb = ctx.storage_from("v", &v).unwrap();
        let slot_buf = ctx.storage_from("slots", &slots).unwrap();
        let unused = ctx.storage_from("unused", &[0u32; 4]).unwrap();
        let batch = PagedBatch {
            num_tokens: m as u32,
            positions: &unused,
            seq_of_token: &unused,
            slot_mapping: &slot_buf,
            block_tables: &unused,
            max_blocks_per_seq: 1,
        };
        let kw = KvWrite::new(ctx, layout).unwrap();
        let mut enc = ctx.encoder("kv_write test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let cache = LayerCache {
                k: &k_cache,
                v: &v_cache,
            };
            kw.encode(ctx, &mut pass, &batch, &kb, &vb, cache);
        }
        ctx.submit("kv_write", enc).unwrap();
        let got_k = read_cache(ctx, layout.dtype, &k_cache);
        let got_v = read_cache(ctx, layout.dtype, &v_cache);

        let mut want_k: Vec<f32> = old_k.iter().map(|&x| round(layout.dtype, x)).collect();
        let mut want_v: Vec<f32> = old_v.iter().map(|&x| round(layout.dtype, x)).collect();
        let mut written = vec![false; n_slots];
        for (t, &s) in slots.iter().enumerate() {
            if s == u32::MAX {
                continue;
            }
            let s = s as usize;
            written[s] = true;
            for i in 0..row {
                want_k[s * row + i] = round(layout.dtype, k[t * row + i]);
                want_v[s * row + i] = round(layout.dtype, v[t * row + i]);
            }
        }
        // Untouched slots (the padding token's row included) stay bitwise.
        for s in (0..n_slots).filter(|&s| !written[s]) {
            let r = s * row..(s + 1) * row;
            assert_eq!(got_k[r.clone()], want_k[r.clone()], "k slot {s} changed");
            assert_eq!(got_v[r.clone()], want_v[r.clone()], "v slot {s} changed");
        }
        // Written slots: exact for f32; for f16 the device rounds (RNE,
        // like `half`), so allow at most one f16 ulp at |x| < 1.
        let tol = match layout.dtype {
            KvDtype::F32 => 0.0,
            KvDtype::F16 => 1.0 / 1024.0,
        };
        let what = format!("kv_write {:?} bs {}", layout.dtype, layout.block_size);
        assert_close(&format!("{what} k"), &got_k, &want_k, tol);
        assert_close(&format!("{what} v"), &got_v, &want_v, tol);
    }

    #[test]
    fn writes_slots_and_leaves_the_rest() {
        let ctx = ctx();
        for dtype in dtypes(ctx) {
            for (block_size, n_kv_heads, head_dim) in [(16, 3, 64), (8, 2, 128)] {
                let layout = KvCacheLayout {
                    block_size,
                    n_kv_heads,
                    head_dim,
                    dtype,
                };
                check_write(layout, 11, 37, 7 + u64::from(block_size));
            }
        }
    }

    /// More tokens than one grid dimension holds: the shader's stride over
    /// tokens must reach every one.
    #[test]
    fn writes_past_the_grid_limit() {
        let layout = KvCacheLayout {
            block_size: 16,
            n_kv_heads: 1,
            head_dim: 4,
            dtype: KvDtype::F32,
        };
        let m = MAX_GRID_Y as usize + 1000;
        check_write(layout, (m as u32).div_ceil(16) + 2, m, 3);
    }

    #[test]
    fn bad_layouts_are_errors() {
        let ctx = ctx();
        let ok = KvCacheLayout {
            block_size: 16,
            n_kv_heads: 2,
            head_dim: 64,
            dtype: KvDtype::F32,
        };
        assert!(ok.validate(ctx).is_ok());
        for (bad, what) in [
            (KvCacheLayout { head_dim: 66, ..ok }, "head_dim 66"),
            (
                KvCacheLayout {
                    head_dim: 512,
                    ..ok
                },
                "head_dim 512",
            ),
            (
                KvCacheLayout {
                    block_size: 0,
                    ..ok
                },
                "block_size",
            ),
            (
                KvCacheLayout {
                    n_kv_heads: 0,
                    ..ok
                },
                "n_kv_heads",
            ),
        ] {
            let err = KvWrite::new(ctx, bad).err().unwrap();
            assert!(
                err.to_string().contains(what.split(' ').next().unwrap()),
                "{what}: {err}"
            );
        }
        assert_eq!(ok.block_bytes(), 16 * 2 * 64 * 4);
        assert_eq!(ok.buffer_bytes(10), 10 * 16 * 2 * 64 * 4);
    }
}
