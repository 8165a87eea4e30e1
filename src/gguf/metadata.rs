//! GGUF metadata: the typed key/value pairs at the head of a file
//! (`general.architecture`, `llama.block_count`, `tokenizer.ggml.tokens`, ...).
//!
//! [`MetaValue`] mirrors GGUF's thirteen value types one to one, so a file read
//! and written back is unchanged. [`Metadata`] holds the pairs of one file and
//! offers typed accessors that return a [`GgufError`] naming the key, the file
//! and the expected type, so model code never matches on `MetaValue` by hand.
//! Integer accessors accept any integer type whose value fits, because
//! converters disagree on widths (one writes `u32`, another `i32` or `u64`).
//! This module owns the value model and its conversions; it does no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::GgufError;

/// One metadata value, exactly as GGUF types it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// GGUF arrays are homogeneous: every element has the same variant.
    Array(Vec<MetaValue>),
}

/// GGUF's on-disk value type ids (`gguf_type`).
pub mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl MetaValue {
    /// GGUF's on-disk type id for this value.
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => type_id::U8,
            MetaValue::I8(_) => type_id::I8,
            MetaValue::U16(_) => type_id::U16,
            MetaValue::I16(_) => type_id::I16,
            MetaValue::U32(_) => type_id::U32,
            MetaValue::I32(_) => type_id::I32,
            MetaValue::U64(_) => type_id::U64,
            MetaValue::I64(_) => type_id::I64,
            MetaValue::F32(_) => type_id::F32,
            MetaValue::F64(_) => type_id::F64,
            MetaValue::Bool(_) => type_id::BOOL,
            MetaValue::String(_) => type_id::STRING,
            MetaValue::Array(_) => type_id::ARRAY,
        }
    }

    /// The short name of this value's type (`u32`, `string`, `array`).
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }

    /// The value of any integer variant, widened so every GGUF integer fits.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value of a float or integer variant as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An array of strings, for building metadata in tests and tools.
    pub fn str_array<S: AsRef<str>>(items: &[S]) -> Self {
        MetaValue::Array(
            items
                .iter()
                .map(|s| MetaValue::String(s.as_ref().to_owned()))
                .collect(),
        )
    }

    /// A short description for error messages: the type and, for small
    /// values, the value itself (`u32 7`, `string "llama"`, `array of 3 f32`).
    pub fn describe(&self) -> String {
        match self {
            MetaValue::String(s) => {
                let shown: String = s.chars().take(40).collect();
                let more = if shown.len() < s.len() { "..." } else { "" };
                format!("string {shown:?}{more}")
            }
            MetaValue::Array(a) => match a.first() {
                Some(first) => format!("array of {} {}", a.len(), first.type_name()),
                None => "an empty array".to_owned(),
            },
            other => format!("{} {other}", other.type_name()),
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => write!(f, "{s:?}"),
            MetaValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for MetaValue {
            fn from(v: $t) -> Self {
                MetaValue::$v(v)
            }
        })*
    };
}

from_scalar!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String,
);

impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        MetaValue::String(v.to_owned())
    }
}

impl<T: Into<MetaValue>> From<Vec<T>> for MetaValue {
    fn from(v: Vec<T>) -> Self {
        MetaValue::Array(v.into_iter().map(Into::into).collect())
    }
}

/// The metadata of one GGUF file, with the file's path for error messages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    path: PathBuf,
    map: BTreeMap<String, MetaValue>,
}

// Expected-type phrases, shared so messages read the same everywhere.
const E_STR: &str = "a string";
const E_U32: &str = "an unsigned integer that fits u32";
const E_U64: &str = "an unsigned integer that fits u64";
const E_I32: &str = "an integer that fits i32";
const E_F32: &str = "a number (f32, f64 or an integer)";
const E_BOOL: &str = "a bool";
const E_STR_ARR: &str = "an array of strings";
const E_I32_ARR: &str = "an array of integers that fit i32";
const E_U32_ARR: &str = "an array of unsigned integers that fit u32";
const E_F32_ARR: &str = "an array of numbers";

