//! The GPU layer: the wgpu device ([`context`]), the WGSL sources with their
//! include step ([`shader_include`]) and variant step ([`shader_source`]),
//! and one Rust wrapper per kernel
//! ([`kernels`]) that builds its pipeline and records its dispatch.
//!
//! This layer owns no model state: it takes buffers and sizes and records
//! work into a command encoder. Models (`crate::model`) decide what runs.

pub mod context;
pub mod dispatch;
pub mod kernels;
pub mod shader_include;
pub mod shader_source;
#[cfg(test)]
pub mod testing;
pub mod weights;

pub use context::{AdapterChoice, Capabilities, GpuContext, GpuError};
