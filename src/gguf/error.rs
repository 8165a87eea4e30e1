//! The one error type of the GGUF layer. Every variant carries the path of the
//! file it is about and names the key, tensor or field at fault together with
//! what was expected, so a message read on its own says which file is broken
//! and how. This module owns only the error enum; it reads no files.

use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF file or its metadata.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: cannot read the file: {source}; check the path and its permissions", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{}: not a GGUF file: the first four bytes are {found:02x?}, expected \"GGUF\" (47 47 55 46); \
         point the model path at a .gguf file",
        .path.display()
    )]
    BadMagic { path: PathBuf, found: [u8; 4] },

    #[error(
        "{}: GGUF version {version} is not supported; expected version 2 or 3 \
         (re-convert the model with a current llama.cpp)",
        .path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },

    #[error(
        "{}: this is a big-endian GGUF file (version {version} byte-swapped); only little-endian \
         files are supported: re-convert the model without --bigendian",
        .path.display()
    )]
    BigEndian { path: PathBuf, version: u32 },

    #[error(
        "{}: truncated: reading {what} at byte {offset} needs {needed} bytes but the file ends \
         at byte {file_len}; the file is incomplete, download it again",
        .path.display()
    )]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },

    #[error(
        "{}: corrupt: {what} is {count} at byte {offset}, but the {remaining} bytes left in the \
         file can hold at most {max}; the file is truncated or corrupt",
        .path.display()
    )]
    CountTooLarge {
        path: PathBuf,
        what: String,
        count: u64,
        offset: u64,
        remaining: u64,
        max: u64,
    },

    #[error("{}: corrupt: {what} at byte {offset} is not valid UTF-8", .path.display())]
    BadUtf8 {
        path: PathBuf,
        what: String,
        offset: u64,
    },

    #[error(
        "{}: metadata key `{key}` has value type id {type_id}, expected one of 0..=12 \
         (u8, i8, u16, i16, u32, i32, f32, bool, string, array, u64, i64, f64)",
        .path.display()
    )]
    UnknownValueType {
        path: PathBuf,
        key: String,
        type_id: u32,
    },

    #[error(
        "{}: metadata key `{key}` nests arrays more than {max_depth} deep; the file is corrupt",
        .path.display()
    )]
    NestingTooDeep {
        path: PathBuf,
        key: String,
        max_depth: usize,
    },

    #[error("{}: metadata key `{key}` appears twice; each key must be unique", .path.display())]
    DuplicateKey { path: PathBuf, key: String },

    #[error("{}: tensor `{tensor}` appears twice; each tensor name must be unique", .path.display())]
    DuplicateTensor { path: PathBuf, tensor: String },

    #[error(
        "{}: `general.alignment` is {value}, expected a power of two (GGUF's default is 32)",
        .path.display()
    )]
    BadAlignment { path: PathBuf, value: u64 },

    #[error(
        "{}: tensor `{tensor}` has GGML type id {type_id}, which wgserve does not support; \
         supported: F32 (0), F16 (1), Q4_0 (2), Q4_1 (3), Q5_0 (6), Q5_1 (7), Q8_0 (8), \
         Q2_K (10), Q3_K (11), Q4_K (12), Q5_K (13), Q6_K (14), BF16 (30), MXFP4 (39); \
         re-quantize the model to one of these",
        .path.display()
    )]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
    },

    #[error("{}: tensor `{tensor}` is malformed: {reason}", .path.display())]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    #[error(
        "{}: tensor `{tensor}` starts at data offset {offset}, which is not a multiple of the \
         file's alignment {alignment}; the file is corrupt",
        .path.display()
    )]
    MisalignedTensor {
        path: PathBuf,
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "{}: tensor `{tensor}` occupies data bytes {offset}..{end} but the data section holds \
         only {data_len} bytes; the file is truncated or corrupt",
        .path.display()
    )]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        offset: u64,
        end: u64,
        data_len: u64,
    },

    #[error("{}: no tensor named `{tensor}`; this model file lacks a tensor the architecture needs", .path.display())]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{}: metadata key `{key}` is missing; expected {expected}", .path.display())]
    MissingKey {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },

    #[error("{}: metadata key `{key}` holds {found}, expected {expected}", .path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("{}: metadata key `{key}` is {value}, which does not fit {expected}", .path.display())]
    OutOfRange {
        path: PathBuf,
        key: String,
        expected: &'static str,
        value: String,
    },
}
