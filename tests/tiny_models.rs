//! Tiny random models written by the test (llama with a mix of quantized
//! types and a separate output matrix; qwen2 with q/k/v biases, NEOX RoPE and a
//! tied output; llama 3's `rope_freqs` on the llama; qwen3 with its per-head
//! q/k RMSNorm), run through the real engine on the Vulkan device and
//! compared, logits at every position, against a plain f64 forward pass over
//! the same (dequantized) weights. This covers architectures and weight types
//! the default model does not use. The same weights as HuggingFace
//! directories (one safetensors file or two shards under an index; llama,
//! qwen2, qwen3, and a Mistral with and without its sliding window) give
//! the GGUF's logits.

use rand::{Rng, SeedableRng};
use wgserve::engine::Engine;
use wgserve::gguf::metadata::MetaValue;
use wgserve::gguf::reader::GgufFile;
use wgserve::gguf::writer::GgufWriter;
use wgserve::gguf::{quant, GgmlType};
use wgserve::loader::EngineConfig;
use wgserve::step::{BatchInput, SampleRow};

const D: usize = 256;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = D / HEADS;
const FFN: usize = 512;
const LAYERS: usize = 2;
const VOCAB: usize = 300;
const BASE: f64 = 10_000.0;
const EPS: f64 = 1e-5;

/// GPT-2's byte-to-character map, so the vocabulary is a valid byte-level BPE.
fn byte_tokens() -> Vec<String> {
    let mut bs: Vec<u32> = (b'!'..=b'~')
        .chain(0xA1u8..=0xAC)
        .chain(0xAEu8..=0xFF)
        .map(u32::from)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap().to_string())
        .collect()
}

struct Spec {
    arch: &'static str,
    types: [GgmlType; 7],
    embd: GgmlType,
    output: Option<GgmlType>,
    bias: bool,
    /// Llama 3's `rope_freqs` (per-frequency divisors of the angle).
    rope_freqs: bool,
    /// Qwen 3's per-head RMSNorm of q and k.
    qk_norm: bool,
}

fn write_model(spec: &Spec, path: &std::path::Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut w = GgufWriter::new();
    let a = spec.arch;
    let k = |s: &str| format!("{a}.{s}");
    w.meta("general.architecture", MetaValue::from(a))
        .meta("general.name", MetaValue::from("tiny"))
        .meta(&k("block_count"), MetaValue::U32(LAYERS as u32))
        .meta(&k("embedding_length"), MetaValue::U32(D as u32))
        .meta(&k("attention.head_count"), MetaValue::U32(HEADS as u32))
        .meta(
            &k("attention.head_count_kv"),
            MetaValue::U32(KV_HEADS as u32),
        )
        .meta(&k("feed_forward_length"), MetaValue::U32(FFN as u32))
        .meta(&k("context_length"), MetaValue::U32(256))
        .meta(
            &k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(EPS as f32),
        )
        .meta(&k("rope.freq_base"), MetaValue::F32(BASE as f32));
    let mut tokens = byte_tokens();
    tokens.push("\u{120}t".to_string());
    for i in tokens.len()..VOCAB {
        tokens.push(format!("<extra_{i}>"));
    }
    w.meta("tokenizer.ggml.model", MetaValue::from("gpt2"))
        .meta("tokenizer.ggml.pre", MetaValue::from("default"))
        .meta("tokenizer.ggml.tokens", MetaValue::str_array(&tokens))
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::str_array(&["\u{120} t"]),
        );
    let mut tensor = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize, ty, scale: f32| {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        w.tensor(name, &dims, ty, quant::quantize(ty, &v));
    };
    tensor(&mut w, "token_embd.weight", VOCAB, D, spec.embd, 1.0);
    let f32t = GgmlType::F32;
    for l in 0..LAYERS {
        let n = |t: &str| format!("blk.{l}.{t}");
        let t = spec.types;
        let s = 1.0 / (D as f32).sqrt() * 1.7;
        tensor(&mut w, &n("attn_norm.weight"), 1, D, f32t, 1.5);
        tensor(&mut w, &n("attn_q.weight"), D, D, t[0], s);
        tensor(&mut w, &n("attn_k.weight"), KV_HEADS * HD, D, t[1], s);
        tensor(&mut w, &n("attn_v.weight"), KV_HEADS * HD, D, t[2], s);
        tensor(&mut w, &n("attn_output.weight"), D, D, t[3], s);
        if spec.qk_norm {
            tensor(&mut w, &n("attn_q_norm.weight"), 1, HD, f32t, 1.5);
            tensor(&mut w, &n("attn_k_norm.weight"), 1, HD, f32t, 1.5);
        }
        if spec.bias {
            tensor(&mut w, &n("attn_q.bias"), 1, D, f32t, 0.5);
            tensor(&mut w, &n("attn_k.bias"), 1, KV_HEADS * HD, f32t, 0.5);
            tensor(&mut w, &n("attn_v.bias"), 1, KV_HEADS * HD, f32t, 0.5);
        }
        tensor(&mut w, &n("ffn_norm.weight"), 1, D, f32t, 1.5);
        tensor(&mut w, &n("ffn_gate.weight"), FFN, D, t[4], s);
        tensor(&mut w, &n("ffn_up.weight"), FFN, D, t[5], s);
        tensor(
            &mut w,
            &n("ffn_down.weight"),
            D,
            FFN,
            t[6],
            1.0 / (FFN as f32).sqrt() * 1.7,
        );
    }
    tensor(&mut w, "output_norm.weight", 1, D, f32t, 1.5);
    if spec.rope_freqs {
        // Divisors from 1 to 40, as llama 3's scaling makes them.
        let f: Vec<f32> = (0..HD / 2)
            .map(|i| 1.0 + 39.0 * (i as f32 / (HD / 2 - 1) as f32).powi(2))
            .collect();
        w.tensor(
            "rope_freqs.weight",
            &[f.len() as u64],
            f32t,
            quant::quantize(f32t, &f),
        );
    }
    if let Some(ty) = spec.output {
        tensor(&mut w, "output.weight", VOCAB, D, ty, 0.3);
    }
    w.write(path).unwrap();
}

