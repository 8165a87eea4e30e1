//! Parsing everything before a GGUF file's data section: the header, the
//! typed metadata, the tensor directory, and each tensor's placement in the
//! data section (layout in [`super::reader`]'s docs). Every read is
//! bounds-checked, every count and length is capped by the bytes left in the
//! file before anything is allocated, and a corrupt file is a [`GgufError`]
//! naming the file and the field, never a panic. It owns only this parse;
//! the open file and its tensor data belong to [`super::reader`].

use std::collections::HashMap;
use std::path::Path;

use super::error::GgufError;
use super::ggml_type::GgmlType;
use super::metadata::{type_id, MetaValue, Metadata};
use super::tensor::TensorInfo;

/// `"GGUF"` as the first four bytes of the file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML tensors have at most four dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays deeper than this are treated as corruption (real files
/// nest at most one level), which also bounds the parser's recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;

// The fewest bytes one item can take on disk; a count larger than the bytes
// left divided by this cannot be genuine.
const MIN_KV_BYTES: u64 = 8 + 4 + 1; // empty key, type, one-byte value
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8; // empty name, n_dims = 0, type, offset

/// Everything before the data section, parsed.
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) metadata: Metadata,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) alignment: u64,
    /// Absolute file offset of the data section.
    pub(super) data_offset: u64,
}

impl Header {
    pub(super) fn parse(path: &Path, buf: &[u8]) -> Result<Header, GgufError> {
        let mut cur = Cursor { path, buf, pos: 0 };

        let magic: [u8; 4] = cur.array(|| "the magic number".into())?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                path: path.into(),
                found: magic,
            });
        }
        let version = cur.u32(|| "the version".into())?;
        match version {
            2 | 3 => {}
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(GgufError::BigEndian {
                    path: path.into(),
                    version: v.swap_bytes(),
                })
            }
            v => {
                return Err(GgufError::UnsupportedVersion {
                    path: path.into(),
                    version: v,
                })
            }
        }
        let n_tensors = cur.u64(|| "the tensor count".into())?;
        let n_kv = cur.u64(|| "the metadata key/value count".into())?;
        cur.check_count(n_kv, MIN_KV_BYTES, 8, || {
            "the metadata key/value count".into()
        })?;
        cur.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, 16, || {
            "the tensor count".into()
        })?;

        let mut metadata = Metadata::new(path);
        for i in 0..n_kv {
            let key = cur.string(|| format!("the key of metadata pair #{i}"))?;
            let ty = cur.u32(|| format!("the value type of metadata key `{key}`"))?;
            let value = cur.value(&key, ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::DuplicateKey {
                    path: path.into(),
                    key,
                });
            }
        }

        let alignment = match metadata.opt_u64("general.alignment")? {
            None => DEFAULT_ALIGNMENT,
            Some(a) if a.is_power_of_two() => a,
            Some(a) => {
                return Err(GgufError::BadAlignment {
                    path: path.into(),
                    value: a,
                })
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut seen = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = cur.string(|| format!("the name of tensor #{i}"))?;
            let info = cur.tensor_info(name)?;
            if seen.insert(info.name.clone(), ()).is_some() {
                return Err(GgufError::DuplicateTensor {
                    path: path.into(),
                    tensor: info.name,
                });
            }
            tensors.push(info);
        }

        let file_len = buf.len() as u64;
        // A file without tensors may stop before the padding; that is fine.
        let data_offset = (cur.pos as u64)
            .checked_next_multiple_of(alignment)
            .unwrap_or(u64::MAX);
        let data_len = file_len.saturating_sub(data_offset);
        for t in &tensors {
            check_placement(path, t, alignment, data_len)?;
        }

        Ok(Header {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }
}

/// Checks that a tensor starts aligned and ends inside the data section.
fn check_placement(
    path: &Path,
    t: &TensorInfo,
    alignment: u64,
    data_len: u64,
) -> Result<(), GgufError> {
    if !t.offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            path: path.into(),
            tensor: t.name.clone(),
            offset: t.offset,
            alignment,
        });
    }
    let end = t.offset.checked_add(t.n_bytes()).filter(|&e| e <= data_len);
    match end {
        Some(_) => Ok(()),
        None => Err(GgufError::TensorOutOfBounds {
            path: path.into(),
            tensor: t.name.clone(),
            offset: t.offset,
            end: t.offset.saturating_add(t.n_bytes()),
            data_len,
        }),
    }
}

