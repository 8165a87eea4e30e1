//! One Rust wrapper per WGSL kernel: it compiles the shader with its override
//! constants once (`new`), and records dispatches into an open compute pass
//! (`encode`). Each wrapper has a test that runs it on the Vulkan device
//! against a plain Rust reference on seeded random inputs.

pub mod add;
pub mod argmax;
pub mod attention;
pub mod embedding;
pub mod fill;
pub mod kv_write;
pub mod matmul;
pub mod quantize_act;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
