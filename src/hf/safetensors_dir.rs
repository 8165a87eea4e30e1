//! The safetensors files of a model directory, memory-mapped: one
//! `model.safetensors`, the shards named by `model.safetensors.index.json`,
//! or else every `*.safetensors` in the directory.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};

use super::HfError;

/// One tensor: its file's map, its bytes' range in it, dtype and shape.
/// A described-only tensor ([`SafetensorsDir::described`]) has no map.
#[derive(Clone)]
pub struct StTensor {
    pub map: Option<Arc<memmap2::Mmap>>,
    pub range: Range<usize>,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub file: PathBuf,
}

impl StTensor {
    /// The tensor's bytes (empty for a described-only tensor).
    pub fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| &m[self.range.clone()])
    }
}

pub struct SafetensorsDir {
    tensors: HashMap<String, StTensor>,
}

impl SafetensorsDir {
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        let files = shard_files(dir)?;
        let mut tensors = HashMap::new();
        for file in files {
            let io = |e: std::io::Error| HfError::Io {
                path: file.clone(),
                message: e.to_string(),
            };
            let f = std::fs::File::open(&file).map_err(io)?;
            // SAFETY: read-only private map; the weights are not expected to
            // change while served (the usual caveat of mmap-based loaders).
            let map = Arc::new(unsafe { memmap2::Mmap::map(&f) }.map_err(io)?);
            let (header_len, meta) =
                SafeTensors::read_metadata(&map).map_err(|e| HfError::Invalid {
                    path: file.clone(),
                    message: format!("not a valid safetensors file: {e}"),
                })?;
            let data_start = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                let range = data_start + a..data_start + b;
                if range.end > map.len() {
                    return Err(HfError::Invalid {
                        path: file.clone(),
                        message: format!("tensor {name} lies past the end of the file"),
                    });
                }
                let t = StTensor {
                    map: Some(map.clone()),
                    range,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    file: file.clone(),
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(HfError::Invalid {
                        path: file.clone(),
                        message: format!("tensor {name} is stored in two files"),
                    });
                }
            }
        }
        Ok(Self { tensors })
    }

    /// Tensors described by name, dtype and shape, without data: what a
    /// memory plan reads when only `config.json` is at hand.
    pub fn described(dir: &Path, tensors: Vec<(String, Dtype, Vec<usize>)>) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(name, dtype, shape)| {
                let t = StTensor {
                    map: None,
                    range: 0..0,
                    dtype,
                    shape,
                    file: dir.join("config.json"),
                };
                (name, t)
            })
            .collect();
        Self { tensors }
    }

    /// Whether the directory holds safetensors files at all (a broken
    /// index still counts: opening it then reports what is wrong).
    pub fn present(dir: &Path) -> bool {
        dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file()
            || std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            })
    }

    pub fn get(&self, name: &str) -> Option<&StTensor> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| HfError::Io {
            path: index.clone(),
            message: e.to_string(),
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| HfError::Invalid {
            path: index.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| HfError::Invalid {
                path: index.clone(),
                message: "no weight_map object".into(),
            })?;
        let mut files = BTreeSet::new();
        for f in map.values() {
            let f = f.as_str().ok_or_else(|| HfError::Invalid {
                path: index.clone(),
                message: "weight_map values must be file names".into(),
            })?;
            // Shard names are plain file names inside the directory.
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(HfError::Invalid {
                    path: index.clone(),
                    message: format!("shard {f:?} is not a file name in the directory"),
                });
            }
            files.insert(dir.join(f));
        }
        return Ok(files.into_iter().collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| HfError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(HfError::Invalid {
            path: dir.to_path_buf(),
            message: "no model.safetensors, model.safetensors.index.json or *.safetensors here"
                .into(),
        });
    }
    Ok(files)
}