/// A bounds-checked little-endian reader over the file's bytes. Every method
/// takes a closure naming what is being read, called only on error so the
/// happy path (hundreds of thousands of vocabulary strings) allocates nothing
/// for messages.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.into(),
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_len: self.buf.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Rejects a count whose items (at `min_bytes` each) cannot fit in the
    /// rest of the file. `counted_at` is how many bytes back the count was.
    fn check_count(
        &self,
        count: u64,
        min_bytes: u64,
        counted_at: u64,
        what: impl FnOnce() -> String,
    ) -> Result<(), GgufError> {
        let max = self.remaining() / min_bytes;
        if count > max {
            return Err(GgufError::CountTooLarge {
                path: self.path.into(),
                what: what(),
                count,
                offset: self.pos as u64 - counted_at,
                remaining: self.remaining(),
                max,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("the length of {}", what()))?;
        self.check_count(len, 1, 8, || format!("the length of {}", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, &what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::BadUtf8 {
                path: self.path.into(),
                what: what(),
                offset: start,
            }),
        }
    }

    /// One metadata value of type `ty` belonging to `key`.
    fn value(&mut self, key: &str, ty: u32, depth: usize) -> Result<MetaValue, GgufError> {
        let what = || format!("the value of metadata key `{key}`");
        Ok(match ty {
            type_id::U8 => MetaValue::U8(u8::from_le_bytes(self.array(what)?)),
            type_id::I8 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            type_id::U16 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            type_id::I16 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            type_id::U32 => MetaValue::U32(u32::from_le_bytes(self.array(what)?)),
            type_id::I32 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            type_id::U64 => MetaValue::U64(u64::from_le_bytes(self.array(what)?)),
            type_id::I64 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            type_id::F32 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            type_id::F64 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            // GGUF writes bools as one byte; any non-zero byte reads as true, as in ggml.
            type_id::BOOL => MetaValue::Bool(self.array::<1>(what)?[0] != 0),
            type_id::STRING => MetaValue::String(self.string(what)?),
            type_id::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        path: self.path.into(),
                        key: key.into(),
                        max_depth: MAX_ARRAY_DEPTH,
                    });
                }
                let elem = self.u32(|| format!("the element type of metadata array `{key}`"))?;
                let min_bytes =
                    min_value_bytes(elem).ok_or_else(|| GgufError::UnknownValueType {
                        path: self.path.into(),
                        key: key.into(),
                        type_id: elem,
                    })?;
                let len = self.u64(|| format!("the length of metadata array `{key}`"))?;
                self.check_count(len, min_bytes, 8, || {
                    format!("the length of metadata array `{key}`")
                })?;
                // `len` is capped by the bytes left, but each element takes
                // more memory than disk: reserve modestly, grow as parsed.
                let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    items.push(self.value(key, elem, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(GgufError::UnknownValueType {
                    path: self.path.into(),
                    key: key.into(),
                    type_id: other,
                })
            }
        })
    }

    fn bad_tensor(&self, tensor: String, reason: String) -> GgufError {
        GgufError::BadTensor {
            path: self.path.into(),
            tensor,
            reason,
        }
    }

    /// The rest of a tensor directory entry, after its name.
    fn tensor_info(&mut self, name: String) -> Result<TensorInfo, GgufError> {
        let n_dims = self.u32(|| format!("the dimension count of tensor `{name}`"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(self.bad_tensor(
                name,
                format!("it has {n_dims} dimensions, expected at most {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(self.u64(|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let type_id = self.u32(|| format!("the type of tensor `{name}`"))?;
        let offset = self.u64(|| format!("the data offset of tensor `{name}`"))?;

        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType {
                path: self.path.into(),
                tensor: name,
                type_id,
            });
        };
        // ggml stores sizes as i64; anything larger cannot be genuine. Zero
        // dims are skipped so that `n_rows` of an empty tensor cannot overflow
        // either, and the byte size is checked too (F32 is 4 bytes a value).
        let sizes_fit = dims
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(ggml_type.block_bytes() as u64))
            .is_some_and(|b| b <= i64::MAX as u64);
        if !sizes_fit {
            return Err(self.bad_tensor(
                name,
                format!("its dimensions {dims:?} overflow the element or byte count"),
            ));
        }
        let row_len = dims.first().copied().unwrap_or(1);
        let block = ggml_type.block_elems() as u64;
        if !row_len.is_multiple_of(block) {
            return Err(self.bad_tensor(
                name,
                format!("its row length {row_len} is not a multiple of {ggml_type}'s {block}-value block"),
            ));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        })
    }
}