// ---- the f64 reference ----------------------------------------------------

fn t(f: &GgufFile, name: &str) -> Vec<f64> {
    f.dequantize(name)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn opt(f: &GgufFile, name: &str) -> Option<Vec<f64>> {
    f.get_tensor(name).map(|_| t(f, name))
}

fn matvec(w: &[f64], x: &[f64], bias: Option<&Vec<f64>>) -> Vec<f64> {
    let cols = x.len();
    let rows = w.len() / cols;
    (0..rows)
        .map(|r| {
            let s: f64 = w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum();
            s + bias.map_or(0.0, |b| b[r])
        })
        .collect()
}

fn rmsnorm(x: &[f64], w: &[f64]) -> Vec<f64> {
    let s = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + EPS).sqrt();
    x.iter().zip(w).map(|(a, b)| a * s * b).collect()
}

fn rope(x: &mut [f64], pos: usize, neox: bool, factors: Option<&Vec<f64>>) {
    for h in 0..x.len() / HD {
        for i in 0..HD / 2 {
            let ff = factors.map_or(1.0, |f| f[i]);
            let theta = pos as f64 * BASE.powf(-2.0 * i as f64 / HD as f64) / ff;
            let (s, c) = theta.sin_cos();
            let (ia, ib) = if neox {
                (h * HD + i, h * HD + i + HD / 2)
            } else {
                (h * HD + 2 * i, h * HD + 2 * i + 1)
            };
            let (a, b) = (x[ia], x[ib]);
            x[ia] = a * c - b * s;
            x[ib] = a * s + b * c;
        }
    }
}

/// Logits at every position of `ids`.
fn reference(f: &GgufFile, ids: &[u32], neox: bool) -> Vec<Vec<f64>> {
    reference_windowed(f, ids, neox, None)
}

