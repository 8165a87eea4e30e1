//! One tensor of a model file: its directory entry ([`TensorInfo`]: name,
//! shape, GGML type, offset, and the sizes those imply) and, for a model
//! assembled from another format, where its bytes are ([`TensorData`]: a
//! range of a shared map, bytes in memory, or a conversion run on reading).
//! Plain data: it reads no file; [`super::reader`] fills and serves them.

use super::ggml_type::GgmlType;

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order, fastest-varying first: `dims[0]` is the row length (ggml's
    /// `ne0`); a matrix stored as `[rows][cols]` has `dims == [cols, rows]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of values (the product of `dims`; 1 for a scalar).
    pub fn n_elems(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of the tensor's data. Exact for any tensor the reader accepted
    /// (whose row length is a whole number of blocks).
    pub fn n_bytes(&self) -> u64 {
        self.n_elems() / self.ggml_type.block_elems() as u64 * self.ggml_type.block_bytes() as u64
    }

    /// Values per row (`dims[0]`; 1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows: the product of `dims[1..]`.
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() / self.ggml_type.block_elems() * self.ggml_type.block_bytes()
    }
}

/// Where an assembled tensor's bytes are: a range of a shared memory map
/// (another file format's data, used in place), bytes in memory, or a
/// conversion run when the tensor is read (so a model's converted tensors
/// never all sit in host memory at once: the loader reads each once).
pub enum TensorData {
    Mapped {
        map: std::sync::Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    },
    Owned(Vec<u8>),
    Lazy {
        len: usize,
        make: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
    },
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Mapped { range, .. } => range.len(),
            TensorData::Owned(v) => v.len(),
            TensorData::Lazy { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes; a lazy tensor is converted now (and again on every call).
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            TensorData::Mapped { map, range } => std::borrow::Cow::Borrowed(&map[range.clone()]),
            TensorData::Owned(v) => std::borrow::Cow::Borrowed(v),
            TensorData::Lazy { make, len } => {
                let v = make();
                assert_eq!(
                    v.len(),
                    *len,
                    "a lazy tensor made the wrong number of bytes"
                );
                std::borrow::Cow::Owned(v)
            }
        }
    }
}
