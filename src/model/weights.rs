//! A shard's weights on the device: the token embedding (first shard), the
//! layers of its range, and the final norm and output projection (last
//! shard). Matrices stay in their GGUF type ([`DeviceTensor`]); norms and
//! biases are dequantized to f32 at load, since they are small and read once
//! per row.

use std::ops::Range;
use std::sync::Arc;

use crate::gguf::{quant, reader::GgufFile, GgmlType};
use crate::gpu::weights::DeviceTensor;
use crate::gpu::GpuContext;

use super::spec::{ModelError, ModelSpec};

/// The types the matmul and embedding kernels read directly.
pub const MATRIX_TYPES: [GgmlType; 12] = GgmlType::ALL;

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub wq: DeviceTensor,
    pub wk: DeviceTensor,
    pub wv: DeviceTensor,
    pub wo: DeviceTensor,
    pub bq: Option<wgpu::Buffer>,
    pub bk: Option<wgpu::Buffer>,
    pub bv: Option<wgpu::Buffer>,
    pub ffn_norm: wgpu::Buffer,
    pub w_gate: DeviceTensor,
    pub w_up: DeviceTensor,
    pub w_down: DeviceTensor,
}

pub struct ShardWeights {
    /// First shard only.
    pub embedding: Option<Arc<DeviceTensor>>,
    pub layers: Vec<LayerWeights>,
    /// Last shard only.
    pub output_norm: Option<wgpu::Buffer>,
    /// Last shard only; the embedding itself when the model ties them.
    pub output: Option<Arc<DeviceTensor>>,
}

struct Loader<'a> {
    ctx: &'a GpuContext,
    file: &'a GgufFile,
    spec: &'a ModelSpec,
    path: String,
}

impl Loader<'_> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<DeviceTensor, ModelError> {
        let info = self.file.tensor(name)?;
        if info.row_len() != cols || info.n_rows() != rows {
            return Err(ModelError::BadShape {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: info.dims.clone(),
                expected: vec![cols as u64, rows as u64],
            });
        }
        if !MATRIX_TYPES.contains(&info.ggml_type) {
            return Err(ModelError::UnsupportedType {
                path: self.path.clone(),
                tensor: name.to_string(),
                ty: info.ggml_type,
                what: "matmul",
            });
        }
        let bytes = self.file.tensor_bytes(info);
        Ok(DeviceTensor::upload(
            self.ctx,
            name,
            info.ggml_type,
            [cols, rows],
            bytes,
        )?)
    }

    /// A small vector (norm weight, bias) as f32 on the device.
    fn vector(&self, name: &str, len: usize) -> Result<wgpu::Buffer, ModelError> {
        let info = self.file.tensor(name)?;
        if info.n_elems() as usize != len {
            return Err(ModelError::BadShape {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: info.dims.clone(),
                expected: vec![len as u64],
            });
        }
        let mut v = vec![0f32; len];
        quant::dequantize(info.ggml_type, self.file.tensor_bytes(info), &mut v);
        Ok(self.ctx.storage_from(name, &v)?)
    }

    fn opt_vector(&self, name: &str, len: usize) -> Result<Option<wgpu::Buffer>, ModelError> {
        match self.file.get_tensor(name) {
            Some(_) => self.vector(name, len).map(Some),
            None => Ok(None),
        }
    }

    fn layer(&self, l: usize) -> Result<LayerWeights, ModelError> {
        let s = self.spec;
        let n = |t: &str| format!("blk.{l}.{t}");
        Ok(LayerWeights {
            attn_norm: self.vector(&n("attn_norm.weight"), s.d_model)?,
            wq: self.matrix(&n("attn_q.weight"), s.q_dim(), s.d_model)?,
            wk: self.matrix(&n("attn_k.weight"), s.kv_dim(), s.d_model)?,
            wv: self.matrix(&n("attn_v.weight"), s.kv_dim(), s.d_model)?,
            wo: self.matrix(&n("attn_output.weight"), s.d_model, s.q_dim())?,
            bq: self.opt_vector(&n("attn_q.bias"), s.q_dim())?,
            bk: self.opt_vector(&n("attn_k.bias"), s.kv_dim())?,
            bv: self.opt_vector(&n("attn_v.bias"), s.kv_dim())?,
            ffn_norm: self.vector(&n("ffn_norm.weight"), s.d_model)?,
            w_gate: self.matrix(&n("ffn_gate.weight"), s.ffn_dim, s.d_model)?,
            w_up: self.matrix(&n("ffn_up.weight"), s.ffn_dim, s.d_model)?,
            w_down: self.matrix(&n("ffn_down.weight"), s.d_model, s.ffn_dim)?,
        })
    }
}

impl ShardWeights {
    /// Uploads the weights a shard holding `layers` needs.
    pub fn load(
        ctx: &GpuContext,
        file: &GgufFile,
        spec: &ModelSpec,
        layers: Range<usize>,
    ) -> Result<Self, ModelError> {
        let loader = Loader {
            ctx,
            file,
            spec,
            path: file.path.display().to_string(),
        };
        let first = layers.start == 0;
        let last = layers.end == spec.n_layers;
        let embedding = if first || (last && spec.tied_output) {
            Some(Arc::new(loader.matrix(
                "token_embd.weight",
                spec.vocab_size,
                spec.d_model,
            )?))
        } else {
            None
        };
        let layer_weights = layers
            .clone()
            .map(|l| loader.layer(l))
            .collect::<Result<Vec<_>, _>>()?;
        let (output_norm, output) = if last {
            let norm = loader.vector("output_norm.weight", spec.d_model)?;
            let out = if spec.tied_output {
                embedding.clone().expect("loaded above for a tied output")
            } else {
                Arc::new(loader.matrix("output.weight", spec.vocab_size, spec.d_model)?)
            };
            (Some(norm), Some(out))
        } else {
            (None, None)
        };
        Ok(Self {
            embedding: if first { embedding } else { None },
            layers: layer_weights,
            output_norm,
            output,
        })
    }

    /// The distinct types of the matrices multiplied by this shard.
    pub fn matrix_types(&self) -> Vec<GgmlType> {
        let mut types = Vec::new();
        let mut note = |t: &DeviceTensor| {
            if !types.contains(&t.ty) {
                types.push(t.ty);
            }
        };
        for l in &self.layers {
            for t in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                note(t);
            }
        }
        if let Some(o) = &self.output {
            note(o);
        }
        types
    }

    pub fn device_bytes(&self) -> u64 {
        let mut total = 0;
        let mut add = |t: &DeviceTensor| total += t.device_bytes();
        if let Some(e) = &self.embedding {
            add(e);
        }
        for l in &self.layers {
            for t in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                add(t);
            }
        }
        if let Some(o) = &self.output {
            if self.embedding.as_ref().is_none_or(|e| !Arc::ptr_eq(e, o)) {
                add(o);
            }
        }
        total
    }
}
