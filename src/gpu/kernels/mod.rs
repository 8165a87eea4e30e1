//! One Rust wrapper per WGSL kernel: it compiles the shader with its override
//! constants once (`new`), and records dispatches into an open compute pass
//! (`encode`). Each wrapper has a test that runs it on the Vulkan device
//! against a plain Rust reference on seeded random inputs.

use super::GpuContext;

/// Splits `groups` workgroups over x and y so neither exceeds the device's
/// per-dimension limit. Shaders recover the flat index as
/// `wid.x + wid.y * num_workgroups.x` and must guard against the few extra
/// groups the rounding adds.
pub(crate) fn grid_2d(ctx: &GpuContext, groups: u32) -> (u32, u32) {
    let max = ctx.caps.max_workgroups_per_dim.max(1);
    if groups <= max {
        (groups, 1)
    } else {
        let y = groups.div_ceil(max);
        (groups.div_ceil(y), y)
    }
}

/// A bind-group entry covering all of `buffer`.
pub(crate) fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

pub mod add;
pub mod argmax;
pub mod attention;
pub mod embedding;
pub mod fill;
pub mod kv_write;
pub mod matmul;
pub mod moe;
#[cfg(test)]
mod params_layout;
pub mod quantize_act;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
