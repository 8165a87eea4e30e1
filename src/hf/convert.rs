//! HuggingFace tensor names and layouts to llama.cpp's, walked as the
//! model's shape: the tensors outside the layers, then per layer its norms,
//! attention and FFN (dense, or gpt-oss's routed experts). It only names,
//! checks and converts tensors; the metadata is `config.rs`'s.
//!
//! | HF (`model.layers.N.` ...)                    | GGUF (`blk.N.` ...)                    |
//! |-----------------------------------------------|----------------------------------------|
//! | `input_layernorm.weight`                      | `attn_norm.weight`                     |
//! | `post_attention_layernorm.weight`             | `ffn_norm.weight` (gpt-oss: `post_attention_norm.weight`) |
//! | `self_attn.{q,k,v}_proj.{weight,bias}`        | `attn_{q,k,v}.{weight,bias}`           |
//! | `self_attn.o_proj.{weight,bias}`              | `attn_output.{weight,bias}`            |
//! | `self_attn.{q,k}_norm.weight` (qwen3)         | `attn_{q,k}_norm.weight`               |
//! | `self_attn.sinks`                             | `attn_sinks.weight`                    |
//! | `mlp.{gate,up,down}_proj.weight`              | `ffn_{gate,up,down}.weight`            |
//! | `mlp.router.{weight,bias}`                    | `ffn_gate_inp.{weight,bias}`           |
//! | `mlp.experts.gate_up_proj[_bias]` (or `_blocks` + `_scales`) | `ffn_{gate,up}_exps.{weight,bias}` |
//! | `mlp.experts.down_proj[_bias]` (or `_blocks` + `_scales`)    | `ffn_down_exps.{weight,bias}`      |
//!
//! plus `model.embed_tokens.weight` → `token_embd.weight`, `model.norm.weight`
//! → `output_norm.weight`, `lm_head.weight` → `output.weight`, and Llama 3's
//! rope scaling as a computed `rope_freqs.weight`.
//!
//! Layouts: llama's q and k rows are permuted to interleaved RoPE pairs;
//! HF's fused `gate_up_proj` interleaves gate (even) and up (odd)
//! outputs; the float form stores experts `[E][in][out]` (GGUF wants
//! `[E][out][in]`); the MXFP4 form stores `[E][out][in/32][16]` bytes with
//! element `2i` in byte `i`'s low nibble, and `[E][out][in/32]` exponent
//! bytes, where a GGUF MXFP4 block is the exponent byte then 16 bytes with
//! elements `j` and `j + 16` in byte `j`'s low and high nibbles.

use std::path::Path;

use safetensors::Dtype;

use super::safetensors_dir::{SafetensorsDir, StTensor};
use super::{HfConfig, HfError};
use crate::gguf::reader::TensorData;
use crate::gguf::GgmlType;

type GgufTensor = (String, Vec<u64>, GgmlType, TensorData);

/// GGUF's type for a float dtype, with its element size.
fn float_type(dtype: Dtype) -> Option<(GgmlType, usize)> {
    match dtype {
        Dtype::F32 => Some((GgmlType::F32, 4)),
        Dtype::F16 => Some((GgmlType::F16, 2)),
        Dtype::BF16 => Some((GgmlType::BF16, 2)),
        _ => None,
    }
}

/// The model's widths as the tensors' shapes use them.
#[derive(Clone, Copy)]
struct Dims {
    /// Hidden width.
    d: usize,
    heads: usize,
    kv_heads: usize,
    /// Head width.
    hd: usize,
    /// Rows of the q projection, and of k and v.
    q: usize,
    kv: usize,
    /// FFN (or one expert's) width.
    f: usize,
    vocab: usize,
    /// Experts (gpt-oss), 0 for a dense model.
    e: usize,
}

impl Dims {
    fn of(cfg: &HfConfig) -> Self {
        let d = cfg.hidden_size as usize;
        let heads = cfg.num_attention_heads as usize;
        let kv_heads = cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads) as usize;
        let hd = cfg.head_dim.map_or(d / heads.max(1), |v| v as usize);
        Dims {
            d,
            heads,
            kv_heads,
            hd,
            q: heads * hd,
            kv: kv_heads * hd,
            f: cfg.intermediate_size as usize,
            vocab: cfg.vocab_size as usize,
            e: cfg.num_local_experts.unwrap_or(0) as usize,
        }
    }
}