/// Logits at every position of `ids`, each position attending to at most
/// `window` positions (itself included) when a window is given.
fn reference_windowed(
    f: &GgufFile,
    ids: &[u32],
    neox: bool,
    window: Option<usize>,
) -> Vec<Vec<f64>> {
    let embd = t(f, "token_embd.weight");
    let factors = opt(f, "rope_freqs.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| embd[i as usize * D..(i as usize + 1) * D].to_vec())
        .collect();
    for l in 0..LAYERS {
        let n = |s: &str| format!("blk.{l}.{s}");
        let (an, fnm) = (t(f, &n("attn_norm.weight")), t(f, &n("ffn_norm.weight")));
        let (wq, wk, wv, wo) = (
            t(f, &n("attn_q.weight")),
            t(f, &n("attn_k.weight")),
            t(f, &n("attn_v.weight")),
            t(f, &n("attn_output.weight")),
        );
        let (qn, kn) = (
            opt(f, &n("attn_q_norm.weight")),
            opt(f, &n("attn_k_norm.weight")),
        );
        let (bq, bk, bv) = (
            opt(f, &n("attn_q.bias")),
            opt(f, &n("attn_k.bias")),
            opt(f, &n("attn_v.bias")),
        );
        let (wg, wu, wd) = (
            t(f, &n("ffn_gate.weight")),
            t(f, &n("ffn_up.weight")),
            t(f, &n("ffn_down.weight")),
        );
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (p, x) in xs.iter().enumerate() {
            let xn = rmsnorm(x, &an);
            let mut q = matvec(&wq, &xn, bq.as_ref());
            let mut k = matvec(&wk, &xn, bk.as_ref());
            if let (Some(qn), Some(kn)) = (&qn, &kn) {
                q = q.chunks(HD).flat_map(|h| rmsnorm(h, qn)).collect();
                k = k.chunks(HD).flat_map(|h| rmsnorm(h, kn)).collect();
            }
            rope(&mut q, p, neox, factors.as_ref());
            rope(&mut k, p, neox, factors.as_ref());
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &xn, bv.as_ref()));
        }
        for (p, x) in xs.iter_mut().enumerate() {
            let mut att = vec![0.0; D];
            for h in 0..HEADS {
                let kh = h / (HEADS / KV_HEADS);
                let q = &qs[p][h * HD..(h + 1) * HD];
                let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
                let sc: Vec<f64> = (lo..=p)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kh * HD..(kh + 1) * HD])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (HD as f64).sqrt()
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = sc.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in (lo..).zip(&e) {
                    for i in 0..HD {
                        att[h * HD + i] += ej / z * vs[j][kh * HD + i];
                    }
                }
            }
            for (xi, o) in x.iter_mut().zip(matvec(&wo, &att, None)) {
                *xi += o;
            }
            let xn = rmsnorm(x, &fnm);
            let g = matvec(&wg, &xn, None);
            let u = matvec(&wu, &xn, None);
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            for (xi, o) in x.iter_mut().zip(matvec(&wd, &act, None)) {
                *xi += o;
            }
        }
    }
    let on = t(f, "output_norm.weight");
    let out = opt(f, "output.weight").unwrap_or(embd);
    xs.iter()
        .map(|x| matvec(&out, &rmsnorm(x, &on), None))
        .collect()
}

fn check(spec: Spec, neox: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("tiny-{}.gguf", spec.arch));
    write_model(&spec, &path);
    let file = GgufFile::open(&path).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ids: Vec<u32> = (0..40).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    let want = reference(&file, &ids, neox);
    let mut engine = Engine::new(&EngineConfig {
        model: path.clone(),
        max_num_seqs: 64,
        max_num_batched_tokens: 64,
        kv_memory_bytes: 8 << 20,
        // Exact f32 activations, to compare with the f64 reference.
        quantize_activations: false,
        ..Default::default()
    })
    .expect("load the tiny model");
    let n = ids.len() as u32;
    let bs = engine.info.block_size;
    let batch = BatchInput {
        tokens: ids.clone(),
        positions: (0..n).collect(),
        seq_of_token: vec![0; n as usize],
        slot_mapping: (0..n).collect(),
        block_tables: vec![(0..n.div_ceil(bs)).collect()],
        samples: (0..n)
            .map(|row| SampleRow {
                row,
                want_logits: true,
            })
            .collect(),
    };
    let got = engine.run_batch(&batch).expect("forward pass");
    let mut worst = 0f64;
    let mut scale = 0f64;
    for (g, w) in got.iter().zip(&want) {
        let g = g.logits.as_ref().unwrap();
        for (a, b) in g.iter().zip(w) {
            worst = worst.max((f64::from(*a) - b).abs());
            scale = scale.max(b.abs());
        }
    }
    eprintln!(
        "{}: max |logit - f64 reference| = {worst:.2e} (logits up to {scale:.2})",
        spec.arch
    );
    // Measured ~1e-5 on lavapipe; the bound leaves room for an f16 KV cache
    // and other devices' rounding.
    assert!(worst <= 1e-3 * scale.max(1.0), "{}: {worst}", spec.arch);
    // Greedy ids from the full pass agree with the reference's argmax where
    // it is not a near-tie.
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let mut sorted = w.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let best = w
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        if sorted[0] - sorted[1] > 1e-2 * scale.max(1.0) {
            assert_eq!(g.argmax as usize, best, "{} position {p}", spec.arch);
        }
    }
}

