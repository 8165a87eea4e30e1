//! Sizing the paged KV cache at load: the bytes each shard may spend on it
//! ([`kv_budget`]: explicit, or the GPU's memory less the memory plan's
//! weights and activations), the block count every shard can hold (block
//! ids are global, so the smallest), the context that fits, and the limits
//! the shards and the scheduler are built with. It opens no device and
//! loads no weight; it reads the devices `mod.rs` opened.

use std::ops::Range;

use super::{EngineConfig, LoadError};
use crate::gguf::reader::TensorInfo;
use crate::gpu::GpuContext;
use crate::model::kv_cache::{blocks_for_budget, layout_with};
use crate::model::plan::{plan, PlanRequest};
use crate::model::shard::ShardLimits;
use crate::model::spec::ModelSpec;
use crate::scheduler::SchedulerConfig;

/// The KV pool every shard holds, and the context it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Blocks per shard (the same on every shard).
    pub num_blocks: u32,
    /// The context window: what was asked for, capped by the model's and
    /// by the pool.
    pub max_model_len: usize,
}

impl PoolSize {
    /// Tokens the pool holds in all.
    pub fn tokens(&self, block_size: u32) -> usize {
        self.num_blocks as usize * block_size as usize
    }

    /// The sizes each shard's buffers are built for.
    pub fn shard_limits(&self, cfg: &EngineConfig) -> ShardLimits {
        ShardLimits {
            max_tokens: cfg.max_num_batched_tokens,
            max_samples: cfg.max_num_seqs,
            max_blocks_per_seq: self.max_model_len.div_ceil(cfg.block_size as usize),
            block_size: cfg.block_size,
            num_blocks: self.num_blocks,
            quantize_activations: cfg.quantize_activations,
            kv_f32: !cfg.quantize_activations,
        }
    }

    pub fn scheduler_config(&self, cfg: &EngineConfig) -> SchedulerConfig {
        SchedulerConfig {
            max_num_batched_tokens: cfg.max_num_batched_tokens,
            max_num_seqs: cfg.max_num_seqs,
            max_model_len: self.max_model_len,
            watermark_blocks: (self.num_blocks as usize / 100).max(1),
            enable_prefix_caching: cfg.enable_prefix_caching,
        }
    }
}

/// The pool the opened devices can hold: every shard gets the same number
/// of blocks (block ids are global), the smallest any shard's budget
/// allows; fewer than 2 is an error. The context is capped by the pool,
/// with a warning when that cuts what was asked for.
pub fn size_pool(
    cfg: &EngineConfig,
    ctxs: &[GpuContext],
    ranges: &[Range<usize>],
    spec: &ModelSpec,
    tensors: &[TensorInfo],
) -> Result<PoolSize, LoadError> {
    let mut num_blocks = u32::MAX;
    for (i, (ctx, r)) in ctxs.iter().zip(ranges).enumerate() {
        let layout = layout_with(ctx, spec, cfg.block_size, !cfg.quantize_activations);
        let budget = kv_budget(cfg, ctx, spec, tensors, ranges.len(), i);
        num_blocks = num_blocks.min(blocks_for_budget(
            &layout,
            r.len(),
            budget,
            ctx.caps.max_storage_binding,
        ));
    }
    if num_blocks < 2 {
        return Err(LoadError::KvTooSmall {
            budget: if cfg.kv_memory_bytes > 0 {
                format!("{} MiB", cfg.kv_memory_bytes >> 20)
            } else {
                "sized from the device's memory".to_string()
            },
        });
    }
    let pool_tokens = num_blocks as usize * cfg.block_size as usize;
    let wanted_len = cfg
        .max_model_len
        .unwrap_or(spec.context_length)
        .min(spec.context_length);
    let max_model_len = wanted_len.min(pool_tokens);
    if max_model_len < wanted_len {
        tracing::warn!(
            "the KV cache budget ({} MiB per shard) holds {pool_tokens} tokens, fewer than the \
             {wanted_len}-token context asked for: the context is {max_model_len} tokens. Raise \
             kv_memory_mib (`wgserve plan` shows what fits) or lower max_model_len.",
            cfg.kv_memory_bytes >> 20
        );
    }
    Ok(PoolSize {
        num_blocks,
        max_model_len,
    })
}

