//! An open GGUF file ([`GgufFile`]): the memory map (or bytes in memory, or
//! an assembled model's parts), the parsed header, the tensor index by name,
//! and zero-copy access to each tensor's bytes.
//!
//! A GGUF file is laid out as
//!
//! ```text
//! "GGUF"  version:u32  n_tensors:u64  n_kv:u64
//! n_kv x (key:string  type:u32  value)
//! n_tensors x (name:string  n_dims:u32  dims:u64[n_dims]  type:u32  offset:u64)
//! padding to `general.alignment` (default 32)
//! data section: each tensor at its offset (relative to the section), aligned
//! ```
//!
//! with every number little-endian and every string a u64 length followed by
//! UTF-8 bytes. The whole header is parsed and validated in [`GgufFile::open`]
//! (by [`super::header`]): every read is bounds-checked, every count and
//! length is capped by the bytes left in the file before anything is
//! allocated, and every tensor is checked to lie, aligned, inside the data
//! section. A truncated or corrupt file is a [`GgufError`] naming the file
//! and the field; it never panics and never allocates from an untrusted
//! count. This module owns the open file and its tensor index; the parse is
//! `header`'s, a tensor's entry `tensor`'s, quantization formats `quant`'s,
//! models `model`'s.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::ggml_type::GgmlType;
use super::header::Header;
use super::metadata::Metadata;

pub use super::header::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use super::tensor::{TensorData, TensorInfo};

/// The bytes of the file: a read-only memory map, or an owned copy for files
/// built in memory. The owned copy is kept in `u64` words so tensor data lands
/// on the same (at least 8-byte) alignment a page-aligned map gives. An
/// assembled model ([`GgufFile::assemble`]) has no file of its own: each
/// tensor lives in one of its [`TensorData`] parts.
enum Storage {
    Mmap(memmap2::Mmap),
    Owned { words: Vec<u64>, len: usize },
    Parts(Vec<TensorData>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
            Storage::Parts(_) => &[],
        }
    }
}

/// An open GGUF file: its metadata and tensor directory, parsed and
/// validated, with the tensor data left in the memory map until asked for.
pub struct GgufFile {
    pub path: PathBuf,
    /// 2 or 3 (the two share one little-endian layout).
    pub version: u32,
    pub metadata: Metadata,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    storage: Storage,
    /// Absolute file offset of the data section.
    data_offset: u64,
    index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.storage.bytes().len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`. Tensor data is not read or copied.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Model files
        // are not expected to change while served; one truncated underneath us
        // would fault on access, the standard caveat of every mmap-based loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Storage::Mmap(map))
    }

    /// A model whose tensors come from elsewhere (a HuggingFace directory's
    /// safetensors, converted where needed) with GGUF metadata and names, so
    /// everything downstream reads it like a GGUF file. Each tensor's bytes
    /// must be exactly its GGUF size.
    pub fn assemble(
        path: impl Into<PathBuf>,
        metadata: Metadata,
        tensors: Vec<(String, Vec<u64>, GgmlType, TensorData)>,
    ) -> Result<Self, GgufError> {
        let path = path.into();
        let mut infos = Vec::with_capacity(tensors.len());
        let mut parts = Vec::with_capacity(tensors.len());
        let mut index = HashMap::new();
        for (i, (name, dims, ggml_type, data)) in tensors.into_iter().enumerate() {
            let info = TensorInfo {
                name: name.clone(),
                dims,
                ggml_type,
                offset: i as u64,
            };
            let whole = info.row_len().is_multiple_of(ggml_type.block_elems());
            if !whole || info.n_bytes() != data.len() as u64 {
                return Err(GgufError::BadTensor {
                    path,
                    reason: format!(
                        "{ggml_type} {:?} has {} bytes of data, expected {}",
                        info.dims,
                        data.len(),
                        info.n_bytes()
                    ),
                    tensor: name,
                });
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor { path, tensor: name });
            }
            infos.push(info);
            parts.push(data);
        }
        Ok(GgufFile {
            path,
            version: 3,
            metadata,
            tensors: infos,
            alignment: DEFAULT_ALIGNMENT,
            storage: Storage::Parts(parts),
            data_offset: 0,
            index,
        })
    }

    /// Parses a file held in memory; `path` only labels error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, GgufError> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        let storage = Storage::Owned {
            words,
            len: bytes.len(),
        };
        Self::parse(path.into(), storage)
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<Self, GgufError> {
        let header = Header::parse(&path, storage.bytes())?;
        let index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path,
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            storage,
            data_offset: header.data_offset,
            index,
        })
    }

    /// The tensor called `name`, or an error naming it and the file.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.get_tensor(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })
    }

    pub fn get_tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's raw bytes: a slice of the memory map (no copy), or, for
    /// a tensor an assembled model converts on reading, the converted bytes.
    /// The slice starts at the file's alignment, but do not assume more than
    /// that (it may be 1): use `bytemuck::pod_read_unaligned`-style reads or
    /// copy.
    ///
    /// Panics if `info` is not one of this file's [`GgufFile::tensors`]
    /// (those were bounds-checked at open; an arbitrary one was not).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> std::borrow::Cow<'_, [u8]> {
        if let Storage::Parts(parts) = &self.storage {
            // An assembled tensor's `offset` is its part's index.
            match self.index.get(&info.name) {
                Some(&i) if self.tensors[i] == *info => return parts[i].bytes(),
                _ => panic!(
                    "tensor_bytes: `{}` is not a tensor of {}",
                    info.name,
                    self.path.display()
                ),
            }
        }
        let range = (self.data_offset.checked_add(info.offset))
            .and_then(|start| Some(start..start.checked_add(info.n_bytes())?))
            .and_then(|r| Some(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?));
        match range.and_then(|r| self.storage.bytes().get(r)) {
            Some(bytes) => std::borrow::Cow::Borrowed(bytes),
            None => panic!(
                "tensor_bytes: `{}` is not a tensor of {}",
                info.name,
                self.path.display()
            ),
        }
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The tensor called `name`, dequantized to f32 in GGUF order (row-major
    /// `[n_rows][row_len]`).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        let mut out = vec![0f32; info.n_elems() as usize];
        super::quant::dequantize(info.ggml_type, &self.tensor_bytes(info), &mut out);
        Ok(out)
    }
}
