//! A GGUF writer, for building small model files in tests and tools (a tiny
//! llama with random weights, a file with one tensor of every type, a file
//! with a deliberately corrupt field).
//!
//! It writes version 3 by default (version 2 on request: the layout is the
//! same), metadata in insertion order, tensors in insertion order with each
//! data offset rounded up to the alignment (`general.alignment`, default 32)
//! and the data section padded likewise, as llama.cpp's `gguf-py` does. It
//! holds everything in memory; it is not meant for multi-gigabyte models.
//! This module owns only serialization; [`super::reader`] is its inverse.

use std::io;
use std::path::Path;

use super::ggml_type::GgmlType;
use super::metadata::{type_id, MetaValue};
use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC};

/// Builds a GGUF file in memory. Setters chain:
///
/// ```
/// use wgserve::gguf::{metadata::MetaValue, writer::GgufWriter, GgmlType};
/// let bytes = GgufWriter::new()
///     .meta("general.architecture", MetaValue::from("llama"))
///     .tensor("w", &[2], GgmlType::F32, bytemuck::cast_slice(&[1f32, 2.0]).to_vec())
///     .to_bytes();
/// assert_eq!(&bytes[..4], b"GGUF");
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    meta: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    bytes: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            meta: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// The version number written in the header (3 by default). Any value is
    /// written as given, so tests can produce unsupported versions.
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets `general.alignment` (written as u32 when it fits). The data
    /// layout follows it, whatever its value, so a test can write a file
    /// whose alignment the reader must reject.
    pub fn alignment(&mut self, alignment: u64) -> &mut Self {
        let value = match u32::try_from(alignment) {
            Ok(a) => MetaValue::U32(a),
            Err(_) => MetaValue::U64(alignment),
        };
        self.meta("general.alignment", value)
    }

    /// Adds a metadata pair, or replaces the value of an existing key in place.
    ///
    /// Panics if `value` is an array whose elements differ in type: GGUF
    /// arrays are homogeneous, and this is a mistake in the calling code.
    pub fn meta(&mut self, key: &str, value: MetaValue) -> &mut Self {
        check_homogeneous(key, &value);
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.meta.push((key.to_owned(), value)),
        }
        self
    }

    /// Adds a tensor. `dims` are in GGUF order (`dims[0]` is the row length)
    /// and `bytes` is its data in `ty`'s on-disk encoding.
    ///
    /// Panics if `bytes` does not hold exactly the tensor's size, or the
    /// element count is not a whole number of `ty`'s blocks: both are
    /// mistakes in the calling code. Use [`GgufWriter::tensor_raw`] to write
    /// an inconsistent tensor on purpose.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, bytes: Vec<u8>) -> &mut Self {
        let n: u64 = dims.iter().product();
        let expected = usize::try_from(n).ok().and_then(|n| ty.bytes_for(n));
        assert_eq!(
            expected,
            Some(bytes.len()),
            "GgufWriter::tensor `{name}`: dims {dims:?} of {ty} need {expected:?} bytes, got {}",
            bytes.len()
        );
        self.tensor_raw(name, dims, ty.id(), bytes)
    }

    /// Adds a tensor with no consistency checks: any type id, any dims, any
    /// number of bytes. For writing corrupt files in tests.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        type_id: u32,
        bytes: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id,
            bytes,
        });
        self
    }

    /// The alignment the layout uses: `general.alignment` if set to a
    /// positive integer, else the default.
    fn layout_alignment(&self) -> u64 {
        self.meta
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_int())
            .and_then(|a| u64::try_from(a).ok())
            .filter(|&a| a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.layout_alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        for (key, value) in &self.meta {
            put_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, value);
        }

        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = round_up(offset + t.bytes.len() as u64, alignment);
        }

        pad_to(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.bytes);
            pad_to(&mut out, alignment);
        }
        out
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

/// Works for any positive `a`, not only powers of two, so corrupt
/// alignments can still be laid out.
fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = round_up(out.len() as u64, alignment) as usize;
    out.resize(len, 0);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(items) => {
            // An empty array still needs an element type; any will do.
            let elem = items.first().map_or(type_id::U8, MetaValue::type_id);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn check_homogeneous(key: &str, value: &MetaValue) {
    if let MetaValue::Array(items) = value {
        if let Some(first) = items.first() {
            let ty = first.type_id();
            for (i, item) in items.iter().enumerate() {
                assert!(
                    item.type_id() == ty,
                    "GgufWriter::meta `{key}`: element {i} is {} but element 0 is {}; GGUF arrays are homogeneous",
                    item.type_name(),
                    first.type_name()
                );
                check_homogeneous(key, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_data_at_aligned_offsets() {
        let bytes = GgufWriter::new()
            .alignment(64)
            .tensor("a", &[3], GgmlType::F32, vec![1; 12])
            .tensor("b", &[1], GgmlType::F32, vec![2; 4])
            .to_bytes();
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
        assert_eq!(bytes.len() % 64, 0);
        // The second tensor's data starts 64 bytes after the first's.
        let first = bytes.windows(12).position(|w| w == [1; 12]).unwrap();
        assert_eq!(first % 64, 0);
        assert_eq!(&bytes[first + 64..first + 68], &[2; 4]);
    }

    #[test]
    #[should_panic(expected = "homogeneous")]
    fn mixed_arrays_are_refused() {
        GgufWriter::new().meta(
            "x",
            MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)]),
        );
    }
}
