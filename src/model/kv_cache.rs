//! The paged KV cache on the device: for each layer a shard holds, one K and
//! one V buffer of `num_blocks` pages (`[num_blocks][block_size][n_kv_heads]
//! [head_dim]`, f16 where the device has SHADER_F16). There is no
//! per-sequence cache anywhere: sequences reach their pages through block
//! tables built by the scheduler. Which page holds what is decided by
//! `crate::kv::BlockPool`; this module only owns the memory.

use crate::gpu::kernels::kv_write::{KvCacheLayout, KvDtype, LayerCache};
use crate::gpu::{GpuContext, GpuError};

use super::spec::ModelSpec;

/// How many blocks fit a memory budget, for `n_layers` layers of this shape.
/// Also capped so one layer's K (or V) buffer fits one storage binding.
pub fn blocks_for_budget(
    layout: &KvCacheLayout,
    n_layers: usize,
    budget_bytes: u64,
    max_binding: u64,
) -> u32 {
    let per_block_all_layers = 2 * n_layers as u64 * layout.block_bytes();
    let by_budget = budget_bytes / per_block_all_layers.max(1);
    let by_binding = max_binding / layout.block_bytes().max(1);
    by_budget
        .min(by_binding)
        .min(u64::from(u32::MAX / layout.block_size)) as u32
}

pub fn layout_for(ctx: &GpuContext, spec: &ModelSpec, block_size: u32) -> KvCacheLayout {
    layout_with(ctx, spec, block_size, false)
}

/// As [`layout_for`]; `exact` keeps K and V in f32 even where the device
/// has f16 (twice the memory, no rounding: what matching a float32
/// reference such as transformers needs).
pub fn layout_with(
    ctx: &GpuContext,
    spec: &ModelSpec,
    block_size: u32,
    exact: bool,
) -> KvCacheLayout {
    KvCacheLayout {
        block_size,
        n_kv_heads: spec.n_kv_heads as u32,
        head_dim: spec.head_dim as u32,
        dtype: if exact {
            KvDtype::F32
        } else {
            KvDtype::for_device(ctx)
        },
    }
}

pub struct DeviceKvCache {
    pub layout: KvCacheLayout,
    pub num_blocks: u32,
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
}

impl DeviceKvCache {
    pub fn new(
        ctx: &GpuContext,
        layout: KvCacheLayout,
        n_layers: usize,
        num_blocks: u32,
    ) -> Result<Self, GpuError> {
        let bytes = layout.buffer_bytes(num_blocks);
        let mut k = Vec::with_capacity(n_layers);
        let mut v = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            k.push(ctx.storage(&format!("kv.k.{l}"), bytes)?);
            v.push(ctx.storage(&format!("kv.v.{l}"), bytes)?);
        }
        Ok(Self {
            layout,
            num_blocks,
            k,
            v,
        })
    }

    /// The cache of the shard's `i`-th layer (counted from the shard's first).
    pub fn layer(&self, i: usize) -> LayerCache<'_> {
        LayerCache {
            k: &self.k[i],
            v: &self.v[i],
        }
    }

    pub fn bytes(&self) -> u64 {
        2 * self.k.len() as u64 * self.layout.buffer_bytes(self.num_blocks)
    }
}