/// One layer's tensor names: HF's `model.layers.N.` and GGUF's `blk.N.`.
struct Layer {
    l: usize,
    prefix: String,
}

impl Layer {
    fn new(l: usize) -> Self {
        Layer {
            l,
            prefix: format!("model.layers.{l}."),
        }
    }

    fn hf(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    fn gguf(&self, s: &str) -> String {
        format!("blk.{}.{s}", self.l)
    }
}

struct Converter<'a> {
    dir: &'a Path,
    st: &'a SafetensorsDir,
    /// llama.cpp's architecture name ("" for none: nothing arch-specific).
    arch: &'static str,
    n: Dims,
    out: Vec<GgufTensor>,
    used: Vec<String>,
}

impl Converter<'_> {
    fn invalid(&self, t: &StTensor, name: &str, message: String) -> HfError {
        HfError::Invalid {
            path: t.file.clone(),
            message: format!("tensor {name}: {message}"),
        }
    }

    fn get(&mut self, name: &str) -> Result<StTensor, HfError> {
        let t = self.st.get(name).cloned().ok_or_else(|| HfError::Invalid {
            path: self.dir.to_path_buf(),
            message: format!("tensor {name} is missing from the safetensors files"),
        })?;
        self.used.push(name.to_string());
        Ok(t)
    }

    fn float(&self, t: &StTensor, name: &str) -> Result<(GgmlType, usize), HfError> {
        float_type(t.dtype).ok_or_else(|| {
            self.invalid(
                t,
                name,
                format!("dtype {:?} is not supported (F32, F16, BF16)", t.dtype),
            )
        })
    }

    fn check_shape(&self, t: &StTensor, name: &str, want: &[usize]) -> Result<(), HfError> {
        if t.shape != want {
            return Err(self.invalid(t, name, format!("shape {:?}, expected {want:?}", t.shape)));
        }
        Ok(())
    }

    /// A tensor used as stored: GGUF dims are the reversed shape.
    fn direct(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> Result<(), HfError> {
        let t = self.get(hf)?;
        self.check_shape(&t, hf, shape)?;
        let (ty, _) = self.float(&t, hf)?;
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        let data = match &t.map {
            Some(map) => TensorData::Mapped {
                map: map.clone(),
                range: t.range.clone(),
            },
            // Described only (a plan): no data.
            None => TensorData::Owned(Vec::new()),
        };
        self.out.push((gguf.to_string(), dims, ty, data));
        Ok(())
    }

    /// A tensor converted when it is read: `make` runs on the source bytes.
    fn lazy(
        &mut self,
        gguf: String,
        dims: Vec<u64>,
        ty: GgmlType,
        src: StTensor,
        make: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) {
        let n: u64 = dims.iter().product();
        let len = (n / ty.block_elems() as u64 * ty.block_bytes() as u64) as usize;
        let make = Box::new(move || make(src.bytes()));
        self.out
            .push((gguf, dims, ty, TensorData::Lazy { len, make }));
    }

    /// A llama q or k projection (or its bias), rows reordered from HF's
    /// rotate-half layout (each head's first half, then its second half) to
    /// GGUF's interleaved pairs, as llama.cpp's converter does: within a
    /// head of `hd` rows, GGUF row `2j + i` is HF row `i * hd / 2 + j`.
    fn permuted(
        &mut self,
        hf: &str,
        gguf: &str,
        n_head: usize,
        shape: &[usize],
    ) -> Result<(), HfError> {
        let t = self.get(hf)?;
        self.check_shape(&t, hf, shape)?;
        let (ty, es) = self.float(&t, hf)?;
        let rows = shape[0];
        let row_bytes = shape.get(1).copied().unwrap_or(1) * es;
        let hd = rows / n_head.max(1);
        if n_head == 0 || !rows.is_multiple_of(n_head) || !hd.is_multiple_of(2) {
            return Err(self.invalid(
                &t,
                hf,
                format!("{rows} rows do not split into {n_head} heads of even size"),
            ));
        }
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.lazy(gguf.to_string(), dims, ty, t, move |src| {
            let mut out = Vec::with_capacity(src.len());
            for h in 0..n_head {
                for j in 0..hd / 2 {
                    for i in 0..2 {
                        let r = h * hd + i * hd / 2 + j;
                        out.extend_from_slice(&src[r * row_bytes..(r + 1) * row_bytes]);
                    }
                }
            }
            out
        });
        Ok(())
    }

    /// `[E][2f]` interleaved biases to gate `[E][f]` and up `[E][f]`.
    fn split_bias(&mut self, hf: &str, l: usize, e: usize, f: usize) -> Result<(), HfError> {
        let t = self.get(hf)?;
        self.check_shape(&t, hf, &[e, 2 * f])?;
        let (ty, es) = self.float(&t, hf)?;
        let dims = vec![f as u64, e as u64];
        for (k, name) in [(0, "gate"), (1, "up")] {
            let gguf = format!("blk.{l}.ffn_{name}_exps.bias");
            self.lazy(gguf, dims.clone(), ty, t.clone(), move |src| {
                src.chunks_exact(2 * es)
                    .flat_map(|pair| &pair[k * es..(k + 1) * es])
                    .copied()
                    .collect()
            });
        }
        Ok(())
    }

    /// Float experts. `gate_up_proj` `[E][d][2f]` to gate and up `[E][f][d]`;
    /// `down_proj` `[E][f][d]` to `[E][d][f]`.
    fn float_experts(
        &mut self,
        p: &str,
        l: usize,
        e: usize,
        d: usize,
        f: usize,
    ) -> Result<(), HfError> {
        let name = format!("{p}gate_up_proj");
        let t = self.get(&name)?;
        self.check_shape(&t, &name, &[e, d, 2 * f])?;
        let (ty, es) = self.float(&t, &name)?;
        let dims = vec![d as u64, f as u64, e as u64];
        for (half, which) in [(0, "gate"), (1, "up")] {
            let gguf = format!("blk.{l}.ffn_{which}_exps.weight");
            self.lazy(gguf, dims.clone(), ty, t.clone(), move |src| {
                let mut out = vec![0u8; e * f * d * es];
                for x in 0..e {
                    for k in 0..d {
                        for j in 0..f {
                            let s = ((x * d + k) * 2 * f + 2 * j + half) * es;
                            let o = ((x * f + j) * d + k) * es;
                            out[o..o + es].copy_from_slice(&src[s..s + es]);
                        }
                    }
                }
                out
            });
        }

        let name = format!("{p}down_proj");
        let t = self.get(&name)?;
        self.check_shape(&t, &name, &[e, f, d])?;
        let (ty, es) = self.float(&t, &name)?;
        let dims = vec![f as u64, d as u64, e as u64];
        self.lazy(
            format!("blk.{l}.ffn_down_exps.weight"),
            dims,
            ty,
            t,
            move |src| {
                let mut out = vec![0u8; e * d * f * es];
                for x in 0..e {
                    for k in 0..f {
                        for i in 0..d {
                            let s = ((x * f + k) * d + i) * es;
                            let o = ((x * d + i) * f + k) * es;
                            out[o..o + es].copy_from_slice(&src[s..s + es]);
                        }
                    }
                }
                out
            },
        );
        Ok(())
    }

    /// The `*_blocks`/`*_scales` pair of an MXFP4 expert stack `[E][rows][cols]`
    /// as GGUF MXFP4 stacks named `outputs`: rows interleaved
    /// `outputs.len()` ways (gate/up: 2; down: 1) are split, stack `k`
    /// taking rows `k, k + n, ...`.
    fn mxfp4_stacks(
        &mut self,
        base: &str,
        e: usize,
        rows: usize,
        cols: usize,
        outputs: &[String],
    ) -> Result<(), HfError> {
        let (bn, sn) = (format!("{base}_blocks"), format!("{base}_scales"));
        let blocks = self.get(&bn)?;
        let scales = self.get(&sn)?;
        if !cols.is_multiple_of(32) {
            return Err(self.invalid(
                &blocks,
                &bn,
                format!("{cols} columns is not a whole number of MXFP4 blocks"),
            ));
        }
        let nb = cols / 32;
        self.check_shape(&blocks, &bn, &[e, rows, nb, 16])?;
        self.check_shape(&scales, &sn, &[e, rows, nb])?;
        for (t, n) in [(&blocks, &bn), (&scales, &sn)] {
            if t.dtype != Dtype::U8 {
                return Err(self.invalid(t, n, format!("dtype {:?}, expected U8", t.dtype)));
            }
        }
        let n_out = outputs.len();
        let dims = vec![cols as u64, (rows / n_out) as u64, e as u64];
        for (k, gguf) in outputs.iter().enumerate() {
            let scales = scales.clone();
            self.lazy(
                gguf.clone(),
                dims.clone(),
                GgmlType::MXFP4,
                blocks.clone(),
                move |qb| {
                    let sb = scales.bytes();
                    let block_bytes = GgmlType::MXFP4.block_bytes();
                    let mut out = Vec::with_capacity(e * rows / n_out * nb * block_bytes);
                    for x in 0..e {
                        for r in (k..rows).step_by(n_out) {
                            for b in 0..nb {
                                let blk = (x * rows + r) * nb + b;
                                out.push(sb[blk]);
                                let q = &qb[blk * 16..blk * 16 + 16];
                                let nib = |i: usize| (q[i / 2] >> (4 * (i % 2))) & 0xF;
                                out.extend((0..16).map(|j| nib(j) | (nib(j + 16) << 4)));
                            }
                        }
                    }
                    out
                },
            );
        }
        Ok(())
    }
}

