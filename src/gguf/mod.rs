//! GGUF: the model file format. This layer owns reading a `.gguf` file
//! (memory-mapped, never copied), its typed metadata, its tensor directory, and
//! the plain Rust definitions of GGML's quantized block types with a reference
//! dequantizer for each. It knows nothing of GPUs or of any model architecture.

pub mod error;
pub mod ggml_type;
pub mod header;
pub mod metadata;
pub mod quant;
pub mod reader;
pub mod tensor;
pub mod writer;

pub use ggml_type::GgmlType;
