//! gpt-oss against HuggingFace transformers: a tiny random gpt-oss
//! (`tests/data/gpt-oss-tiny`, 4 layers alternating sliding-window
//! and full attention with sinks, 4 experts with 2 per token, YaRN RoPE) run
//! from its GGUF forms must give transformers' float32 logits within 1e-4,
//! its greedy continuation exactly, and the same logits decoding one token
//! at a time as in one pass; the HuggingFace directory forms (float and the
//! MXFP4 checkpoint) must do the same. The models carry no tokenizer, so they
//! are loaded with `loader::load_shards` and fed token ids.

mod common;
#[path = "common/reference.rs"]
mod reference;

use std::path::PathBuf;

use serde_json::Value;
use wgserve::gguf::reader::GgufFile;
use wgserve::kv::BlockPool;
use wgserve::loader::{load_shards, EngineConfig, LoadedShards};
use wgserve::model::chain::run_shards;
use wgserve::model::spec::{Arch, ModelSpec, YarnSpec};
use wgserve::sampling::SamplingParams;
use wgserve::scheduler::{Scheduler, SeqEvent, SeqRequest};
use wgserve::step::{BatchInput, SampleRow};

const TOL: f32 = 1e-4;

fn reference_dir() -> PathBuf {
    reference::data_dir().join("gpt-oss-tiny")
}