/// The model's tensors, one step of its shape at a time, in GGUF order:
/// the tensors outside the layers, then per layer its norms, attention and
/// FFN (dense, or gpt-oss's routed experts).
impl Converter<'_> {
    fn gpt_oss(&self) -> bool {
        self.arch == "gpt-oss"
    }

    /// The embedding, the final norm, the output head (when not tied) and
    /// Llama 3's `rope_freqs` table.
    fn outside_layers(&mut self, cfg: &HfConfig) -> Result<(), HfError> {
        let Dims { d, vocab, .. } = self.n;
        self.direct(
            "model.embed_tokens.weight",
            "token_embd.weight",
            &[vocab, d],
        )?;
        self.direct("model.norm.weight", "output_norm.weight", &[d])?;
        // No lm_head (or a config that ties them): the output is the embedding.
        if !cfg.tie_word_embeddings && self.st.get("lm_head.weight").is_some() {
            self.direct("lm_head.weight", "output.weight", &[vocab, d])?;
        }
        if let Some(freqs) = cfg.llama3_rope_freqs() {
            let bytes = bytemuck::cast_slice(&freqs).to_vec();
            let dims = vec![freqs.len() as u64];
            let data = TensorData::Owned(bytes);
            self.out
                .push(("rope_freqs.weight".into(), dims, GgmlType::F32, data));
        }
        Ok(())
    }

    /// The layer's two RMSNorms (before attention, before the FFN).
    fn norms(&mut self, layer: &Layer) -> Result<(), HfError> {
        let d = self.n.d;
        self.direct(
            &layer.hf("input_layernorm.weight"),
            &layer.gguf("attn_norm.weight"),
            &[d],
        )?;
        self.direct(
            &layer.hf("post_attention_layernorm.weight"),
            &layer.gguf(if self.gpt_oss() {
                "post_attention_norm.weight"
            } else {
                "ffn_norm.weight"
            }),
            &[d],
        )
    }

    /// The layer's attention: q, k and v, the output projection, their
    /// biases where present (always for gpt-oss), qwen3's per-head q/k norms
    /// and gpt-oss's sinks.
    fn attention(&mut self, layer: &Layer) -> Result<(), HfError> {
        let Dims {
            d, heads, hd, q, ..
        } = self.n;
        self.qkv(layer)?;
        self.direct(
            &layer.hf("self_attn.o_proj.weight"),
            &layer.gguf("attn_output.weight"),
            &[d, q],
        )?;
        if self.gpt_oss() || self.has(layer, "self_attn.o_proj.bias") {
            self.direct(
                &layer.hf("self_attn.o_proj.bias"),
                &layer.gguf("attn_output.bias"),
                &[d],
            )?;
        }
        if self.arch == "qwen3" {
            for (hf, gguf) in [("q_norm", "attn_q_norm"), ("k_norm", "attn_k_norm")] {
                self.direct(
                    &layer.hf(&format!("self_attn.{hf}.weight")),
                    &layer.gguf(&format!("{gguf}.weight")),
                    &[hd],
                )?;
            }
        }
        if self.gpt_oss() {
            self.direct(
                &layer.hf("self_attn.sinks"),
                &layer.gguf("attn_sinks.weight"),
                &[heads],
            )?;
        }
        Ok(())
    }

    /// The q, k and v projections and their biases; llama's q and k
    /// permuted, as its RoPE pairs are interleaved in GGUF.
    fn qkv(&mut self, layer: &Layer) -> Result<(), HfError> {
        let Dims {
            d,
            heads,
            kv_heads,
            q,
            kv,
            ..
        } = self.n;
        for (hf, gg, rows, n_head) in [
            ("q_proj", "attn_q", q, heads),
            ("k_proj", "attn_k", kv, kv_heads),
            ("v_proj", "attn_v", kv, 0),
        ] {
            let (w, b) = (
                layer.hf(&format!("self_attn.{hf}.weight")),
                layer.hf(&format!("self_attn.{hf}.bias")),
            );
            let (gw, gb) = (
                layer.gguf(&format!("{gg}.weight")),
                layer.gguf(&format!("{gg}.bias")),
            );
            let biased = self.gpt_oss() || self.has(layer, &format!("self_attn.{hf}.bias"));
            if self.arch == "llama" && n_head > 0 {
                self.permuted(&w, &gw, n_head, &[rows, d])?;
                if biased {
                    self.permuted(&b, &gb, n_head, &[rows])?;
                }
            } else {
                self.direct(&w, &gw, &[rows, d])?;
                if biased {
                    self.direct(&b, &gb, &[rows])?;
                }
            }
        }
        Ok(())
    }

    /// A dense layer's SwiGLU FFN: gate, up and down.
    fn dense_ffn(&mut self, layer: &Layer) -> Result<(), HfError> {
        let Dims { d, f, .. } = self.n;
        for (hf, gg, shape) in [
            ("gate_proj", "ffn_gate", [f, d]),
            ("up_proj", "ffn_up", [f, d]),
            ("down_proj", "ffn_down", [d, f]),
        ] {
            self.direct(
                &layer.hf(&format!("mlp.{hf}.weight")),
                &layer.gguf(&format!("{gg}.weight")),
                &shape,
            )?;
        }
        Ok(())
    }

    /// gpt-oss's routed FFN: the router, the expert stacks (MXFP4 or float)
    /// and their biases.
    fn experts(&mut self, layer: &Layer) -> Result<(), HfError> {
        let Dims { d, f, e, .. } = self.n;
        self.direct(
            &layer.hf("mlp.router.weight"),
            &layer.gguf("ffn_gate_inp.weight"),
            &[e, d],
        )?;
        self.direct(
            &layer.hf("mlp.router.bias"),
            &layer.gguf("ffn_gate_inp.bias"),
            &[e],
        )?;

        let x = layer.hf("mlp.experts.");
        if self.st.get(&format!("{x}gate_up_proj_blocks")).is_some() {
            let gate_up = [
                layer.gguf("ffn_gate_exps.weight"),
                layer.gguf("ffn_up_exps.weight"),
            ];
            self.mxfp4_stacks(&format!("{x}gate_up_proj"), e, 2 * f, d, &gate_up)?;
            let down = [layer.gguf("ffn_down_exps.weight")];
            self.mxfp4_stacks(&format!("{x}down_proj"), e, d, f, &down)?;
        } else {
            self.float_experts(&x, layer.l, e, d, f)?;
        }
        self.split_bias(&format!("{x}gate_up_proj_bias"), layer.l, e, f)?;
        self.direct(
            &format!("{x}down_proj_bias"),
            &layer.gguf("ffn_down_exps.bias"),
            &[e, d],
        )
    }

    /// Whether the safetensors hold this layer's tensor `name`.
    fn has(&self, layer: &Layer, name: &str) -> bool {
        self.st.get(&layer.hf(name)).is_some()
    }

    /// A tensor nobody reads is a sign of a model this code does not know.
    fn warn_unused(&self) {
        let mut unused: Vec<&str> = self
            .st
            .names()
            .filter(|n| !self.used.iter().any(|u| u == n))
            .collect();
        if !unused.is_empty() {
            unused.sort_unstable();
            tracing::warn!(
                "{}: {} tensors are not used, e.g. {:?}",
                self.dir.display(),
                unused.len(),
                &unused[..unused.len().min(4)]
            );
        }
    }
}

