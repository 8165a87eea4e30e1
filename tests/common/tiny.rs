//! One-layer llama models with f32 weights, written by the tests that need a
//! real model file but not a real model (a fault, a tokenizer rule): the
//! `llama.*` metadata of a shape and every tensor of its one layer.

use std::path::Path;

use wgserve::gguf::metadata::MetaValue;
use wgserve::gguf::writer::GgufWriter;
use wgserve::gguf::{quant, GgmlType};

/// The shape of a one-layer llama.
#[derive(Debug, Clone, Copy)]
pub struct TinyLlama {
    pub name: &'static str,
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: u32,
}

impl TinyLlama {
    /// A writer holding the shape's `general.*` and `llama.*` metadata; add
    /// a vocabulary to it if the test needs one.
    pub fn writer(&self) -> GgufWriter {
        let mut w = GgufWriter::new();
        let k = |s: &str| format!("llama.{s}");
        w.meta("general.architecture", MetaValue::from("llama"))
            .meta("general.name", MetaValue::from(self.name))
            .meta(&k("block_count"), MetaValue::U32(1))
            .meta(&k("embedding_length"), MetaValue::U32(self.d as u32))
            .meta(
                &k("attention.head_count"),
                MetaValue::U32(self.heads as u32),
            )
            .meta(
                &k("attention.head_count_kv"),
                MetaValue::U32(self.kv_heads as u32),
            )
            .meta(&k("feed_forward_length"), MetaValue::U32(self.ffn as u32))
            .meta(&k("context_length"), MetaValue::U32(self.context))
            .meta(&k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5))
            .meta(&k("rope.freq_base"), MetaValue::F32(10_000.0));
        w
    }

    /// Adds every tensor (embedding, the layer, the final norm; the output
    /// is tied to the embedding), f32, element `i` of each from `value(i)`,
    /// and writes the file.
    pub fn write(&self, mut w: GgufWriter, path: &Path, mut value: impl FnMut(usize) -> f32) {
        let (d, ffn) = (self.d, self.ffn);
        let kv = self.kv_heads * (d / self.heads);
        let mut tensor = |name: &str, rows: usize, cols: usize| {
            let v: Vec<f32> = (0..rows * cols).map(&mut value).collect();
            let dims: Vec<u64> = if rows == 1 {
                vec![cols as u64]
            } else {
                vec![cols as u64, rows as u64]
            };
            w.tensor(
                name,
                &dims,
                GgmlType::F32,
                quant::quantize(GgmlType::F32, &v),
            );
        };
        tensor("token_embd.weight", self.vocab, d);
        tensor("blk.0.attn_norm.weight", 1, d);
        tensor("blk.0.attn_q.weight", d, d);
        tensor("blk.0.attn_k.weight", kv, d);
        tensor("blk.0.attn_v.weight", kv, d);
        tensor("blk.0.attn_output.weight", d, d);
        tensor("blk.0.ffn_norm.weight", 1, d);
        tensor("blk.0.ffn_gate.weight", ffn, d);
        tensor("blk.0.ffn_up.weight", ffn, d);
        tensor("blk.0.ffn_down.weight", d, ffn);
        tensor("output_norm.weight", 1, d);
        w.write(path).unwrap();
    }
}