/// KV bytes shard `i` of `n` may use. An explicit `kv_memory_bytes` is used
/// as is. Otherwise, on a GPU whose memory Vulkan reports: that memory
/// times `gpu_memory_utilization`, less the shard's weights and step
/// activations (the memory plan's figures, which equal what loads); on a
/// CPU driver (its "device memory" is the host's) or when unknown: 256 MiB.
pub fn kv_budget(
    cfg: &EngineConfig,
    ctx: &GpuContext,
    spec: &ModelSpec,
    tensors: &[TensorInfo],
    n: usize,
    i: usize,
) -> u64 {
    const FALLBACK: u64 = 256 << 20;
    if cfg.kv_memory_bytes > 0 {
        return cfg.kv_memory_bytes;
    }
    // Shards given the same adapter share its memory (two devices on one
    // GPU, as `devices = ["auto", "auto"]` makes).
    let sharing = cfg
        .devices
        .get(i)
        .map_or(1, |d| cfg.devices.iter().filter(|e| *e == d).count())
        .max(1) as u64;
    let memory = match ctx.caps.device_memory {
        Some(m) if ctx.info.device_type != wgpu::DeviceType::Cpu => m / sharing,
        _ => {
            tracing::info!(
                "KV cache: {} MiB on {} (a CPU driver, or its memory is unknown; set \
                 kv_memory_mib to change)",
                FALLBACK >> 20,
                ctx.info.name
            );
            return FALLBACK;
        }
    };
    let req = PlanRequest {
        devices: n,
        device_bytes: memory,
        context: cfg.max_model_len.unwrap_or(spec.context_length),
        kv_elem_bytes: if cfg.quantize_activations { 2 } else { 4 },
        block_size: cfg.block_size as usize,
        max_num_batched_tokens: cfg.max_num_batched_tokens,
        max_num_seqs: cfg.max_num_seqs,
        reserve_fraction: 1.0 - cfg.gpu_memory_utilization.clamp(0.0, 1.0),
    };
    let plan = plan(spec, tensors, &req);
    let budget = plan.shards.get(i).map_or(0, |s| s.kv_budget_bytes);
    tracing::info!(
        "KV cache: {:.2} GiB on {} ({:.0}% of {:.1} GiB{}, less weights and activations)",
        budget as f64 / (1u64 << 30) as f64,
        ctx.info.name,
        cfg.gpu_memory_utilization * 100.0,
        memory as f64 / (1u64 << 30) as f64,
        if sharing > 1 {
            format!(", its share of a device {sharing} shards use")
        } else {
            String::new()
        }
    );
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_scheduler_config_follow_the_pool() {
        let cfg = EngineConfig {
            block_size: 16,
            max_num_batched_tokens: 256,
            max_num_seqs: 8,
            enable_prefix_caching: false,
            quantize_activations: false,
            ..EngineConfig::default()
        };
        let pool = PoolSize {
            num_blocks: 250,
            max_model_len: 1000,
        };
        assert_eq!(pool.tokens(16), 4000);
        let l = pool.shard_limits(&cfg);
        // 1000 tokens need 63 blocks of 16 (the last one partly used).
        assert_eq!(l.max_blocks_per_seq, 63);
        assert_eq!((l.max_tokens, l.max_samples, l.num_blocks), (256, 8, 250));
        assert!(!l.quantize_activations && l.kv_f32);
        let s = pool.scheduler_config(&cfg);
        assert_eq!(s.max_model_len, 1000);
        assert_eq!(s.watermark_blocks, 2);
        assert!(!s.enable_prefix_caching);
        // A tiny pool still keeps one block of watermark.
        let tiny = PoolSize {
            num_blocks: 3,
            max_model_len: 48,
        };
        assert_eq!(tiny.scheduler_config(&cfg).watermark_blocks, 1);
    }
}