#[test]
fn tiny_llama_with_mixed_quant_types_matches_reference() {
    check(
        Spec {
            arch: "llama",
            types: [
                GgmlType::Q4K,
                GgmlType::Q6K,
                GgmlType::Q8_0,
                GgmlType::Q4_0,
                GgmlType::Q5K,
                GgmlType::Q4_1,
                GgmlType::F16,
            ],
            embd: GgmlType::Q8_0,
            output: Some(GgmlType::Q6K),
            bias: false,
            rope_freqs: true,
            qk_norm: false,
        },
        false,
    );
}

/// The low-bit K-quants of Q2_K and Q3_K_M files.
#[test]
fn tiny_llama_with_q2_k_and_q3_k_matches_reference() {
    check(
        Spec {
            arch: "llama",
            types: [
                GgmlType::Q3K,
                GgmlType::Q2K,
                GgmlType::Q3K,
                GgmlType::Q2K,
                GgmlType::Q3K,
                GgmlType::Q2K,
                GgmlType::Q3K,
            ],
            embd: GgmlType::Q3K,
            output: Some(GgmlType::Q2K),
            bias: false,
            rope_freqs: false,
            qk_norm: false,
        },
        false,
    );
}

#[test]
fn tiny_qwen2_with_biases_neox_and_tied_output_matches_reference() {
    check(
        Spec {
            arch: "qwen2",
            types: [GgmlType::F32; 7],
            embd: GgmlType::F32,
            output: None,
            bias: true,
            rope_freqs: false,
            qk_norm: false,
        },
        true,
    );
}

#[test]
fn tiny_qwen3_with_per_head_qk_norm_matches_reference() {
    check(
        Spec {
            arch: "qwen3",
            types: [GgmlType::Q8_0; 7],
            embd: GgmlType::Q8_0,
            output: None,
            bias: false,
            rope_freqs: false,
            qk_norm: true,
        },
        true,
    );
}

// ---- the same models as HuggingFace directories ---------------------------

/// Writes the (F32) GGUF model at `gguf` as a HuggingFace directory: HF
/// tensor names, llama's q/k rows back in HF's rotate-half order, and a
/// `config.json`.
fn write_hf_dir(gguf: &std::path::Path, dir: &std::path::Path, spec: &Spec) {
    write_hf_dir_as(gguf, dir, spec, 1, serde_json::json!({}));
}