impl Metadata {
    /// Empty metadata attributed to `path` (which only appears in error messages).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Metadata {
            path: path.into(),
            map: BTreeMap::new(),
        }
    }

    /// Adds or replaces a key; returns the value it replaced.
    pub fn insert(&mut self, key: impl Into<String>, value: MetaValue) -> Option<MetaValue> {
        self.map.insert(key.into(), value)
    }

    /// The file these values came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.map.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Keys in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Key/value pairs in sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `general.architecture` (`llama`, `qwen2`, `gpt-oss`, ...).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.str("general.architecture")
    }

    fn required(&self, key: &str, expected: &'static str) -> Result<&MetaValue, GgufError> {
        self.map.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
            found: found.describe(),
        }
    }

    fn out_of_range(&self, key: &str, expected: &'static str, value: &MetaValue) -> GgufError {
        GgufError::OutOfRange {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
            value: value.to_string(),
        }
    }

    /// An integer value converted to `T`, or the error that says why not.
    fn int_as<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
        v: &MetaValue,
    ) -> Result<T, GgufError> {
        let i = v
            .as_int()
            .ok_or_else(|| self.wrong_type(key, expected, v))?;
        T::try_from(i).map_err(|_| self.out_of_range(key, expected, v))
    }

    fn float_as_f32(
        &self,
        key: &str,
        expected: &'static str,
        v: &MetaValue,
    ) -> Result<f32, GgufError> {
        match *v {
            MetaValue::F32(x) => Ok(x),
            MetaValue::F64(x) => {
                let y = x as f32;
                // Rounding to f32 may lose precision, but must not turn a finite value infinite.
                if x.is_finite() && !y.is_finite() {
                    Err(self.out_of_range(key, expected, v))
                } else {
                    Ok(y)
                }
            }
            _ => v
                .as_int()
                .map(|i| i as f32)
                .ok_or_else(|| self.wrong_type(key, expected, v)),
        }
    }

    fn array(&self, key: &str, expected: &'static str) -> Result<&[MetaValue], GgufError> {
        let v = self.required(key, expected)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// Converts every element; an element of the wrong type reports the whole
    /// array's type, one out of range reports its index.
    fn array_map<T>(
        &self,
        key: &str,
        expected: &'static str,
        conv: impl Fn(&MetaValue) -> Option<Result<T, ()>>,
    ) -> Result<Vec<T>, GgufError> {
        let items = self.array(key, expected)?;
        let whole = self.map.get(key).expect("array() found the key");
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match conv(item) {
                Some(Ok(x)) => Ok(x),
                Some(Err(())) => Err(self.out_of_range(&format!("{key}[{i}]"), expected, item)),
                None => Err(self.wrong_type(key, expected, whole)),
            })
            .collect()
    }

    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.required(key, E_STR)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, E_STR, v))
    }

    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        self.int_as(key, E_U32, self.required(key, E_U32)?)
    }

    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.int_as(key, E_U64, self.required(key, E_U64)?)
    }

    pub fn i32(&self, key: &str) -> Result<i32, GgufError> {
        self.int_as(key, E_I32, self.required(key, E_I32)?)
    }

    pub fn f32(&self, key: &str) -> Result<f32, GgufError> {
        self.float_as_f32(key, E_F32, self.required(key, E_F32)?)
    }

    pub fn bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.required(key, E_BOOL)? {
            MetaValue::Bool(b) => Ok(*b),
            other => Err(self.wrong_type(key, E_BOOL, other)),
        }
    }

    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let items = self.array(key, E_STR_ARR)?;
        let whole = &self.map[key];
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| self.wrong_type(key, E_STR_ARR, whole))
            })
            .collect()
    }

    pub fn i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.array_map(key, E_I32_ARR, |v| {
            v.as_int().map(|i| i32::try_from(i).map_err(|_| ()))
        })
    }

    pub fn u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.array_map(key, E_U32_ARR, |v| {
            v.as_int().map(|i| u32::try_from(i).map_err(|_| ()))
        })
    }

    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.array_map(key, E_F32_ARR, |v| match *v {
            MetaValue::F64(x) if x.is_finite() && !(x as f32).is_finite() => Some(Err(())),
            _ => v.as_f64().map(|x| Ok(x as f32)),
        })
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.optional(key, Self::str)
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.optional(key, Self::u32)
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.optional(key, Self::u64)
    }

    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, GgufError> {
        self.optional(key, Self::i32)
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.optional(key, Self::f32)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.optional(key, Self::bool)
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.optional(key, Self::str_array)
    }

    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        self.optional(key, Self::i32_array)
    }

    pub fn opt_u32_array(&self, key: &str) -> Result<Option<Vec<u32>>, GgufError> {
        self.optional(key, Self::u32_array)
    }

    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        self.optional(key, Self::f32_array)
    }

    fn optional<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.contains(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        let mut m = Metadata::new("/models/x.gguf");
        m.insert("general.architecture", "llama".into());
        m.insert("small", MetaValue::U8(7));
        m.insert("neg", MetaValue::I32(-1));
        m.insert("big", MetaValue::U64(1 << 40));
        m.insert("eps", MetaValue::F64(1e-5));
        m.insert("huge", MetaValue::F64(1e300));
        m.insert("flag", MetaValue::Bool(true));
        m.insert("tokens", MetaValue::str_array(&["a", "b"]));
        m.insert("types", vec![1i32, -2, 3].into());
        m.insert("ids", vec![1u64, u64::MAX].into());
        m.insert("scores", vec![0.5f32, -1.0].into());
        m
    }

    #[test]
    fn integers_convert_when_the_value_fits() {
        let m = meta();
        assert_eq!(m.u32("small").unwrap(), 7);
        assert_eq!(m.u64("big").unwrap(), 1 << 40);
        assert_eq!(m.i32("neg").unwrap(), -1);
        assert!(matches!(m.u32("neg"), Err(GgufError::OutOfRange { .. })));
        assert!(matches!(m.u32("big"), Err(GgufError::OutOfRange { .. })));
        assert_eq!(m.f32("small").unwrap(), 7.0);
        assert_eq!(m.f32("eps").unwrap(), 1e-5);
        assert!(matches!(m.f32("huge"), Err(GgufError::OutOfRange { .. })));
    }

    #[test]
    fn wrong_type_and_missing_key_name_the_key_and_file() {
        let m = meta();
        let e = m.u32("general.architecture").unwrap_err();
        assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("general.architecture") && msg.contains("/models/x.gguf"),
            "{msg}"
        );
        assert!(msg.contains("string \"llama\""), "{msg}");

        let e = m.str("llama.block_count").unwrap_err();
        assert!(matches!(e, GgufError::MissingKey { .. }), "{e}");
        assert!(e.to_string().contains("llama.block_count"), "{e}");

        assert!(matches!(m.bool("small"), Err(GgufError::WrongType { .. })));
        assert!(matches!(
            m.str_array("types"),
            Err(GgufError::WrongType { .. })
        ));
        assert!(matches!(
            m.f32_array("tokens"),
            Err(GgufError::WrongType { .. })
        ));
    }

    #[test]
    fn arrays_convert_element_by_element() {
        let m = meta();
        assert_eq!(m.str_array("tokens").unwrap(), ["a", "b"]);
        assert_eq!(m.i32_array("types").unwrap(), [1, -2, 3]);
        assert_eq!(m.f32_array("scores").unwrap(), [0.5, -1.0]);
        assert_eq!(m.f32_array("types").unwrap(), [1.0, -2.0, 3.0]);
        let e = m.u32_array("types").unwrap_err();
        assert!(e.to_string().contains("types[1]"), "{e}");
        let e = m.i32_array("ids").unwrap_err();
        assert!(e.to_string().contains("ids[1]"), "{e}");
    }

    #[test]
    fn optional_accessors_distinguish_absent_from_wrong() {
        let m = meta();
        assert_eq!(m.opt_u32("absent").unwrap(), None);
        assert_eq!(m.opt_u32("small").unwrap(), Some(7));
        assert_eq!(m.opt_bool("flag").unwrap(), Some(true));
        assert!(m.opt_str("small").is_err());
        assert_eq!(m.opt_str_array("absent").unwrap(), None);
        assert_eq!(m.architecture().unwrap(), "llama");
    }
}