fn json(rel: &str) -> Value {
    let path = reference_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (tests/data, part of the repository)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("valid JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The engine configuration for one of the reference models (a GGUF file
/// or a HuggingFace directory under `gpt-oss-tiny/`).
fn config(model: &str) -> EngineConfig {
    EngineConfig {
        model: reference_dir().join(model),
        max_num_seqs: 64,
        max_num_batched_tokens: 64,
        kv_memory_bytes: 4 << 20,
        // transformers computes in exact f32.
        quantize_activations: false,
        enable_prefix_caching: false,
        ..Default::default()
    }
}

fn load(model: &str) -> LoadedShards {
    load_shards(&config(model)).expect("load the tiny gpt-oss")
}

/// A batch of one sequence's positions `from..from + tokens.len()`, its
/// blocks `first_block, first_block + 1, ...`, every row sampled with its
/// logits.
fn batch(tokens: &[u32], from: u32, block_size: u32, first_block: u32) -> BatchInput {
    let n = tokens.len() as u32;
    let end = from + n;
    let base = first_block * block_size;
    BatchInput {
        tokens: tokens.to_vec(),
        positions: (from..end).collect(),
        seq_of_token: vec![0; n as usize],
        slot_mapping: (base + from..base + end).collect(),
        block_tables: vec![(first_block..first_block + end.div_ceil(block_size)).collect()],
        samples: (0..n)
            .map(|row| SampleRow {
                row,
                want_logits: true,
            })
            .collect(),
    }
}

/// Logits of every position of `tokens`, run as one teacher-forced batch
/// over the cache blocks from `first_block` on.
fn full_pass(m: &mut LoadedShards, tokens: &[u32], first_block: u32) -> Vec<Vec<f32>> {
    let b = batch(tokens, 0, m.info.block_size, first_block);
    run_shards(&mut m.shards, &b)
        .expect("forward pass")
        .into_iter()
        .map(|o| o.logits.expect("logits asked for"))
        .collect()
}

fn max_err(ours: &[Vec<f32>], want: &Value) -> f32 {
    let want = want.as_array().unwrap();
    assert_eq!(ours.len(), want.len(), "positions");
    let mut worst = 0f32;
    for (pos, (o, w)) in ours.iter().zip(want).enumerate() {
        let w = w.as_array().unwrap();
        assert_eq!(o.len(), w.len(), "vocabulary at position {pos}");
        for (a, b) in o.iter().zip(w) {
            let d = (a - b.as_f64().unwrap() as f32).abs();
            worst = worst.max(if d.is_nan() { f32::INFINITY } else { d });
        }
    }
    worst
}

fn check_logits(gguf: &str, reference: &str) {
    let r = json(reference);
    let tokens = ids(&r["token_ids"]);
    let mut m = load(gguf);
    let ours = full_pass(&mut m, &tokens, 0);
    let err = max_err(&ours, &r["logits"]);
    eprintln!(
        "{gguf}: max abs logit error over {} positions: {err:e}",
        tokens.len()
    );
    assert!(err <= TOL, "{gguf}: max abs logit error {err} > {TOL}");
}

/// The GGUF metadata gives transformers' config (hf-f32/config.json).
#[test]
fn spec_reads_gpt_oss_metadata() {
    let file = GgufFile::open(reference_dir().join("tiny-f32.gguf")).unwrap();
    let s = ModelSpec::from_gguf(&file).unwrap();
    assert_eq!(s.arch, Arch::GptOss);
    assert_eq!(
        (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim),
        (4, 64, 4, 2, 16)
    );
    assert_eq!(
        (s.n_experts, s.n_experts_used, s.expert_ffn_dim),
        (4, 2, 64)
    );
    assert_eq!(s.rope_freq_base, 150_000.0);
    assert_eq!(s.rope_freq_scale, 1.0 / 32.0);
    assert_eq!(
        s.yarn,
        Some(YarnSpec {
            factor: 32.0,
            original_context: 4096
        })
    );
    let y = s.yarn_params();
    assert!(!y.truncate, "gpt-oss's YaRN ramp is not truncated");
    assert_eq!(
        (y.ext_factor, y.beta_fast, y.beta_slow, y.n_ctx_orig),
        (1.0, 32.0, 1.0, 4096)
    );
    // layer_types: sliding, full, sliding, full; window 8.
    let windows: Vec<u32> = (0..4).map(|l| s.layer_window(l)).collect();
    assert_eq!(windows, [8, 0, 8, 0]);
    assert!(!s.tied_output && s.qkv_bias);
}

#[test]
fn f32_logits_match_transformers() {
    check_logits("tiny-f32.gguf", "hf-f32/logits.json");
}

#[test]
fn mxfp4_logits_match_transformers() {
    check_logits("tiny-mxfp4exact.gguf", "hf-mxfp4-exact/logits.json");
}

/// Greedy generation through the scheduler (prefill, then one decode step
/// per token) reproduces transformers' continuation id for id.
#[test]
fn greedy_generation_matches_transformers() {
    let g = json("hf-f32/greedy.json");
    let prompt = ids(&g["prompt_ids"]);
    let want = ids(&g["gen_ids"]);
    let mut m = load("tiny-f32.gguf");
    let pool = BlockPool::new(m.info.num_blocks as usize, m.info.block_size as usize);
    let mut sched = Scheduler::new(m.scheduler_config.clone(), pool);
    sched
        .add(
            1,
            SeqRequest {
                prompt,
                sampling: SamplingParams::greedy(),
                max_tokens: want.len(),
                stop_ids: vec![],
                ignore_eos: true,
                logprobs: None,
            },
        )
        .unwrap();
    let mut got = Vec::new();
    while sched.has_work() {
        let b = sched.schedule().expect("work to schedule");
        let samples = run_shards(&mut m.shards, &b).expect("step");
        for ev in sched.update(samples) {
            if let SeqEvent::Token { token, .. } = ev {
                got.push(token);
            }
        }
    }
    assert_eq!(got, want, "greedy continuation");
}

/// Decoding one token per step, well past the sliding window (8), gives the
/// one-pass logits at every position: the window, the sinks and the cache
/// reads agree between prefill and decode.
#[test]
fn decode_matches_full_pass() {
    let r = json("hf-f32/logits.json");
    let tokens = ids(&r["token_ids"]);
    let mut m = load("tiny-f32.gguf");
    let full = full_pass(&mut m, &tokens, 0);
    let bs = m.info.block_size;
    // A prefill chunk of 3, then single tokens, in other blocks than the
    // full pass used, so a K/V the steps failed to write is never found.
    let other = 10;
    let mut steps = vec![full_pass(&mut m, &tokens[..3], other)];
    for p in 3..tokens.len() {
        let b = batch(&tokens[p..=p], p as u32, bs, other);
        let out = run_shards(&mut m.shards, &b).expect("decode step");
        steps.push(out.into_iter().map(|o| o.logits.unwrap()).collect());
    }
    let stepped: Vec<Vec<f32>> = steps.into_iter().flatten().collect();
    let mut worst = 0f32;
    for (a, b) in stepped.iter().zip(&full) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("decode vs one pass: max abs logit difference {worst:e}");
    assert_eq!(stepped.len(), full.len());
    assert!(worst <= TOL, "decode differs from the full pass by {worst}");
}

/// The HuggingFace directory forms load through the same path: float
/// experts stored `[E][in][out]` with interleaved gate/up, and the MXFP4
/// checkpoint's `*_blocks`/`*_scales`.
#[test]
fn hf_directory_logits_match_transformers() {
    check_logits("hf-f32", "hf-f32/logits.json");
}

#[test]
fn hf_mxfp4_checkpoint_logits_match_transformers() {
    check_logits("hf-mxfp4-checkpoint", "hf-mxfp4-exact/logits.json");
}

/// Two shards (two devices on the one adapter, layers split 2 + 2) give the
/// one-shard logits.
#[test]
fn two_shards_match_one() {
    let r = json("hf-f32/logits.json");
    let tokens = ids(&r["token_ids"]);
    let mut one = load("tiny-mxfp4exact.gguf");
    let mut two = load_shards(&EngineConfig {
        devices: vec![Default::default(), Default::default()],
        ..config("tiny-mxfp4exact.gguf")
    })
    .expect("load on two shards");
    assert_eq!(two.shards.len(), 2);
    let a = full_pass(&mut one, &tokens, 0);
    let b = full_pass(&mut two, &tokens, 0);
    let worst = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("two shards vs one: max abs logit difference {worst:e}");
    assert!(worst <= TOL, "two shards differ from one by {worst}");
}

/// Three sequences of different lengths (3, 17 and 40 tokens, so past the
/// window and in different blocks) in one batch: each gets the logits it
/// gets alone.
#[test]
fn batch_of_different_lengths_matches_alone() {
    let r = json("hf-f32/logits.json");
    let all = ids(&r["token_ids"]);
    let seqs: Vec<Vec<u32>> = vec![
        all[..17].to_vec(),
        all[5..8].to_vec(),
        all.iter().rev().copied().collect(),
    ];
    let mut m = load("tiny-f32.gguf");
    let bs = m.info.block_size;
    let alone: Vec<Vec<Vec<f32>>> = seqs.iter().map(|s| full_pass(&mut m, s, 0)).collect();
    let mut b = BatchInput {
        tokens: Vec::new(),
        positions: Vec::new(),
        seq_of_token: Vec::new(),
        slot_mapping: Vec::new(),
        block_tables: Vec::new(),
        samples: Vec::new(),
    };
    let mut first_block = 20;
    for (i, s) in seqs.iter().enumerate() {
        let one = batch(s, 0, bs, first_block);
        let row0 = b.tokens.len() as u32;
        b.tokens.extend(&one.tokens);
        b.positions.extend(&one.positions);
        b.seq_of_token
            .extend(std::iter::repeat_n(i as u32, s.len()));
        b.slot_mapping.extend(&one.slot_mapping);
        b.block_tables.extend(one.block_tables);
        b.samples.extend(one.samples.iter().map(|r| SampleRow {
            row: row0 + r.row,
            want_logits: true,
        }));
        first_block += (s.len() as u32).div_ceil(bs) + 1;
    }
    let out = run_shards(&mut m.shards, &b).expect("batched pass");
    let mut rows = out.into_iter().map(|o| o.logits.unwrap());
    let mut worst = 0f32;
    for seq in &alone {
        for want in seq {
            let got = rows.next().expect("a row per token");
            for (x, y) in got.iter().zip(want) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    eprintln!("batched vs alone: max abs logit difference {worst:e}");
    assert!(worst <= TOL, "batched logits differ from alone by {worst}");
}

/// `wgserve generate --prompt-ids ... --temperature 0 --json` prints
/// transformers' greedy continuation, from the GGUF and from the HF
/// directory; a text prompt to these tokenizer-less models is refused
/// with a message that says to send ids.
#[test]
fn cli_generate_prompt_ids_gives_transformers_greedy() {
    let g = json("hf-f32/greedy.json");
    let prompt: Vec<String> = ids(&g["prompt_ids"]).iter().map(u32::to_string).collect();
    let want = ids(&g["gen_ids"]);
    for model in ["tiny-f32.gguf", "hf-f32"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgserve"))
            .args(["generate", "--model"])
            .arg(reference_dir().join(model))
            .args(["--prompt-ids", &prompt.join(",")])
            .args(["--temperature", "0", "--json", "--ignore-eos"])
            .args(["--max-tokens", &want.len().to_string()])
            .output()
            .expect("run wgserve generate");
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(ids(&v["token_ids"]), want, "{model}: greedy token ids");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["generate", "--model"])
        .arg(reference_dir().join("hf-f32"))
        .args(["--prompt", "hello", "--max-tokens", "2"])
        .output()
        .expect("run wgserve generate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a text prompt must fail");
    assert!(
        err.contains("no tokenizer") && err.contains("--prompt-ids"),
        "unclear error: {err}"
    );
}

/// The memory plan counts what the loader uploads: for the tiny model its
/// weights per shard equal the bytes the shards really hold.
#[test]
fn memory_plan_weights_equal_what_loads() {
    use wgserve::loader::model_layout;
    use wgserve::model::plan::{plan, PlanRequest};
    for model in ["tiny-mxfp4exact.gguf", "hf-mxfp4-checkpoint"] {
        let path = reference_dir().join(model);
        let (meta, tensors) = model_layout(&path).expect("layout");
        let spec = ModelSpec::from_directory(&path, &meta, &tensors).unwrap();
        let p = plan(
            &spec,
            &tensors,
            &PlanRequest {
                devices: 2,
                ..Default::default()
            },
        );
        let loaded = load_shards(&EngineConfig {
            devices: vec![Default::default(), Default::default()],
            ..config(model)
        })
        .unwrap();
        let planned: Vec<u64> = p.shards.iter().map(|s| s.weight_bytes).collect();
        let real: Vec<u64> = loaded.shards.iter().map(|s| s.weight_bytes()).collect();
        assert_eq!(
            planned, real,
            "{model}: planned vs loaded weight bytes per shard"
        );
    }
}

/// gpt-oss-20b from its published config (`configs/gpt-oss-20b`, no
/// weights) on two 24 GiB cards: weights per shard as counted from the
/// architecture by hand, 48 KiB of f16 KV per token, and sequences of the
/// full 131072-token context fit.
#[test]
fn memory_plan_for_gpt_oss_20b_on_two_24gb_cards() {
    use wgserve::loader::model_layout;
    use wgserve::model::plan::{plan, PlanRequest};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/gpt-oss-20b");
    let (meta, tensors) = model_layout(&path).expect("plan from config.json alone");
    let spec = ModelSpec::from_directory(&path, &meta, &tensors).unwrap();
    assert_eq!(
        (
            spec.n_layers,
            spec.d_model,
            spec.n_experts,
            spec.n_experts_used
        ),
        (24, 2880, 32, 4)
    );
    assert_eq!((spec.n_heads, spec.n_kv_heads, spec.head_dim), (64, 8, 64));
    assert_eq!((spec.sliding_window, spec.vocab_size), (128, 201_088));
    let req = PlanRequest {
        devices: 2,
        device_bytes: 24 << 30,
        context: 131_072,
        ..Default::default()
    };
    let p = plan(&spec, &tensors, &req);
    // By hand: BF16 matrices, f32 vectors and biases, MXFP4 experts (17
    // bytes per 32 weights).
    let (d, q, kv, e, f, v) = (2880u64, 4096u64, 512u64, 32u64, 2880u64, 201_088u64);
    let layer = 2 * d * 4                    // norms
        + (d * q + 2 * d * kv + q * d) * 2   // q, k, v, o
        + (q + 2 * kv + d) * 4               // their biases
        + 64 * 4                             // sinks
        + e * d * 2 + e * 4                  // router
        + 3 * e * f * d / 32 * 17            // gate, up, down experts
        + (2 * e * f + e * d) * 4; // expert biases
    assert_eq!(p.shards[0].weight_bytes, v * d * 2 + 12 * layer);
    assert_eq!(p.shards[1].weight_bytes, v * d * 2 + d * 4 + 12 * layer);
    assert_eq!(p.kv_bytes_per_token, 24 * 2 * 512 * 2);
    assert!(p.sequences >= 1, "{p}");
    eprintln!("{p}");
}

/// `wgserve serve` on a model without a tokenizer (the HF directory form):
/// a token-id prompt on /v1/completions gets transformers' greedy ids back
/// (`return_token_ids`); a text prompt and a chat get a 400 that says to
/// send token ids; the server stays up.
#[test]
fn server_takes_token_ids_from_a_model_without_tokenizer() {
    use serde_json::json;
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gpt-oss-tiny-server.log");
    let args = [
        "--model".to_string(),
        reference_dir().join("hf-f32").display().to_string(),
    ];
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wgserve"));
    let mut server = common::ServerProcess::start(&bin, &args, &log).expect("start the server");
    server
        .wait_ready(std::time::Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let g = json("hf-f32/greedy.json");
    let want = ids(&g["gen_ids"]);
    let body = json!({"prompt": g["prompt_ids"], "max_tokens": want.len(), "temperature": 0,
                      "ignore_eos": true, "return_token_ids": true, "logprobs": 1});
    let resp = common::post(server.addr, "/v1/completions", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_eq!(
        ids(&v["choices"][0]["token_ids"]),
        want,
        "greedy ids over HTTP"
    );
    assert_eq!(v["usage"]["completion_tokens"], want.len());
    // No tokenizer: logprobs name tokens by id.
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"][0],
        format!("token_id:{}", want[0])
    );

    let resp = common::post(server.addr, "/v1/completions", &json!({"prompt": "hello"}));
    let e = resp.error(400);
    assert!(e["message"].as_str().unwrap().contains("token ids"), "{e}");
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    let resp = common::post(server.addr, "/v1/chat/completions", &chat);
    resp.error(400);
    assert_eq!(common::get(server.addr, "/health").status, 200, "still up");
}

/// A model directory's declared end of sequence (`eos_token_id` in
/// config.json or generation_config.json) stops generation even without a
/// tokenizer: here the third greedy token is declared the end.
#[test]
fn declared_eos_stops_a_model_without_tokenizer() {
    let g = json("hf-f32/greedy.json");
    let want = ids(&g["gen_ids"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    std::fs::create_dir(&dir).unwrap();
    let src = reference_dir().join("hf-f32");
    std::os::unix::fs::symlink(src.join("model.safetensors"), dir.join("model.safetensors"))
        .unwrap();
    let mut config = json("hf-f32/config.json");
    config["eos_token_id"] = serde_json::json!(want[2]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::json!({"eos_token_id": [want[2], 511]}).to_string(),
    )
    .unwrap();
    assert_eq!(wgserve::loader::declared_eos_ids(&dir), [want[2], 511]);
    let prompt: Vec<String> = ids(&g["prompt_ids"]).iter().map(u32::to_string).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["generate", "--model"])
        .arg(&dir)
        .args([
            "--prompt-ids",
            &prompt.join(","),
            "--json",
            "--max-tokens",
            "20",
        ])
        .output()
        .expect("run wgserve generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&v["token_ids"]), want[..3], "stops at the declared EOS");
}

/// The KV budget: an explicit one is used as is; 0 sizes it from the
/// device's memory, which Vulkan reports (here the CPU driver's, where the
/// fixed fallback applies instead of taking most of the host's memory).
#[test]
fn kv_budget_explicit_or_from_device_memory() {
    use wgserve::gpu::{AdapterChoice, GpuContext};
    use wgserve::loader::kv_budget;
    let ctx = GpuContext::new(&AdapterChoice::Auto).unwrap();
    let mem = ctx
        .caps
        .device_memory
        .expect("Vulkan reports a device-local heap");
    assert!(mem >= 256 << 20, "{mem}");
    let file = GgufFile::open(reference_dir().join("tiny-f32.gguf")).unwrap();
    let spec = ModelSpec::from_gguf(&file).unwrap();
    let explicit = EngineConfig {
        kv_memory_bytes: 123 << 20,
        ..Default::default()
    };
    assert_eq!(
        kv_budget(&explicit, &ctx, &spec, &file.tensors, 1, 0),
        123 << 20
    );
    let auto = EngineConfig {
        kv_memory_bytes: 0,
        ..Default::default()
    };
    let b = kv_budget(&auto, &ctx, &spec, &file.tensors, 1, 0);
    if ctx.info.device_type == wgpu::DeviceType::Cpu {
        assert_eq!(b, 256 << 20, "CPU drivers get the fixed budget");
    } else {
        assert!(b > 0 && b < mem, "{b} of {mem}");
    }
}