/// The fewest bytes a value of GGUF type `ty` takes, or `None` for an unknown type.
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 => 8,
        type_id::STRING => 8,
        type_id::ARRAY => 4 + 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::reader::GgufFile;
    use crate::gguf::writer::GgufWriter;

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = GGUF_MAGIC.to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }

    fn open(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes("mem.gguf", bytes)
    }

    #[test]
    fn absurd_counts_are_rejected_before_allocating() {
        let e = open(&header(3, 0, u64::MAX)).unwrap_err();
        assert!(
            matches!(
                e,
                GgufError::CountTooLarge {
                    count: u64::MAX,
                    ..
                }
            ),
            "{e}"
        );
        let e = open(&header(3, 1 << 60, 0)).unwrap_err();
        assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("tensor count"), "{e}");

        // One key whose string length claims far more than the file holds.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        b.extend_from_slice(&[b'a'; 20]);
        let e = open(&b).unwrap_err();
        assert!(matches!(e, GgufError::CountTooLarge { max: 20, .. }), "{e}");
        assert!(e.to_string().contains("key of metadata pair #0"), "{e}");

        // An array whose length claims 2^40 u32 elements.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&type_id::ARRAY.to_le_bytes());
        b.extend_from_slice(&type_id::U32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        b.extend_from_slice(&[0; 64]);
        let e = open(&b).unwrap_err();
        assert!(matches!(e, GgufError::CountTooLarge { max: 16, .. }), "{e}");
        assert!(e.to_string().contains("`k`"), "{e}");
    }

    #[test]
    fn deep_array_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&type_id::ARRAY.to_le_bytes());
        for _ in 0..100_000 {
            b.extend_from_slice(&type_id::ARRAY.to_le_bytes());
            b.extend_from_slice(&1u64.to_le_bytes());
        }
        let e = open(&b).unwrap_err();
        assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    }

    #[test]
    fn one_level_of_nested_arrays_reads_back() {
        let v = MetaValue::Array(vec![
            vec![1u8, 2].into(),
            vec![3u8].into(),
            MetaValue::Array(vec![]),
        ]);
        let bytes = GgufWriter::new().meta("nested", v.clone()).to_bytes();
        assert_eq!(open(&bytes).unwrap().metadata.get("nested"), Some(&v));
    }

    #[test]
    fn duplicate_keys_and_tensors_are_rejected() {
        let mut w = GgufWriter::new();
        w.meta("a", MetaValue::U8(1)).meta("b", MetaValue::U8(2));
        let mut bytes = w.to_bytes();
        // Rename key "b" to "a".
        let at = bytes.iter().rposition(|&c| c == b'b').unwrap();
        bytes[at] = b'a';
        let e = open(&bytes).unwrap_err();
        assert!(
            matches!(&e, GgufError::DuplicateKey { key, .. } if key == "a"),
            "{e}"
        );

        let bytes = GgufWriter::new()
            .tensor("t", &[1], GgmlType::F32, vec![0; 4])
            .tensor("t", &[1], GgmlType::F32, vec![0; 4])
            .to_bytes();
        let e = open(&bytes).unwrap_err();
        assert!(
            matches!(&e, GgufError::DuplicateTensor { tensor, .. } if tensor == "t"),
            "{e}"
        );
    }

    #[test]
    fn alignment_must_be_a_power_of_two() {
        let bytes = GgufWriter::new().alignment(24).to_bytes();
        let e = open(&bytes).unwrap_err();
        assert!(
            matches!(e, GgufError::BadAlignment { value: 24, .. }),
            "{e}"
        );
        let bytes = GgufWriter::new()
            .meta("general.alignment", "32".into())
            .to_bytes();
        let e = open(&bytes).unwrap_err();
        assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
        let f = open(&GgufWriter::new().alignment(64).to_bytes()).unwrap();
        assert_eq!(f.alignment, 64);
    }

    #[test]
    fn big_endian_and_old_versions_are_named() {
        let e = open(&header(3u32.swap_bytes(), 0, 0)).unwrap_err();
        assert!(matches!(e, GgufError::BigEndian { version: 3, .. }), "{e}");
        let e = open(&header(1, 0, 0)).unwrap_err();
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version: 1, .. }),
            "{e}"
        );
        let f = open(&header(2, 0, 0)).unwrap();
        assert_eq!((f.version, f.tensors.len()), (2, 0));
    }

    #[test]
    fn tensor_shape_checks() {
        let cases: [(&[u64], u32, &str); 4] = [
            (&[1, 1, 1, 1, 1], 0, "dimensions"),
            (&[u64::MAX, 2], 0, "overflow"),
            (&[16, 2], GgmlType::Q8_0.id(), "not a multiple"),
            (&[100], 0, "data bytes"),
        ];
        for (dims, ty, needle) in cases {
            // The data is 4 bytes whatever the dims claim.
            let bytes = GgufWriter::new()
                .tensor_raw("w", dims, ty, vec![0; 4])
                .to_bytes();
            let e = open(&bytes).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(needle) && msg.contains("`w`"),
                "{dims:?}: {msg}"
            );
        }
        // Zero-sized and scalar tensors are legal.
        let bytes = GgufWriter::new()
            .tensor_raw("empty", &[0, 3], 0, vec![])
            .tensor_raw("scalar", &[], 0, vec![0; 4])
            .to_bytes();
        let f = open(&bytes).unwrap();
        assert_eq!(f.tensor("empty").unwrap().n_bytes(), 0);
        let s = f.tensor("scalar").unwrap();
        assert_eq!(
            (s.n_elems(), s.row_len(), s.n_rows(), s.n_bytes()),
            (1, 1, 1, 4)
        );
    }
}