/// Every GGUF tensor of a model from its safetensors.
pub fn gguf_tensors(
    dir: &Path,
    cfg: &HfConfig,
    st: &SafetensorsDir,
) -> Result<Vec<GgufTensor>, HfError> {
    let mut c = Converter {
        dir,
        st,
        arch: cfg.gguf_arch().unwrap_or(""),
        n: Dims::of(cfg),
        out: Vec::new(),
        used: Vec::new(),
    };
    c.outside_layers(cfg)?;
    for l in 0..cfg.num_hidden_layers as usize {
        let layer = Layer::new(l);
        c.norms(&layer)?;
        c.attention(&layer)?;
        if c.gpt_oss() {
            c.experts(&layer)?;
        } else {
            c.dense_ffn(&layer)?;
        }
    }
    c.warn_unused();
    Ok(c.out)
}

/// The tensors a gpt-oss checkpoint as OpenAI publishes it holds (BF16
/// everywhere but the experts, which are MXFP4 `*_blocks`/`*_scales`), by
/// HF name, dtype and shape: a memory plan from `config.json` alone.
pub fn checkpoint_layout(cfg: &HfConfig) -> Vec<(String, Dtype, Vec<usize>)> {
    let Dims {
        d,
        heads,
        q,
        kv,
        f,
        vocab,
        e,
        ..
    } = Dims::of(cfg);
    let bf = |name: String, shape: Vec<usize>| (name, Dtype::BF16, shape);
    let u8s = |name: String, shape: Vec<usize>| (name, Dtype::U8, shape);
    let mut v = vec![
        bf("model.embed_tokens.weight".into(), vec![vocab, d]),
        bf("model.norm.weight".into(), vec![d]),
    ];
    if !cfg.tie_word_embeddings {
        v.push(bf("lm_head.weight".into(), vec![vocab, d]));
    }
    for l in 0..cfg.num_hidden_layers as usize {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        v.extend([
            bf(p("input_layernorm.weight"), vec![d]),
            bf(p("post_attention_layernorm.weight"), vec![d]),
            bf(p("self_attn.q_proj.weight"), vec![q, d]),
            bf(p("self_attn.q_proj.bias"), vec![q]),
            bf(p("self_attn.k_proj.weight"), vec![kv, d]),
            bf(p("self_attn.k_proj.bias"), vec![kv]),
            bf(p("self_attn.v_proj.weight"), vec![kv, d]),
            bf(p("self_attn.v_proj.bias"), vec![kv]),
            bf(p("self_attn.o_proj.weight"), vec![d, q]),
            bf(p("self_attn.o_proj.bias"), vec![d]),
            bf(p("self_attn.sinks"), vec![heads]),
            bf(p("mlp.router.weight"), vec![e, d]),
            bf(p("mlp.router.bias"), vec![e]),
            u8s(
                p("mlp.experts.gate_up_proj_blocks"),
                vec![e, 2 * f, d / 32, 16],
            ),
            u8s(p("mlp.experts.gate_up_proj_scales"), vec![e, 2 * f, d / 32]),
            bf(p("mlp.experts.gate_up_proj_bias"), vec![e, 2 * f]),
            u8s(p("mlp.experts.down_proj_blocks"), vec![e, d, f / 32, 16]),
            u8s(p("mlp.experts.down_proj_scales"), vec![e, d, f / 32]),
            bf(p("mlp.experts.down_proj_bias"), vec![e, d]),
        ]);
    }
    v
}