/// [`write_hf_dir`] with the tensors spread over `shards` files named by a
/// `model.safetensors.index.json` (as large checkpoints are published) when
/// `shards > 1`, and `config` keys over the generated ones.
fn write_hf_dir_as(
    gguf: &std::path::Path,
    dir: &std::path::Path,
    spec: &Spec,
    shards: usize,
    config: serde_json::Value,
) {
    use safetensors::{tensor::TensorView, Dtype};
    let f = GgufFile::open(gguf).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut put = |name: String, gguf_name: &str, n_head: usize| {
        let info = f.tensor(gguf_name).unwrap();
        assert_eq!(info.ggml_type, GgmlType::F32, "F32 models only");
        let shape: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        let mut bytes = f.tensor_bytes(info).to_vec();
        if let Some(hd) = shape[0].checked_div(n_head) {
            // GGUF row (head, 2j + i) is HF row (head, i * hd / 2 + j).
            let row = bytes.len() / shape[0];
            let src = bytes.clone();
            for h in 0..n_head {
                for j in 0..hd / 2 {
                    for i in 0..2 {
                        let (g, hf) = (h * hd + 2 * j + i, h * hd + i * hd / 2 + j);
                        bytes[hf * row..(hf + 1) * row]
                            .copy_from_slice(&src[g * row..(g + 1) * row]);
                    }
                }
            }
        }
        tensors.push((name, shape, bytes));
    };
    let llama = spec.arch == "llama";
    put("model.embed_tokens.weight".into(), "token_embd.weight", 0);
    put("model.norm.weight".into(), "output_norm.weight", 0);
    if spec.output.is_some() {
        put("lm_head.weight".into(), "output.weight", 0);
    }
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let g = |s: &str| format!("blk.{l}.{s}");
        put(p("input_layernorm.weight"), &g("attn_norm.weight"), 0);
        put(
            p("post_attention_layernorm.weight"),
            &g("ffn_norm.weight"),
            0,
        );
        let (qh, kh) = if llama { (HEADS, KV_HEADS) } else { (0, 0) };
        put(p("self_attn.q_proj.weight"), &g("attn_q.weight"), qh);
        put(p("self_attn.k_proj.weight"), &g("attn_k.weight"), kh);
        put(p("self_attn.v_proj.weight"), &g("attn_v.weight"), 0);
        put(p("self_attn.o_proj.weight"), &g("attn_output.weight"), 0);
        if spec.bias {
            put(p("self_attn.q_proj.bias"), &g("attn_q.bias"), qh);
            put(p("self_attn.k_proj.bias"), &g("attn_k.bias"), kh);
            put(p("self_attn.v_proj.bias"), &g("attn_v.bias"), 0);
        }
        if spec.qk_norm {
            put(p("self_attn.q_norm.weight"), &g("attn_q_norm.weight"), 0);
            put(p("self_attn.k_norm.weight"), &g("attn_k_norm.weight"), 0);
        }
        put(p("mlp.gate_proj.weight"), &g("ffn_gate.weight"), 0);
        put(p("mlp.up_proj.weight"), &g("ffn_up.weight"), 0);
        put(p("mlp.down_proj.weight"), &g("ffn_down.weight"), 0);
    }
    std::fs::create_dir_all(dir).unwrap();
    let write = |file: &str, part: &[(String, Vec<usize>, Vec<u8>)]| {
        let views: Vec<(String, TensorView<'_>)> = part
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    };
    if shards <= 1 {
        write("model.safetensors", &tensors);
    } else {
        // Consecutive runs of tensors per file, as transformers' sharding
        // fills one file before the next.
        let per_file = tensors.len().div_ceil(shards);
        let mut weight_map = serde_json::Map::new();
        for (i, part) in tensors.chunks(per_file).enumerate() {
            let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
            write(&file, part);
            for (name, _, _) in part {
                weight_map.insert(name.clone(), file.clone().into());
            }
        }
        let total: usize = tensors.iter().map(|t| t.2.len()).sum();
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    let mut generated = serde_json::json!({
        "model_type": spec.arch,
        "hidden_size": D, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HD,
        "vocab_size": VOCAB, "max_position_embeddings": 256, "rms_norm_eps": EPS,
        "rope_theta": BASE, "tie_word_embeddings": spec.output.is_none(),
    });
    for (k, v) in config.as_object().unwrap() {
        generated[k] = v.clone();
    }
    std::fs::write(dir.join("config.json"), generated.to_string()).unwrap();
}

/// Logits at every position of `ids` from the model at `path`.
fn logits(path: &std::path::Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut engine = Engine::new(&EngineConfig {
        model: path.to_path_buf(),
        max_num_seqs: 64,
        max_num_batched_tokens: 64,
        kv_memory_bytes: 8 << 20,
        quantize_activations: false,
        ..Default::default()
    })
    .expect("load");
    let n = ids.len() as u32;
    let batch = BatchInput {
        tokens: ids.to_vec(),
        positions: (0..n).collect(),
        seq_of_token: vec![0; n as usize],
        slot_mapping: (0..n).collect(),
        block_tables: vec![(0..n.div_ceil(engine.info.block_size)).collect()],
        samples: (0..n)
            .map(|row| SampleRow {
                row,
                want_logits: true,
            })
            .collect(),
    };
    engine
        .run_batch(&batch)
        .unwrap()
        .into_iter()
        .map(|o| o.logits.unwrap())
        .collect()
}

/// llama (q/k rows permuted back from HF's order), qwen2 (biases, tied
/// output) and qwen3 (q/k norms) from HuggingFace directories give the
/// logits of the same weights as GGUF.
#[test]
fn hf_directories_give_the_gguf_logits() {
    let f32s = [GgmlType::F32; 7];
    let specs = [
        Spec {
            arch: "llama",
            types: f32s,
            embd: GgmlType::F32,
            output: Some(GgmlType::F32),
            bias: false,
            rope_freqs: false,
            qk_norm: false,
        },
        Spec {
            arch: "qwen2",
            types: f32s,
            embd: GgmlType::F32,
            output: None,
            bias: true,
            rope_freqs: false,
            qk_norm: false,
        },
        Spec {
            arch: "qwen3",
            types: f32s,
            embd: GgmlType::F32,
            output: None,
            bias: false,
            rope_freqs: false,
            qk_norm: true,
        },
    ];
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 11) % VOCAB as u32).collect();
    for spec in specs {
        let tmp = tempfile::tempdir().unwrap();
        let gguf = tmp.path().join("m.gguf");
        write_model(&spec, &gguf);
        let hf = tmp.path().join(format!("hf-{}", spec.arch));
        write_hf_dir(&gguf, &hf, &spec);
        let (a, b) = (logits(&gguf, &ids), logits(&hf, &ids));
        let worst = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{}: HF directory vs GGUF: max |logit difference| = {worst:e}",
            spec.arch
        );
        assert!(worst <= 1e-5, "{}: {worst}", spec.arch);
    }
}

fn tiny_f32_llama() -> Spec {
    Spec {
        arch: "llama",
        types: [GgmlType::F32; 7],
        embd: GgmlType::F32,
        output: Some(GgmlType::F32),
        bias: false,
        rope_freqs: false,
        qk_norm: false,
    }
}

/// A checkpoint sharded over two safetensors files with a
/// `model.safetensors.index.json` loads every tensor from its shard: the
/// logits equal the single-file directory's bitwise.
#[test]
fn sharded_checkpoint_gives_the_single_file_logits() {
    let spec = tiny_f32_llama();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("m.gguf");
    write_model(&spec, &gguf);
    let single = tmp.path().join("single");
    write_hf_dir(&gguf, &single, &spec);
    let sharded = tmp.path().join("sharded");
    write_hf_dir_as(&gguf, &sharded, &spec, 2, serde_json::json!({}));
    assert!(!sharded.join("model.safetensors").exists());
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sharded.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let files: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 11) % VOCAB as u32).collect();
    assert_eq!(logits(&sharded, &ids), logits(&single, &ids));

    // A shard the index names but the directory lacks is an error that
    // names it, not a model with tensors missing.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let err = Engine::new(&EngineConfig {
        model: sharded.clone(),
        kv_memory_bytes: 8 << 20,
        ..Default::default()
    })
    .err()
    .expect("a missing shard fails the load");
    assert!(
        err.to_string().contains("model-00002-of-00002.safetensors"),
        "{err}"
    );
}

/// A Mistral directory (`MistralForCausalLM`, `model_type: mistral`) is a
/// llama: without a sliding window, or with one longer than the sequence
/// (Mistral 7B v0.1's 4096), its logits equal the llama directory's
/// bitwise. With a window shorter than the sequence each position attends
/// to the last `sliding_window` positions only, as in transformers: the
/// logits follow the windowed f64 reference and leave the full-attention
/// ones.
#[test]
fn mistral_directory_is_a_llama_with_its_sliding_window() {
    let spec = tiny_f32_llama();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("m.gguf");
    write_model(&spec, &gguf);
    let llama = tmp.path().join("llama");
    write_hf_dir(&gguf, &llama, &spec);
    let ids: Vec<u32> = (0..24).map(|i| (i * 53 + 5) % VOCAB as u32).collect();
    let full = logits(&llama, &ids);
    let mistral = |name: &str, window: serde_json::Value| {
        let dir = tmp.path().join(name);
        let config = serde_json::json!({
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "sliding_window": window,
        });
        write_hf_dir_as(&gguf, &dir, &spec, 1, config);
        logits(&dir, &ids)
    };
    assert_eq!(mistral("no-window", serde_json::Value::Null), full);
    assert_eq!(mistral("long-window", 4096.into()), full);

    const WINDOW: usize = 8;
    let got = mistral("short-window", WINDOW.into());
    let file = GgufFile::open(&gguf).unwrap();
    let want = reference_windowed(&file, &ids, false, Some(WINDOW));
    let scale = want.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
    let err = |a: &[Vec<f32>]| {
        a.iter()
            .flatten()
            .zip(want.iter().flatten())
            .map(|(g, w)| (f64::from(*g) - w).abs())
            .fold(0f64, f64::max)
    };
    eprintln!(
        "mistral, window {WINDOW}: max |logit - windowed reference| = {:.2e}, full \
         attention's = {:.2e} (logits up to {scale:.2})",
        err(&got),
        err(&full)
    );
    assert!(err(&got) <= 1e-3 * scale.max(1.0), "{}", err(&got));
    // The window made a difference: full attention is far from it.
    assert!(err(&full) > 1e-2 * scale.max(1.0), "{}", err(&full));
    // Positions inside the first window see the same keys either way.
    assert_eq!(got[..WINDOW], full[..WINDOW]);
}
