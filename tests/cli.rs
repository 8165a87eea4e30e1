//! The command line as README shows it, run as a process: `wgserve plan` on
//! gpt-oss-20b's published config (every printed figure checked against
//! one counted by hand from the architecture), and `wgserve generate` on
//! the default model with each of its flags (`--json`, `--max-tokens`,
//! `--temperature` with `--seed`, `--top-k`, `--top-p`, `--ignore-eos`,
//! `--chat`, `--prompt-ids`, `--shards`), and `--chat` on a tiny written
//! model whose template and encoder both add BOS (one BOS reaches the model).
//!
//! Each `generate` loads the model afresh (a few seconds on lavapipe) and
//! decodes a handful of tokens.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wgserve(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgserve"));
    cmd.args(args)
        .current_dir(manifest_dir())
        .env("RUST_LOG", "wgserve=warn");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WGSERVE_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run wgserve")
}

fn stdout_of(args: &[&str]) -> String {
    let out = wgserve(args);
    assert!(
        out.status.success(),
        "wgserve {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------- plan

/// `12.83 GiB`, `85.2 MiB`: what `wgserve plan` prints for `b` bytes.
fn human(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// README's `wgserve plan --model configs/gpt-oss-20b --devices 2
/// --device-memory-gib 24 --context 8192`, figure by figure.
#[test]
fn plan_as_the_readme_shows_it() {
    let text = stdout_of(&[
        "plan",
        "--model",
        "configs/gpt-oss-20b",
        "--devices",
        "2",
        "--device-memory-gib",
        "24",
        "--context",
        "8192",
    ]);
    eprintln!("{text}");
    // gpt-oss-20b's config.json.
    let (layers, d, heads, kv_heads, hd) = (24u64, 2880u64, 64u64, 8u64, 64u64);
    let (experts, used, ffn, vocab) = (32u64, 4u64, 2880u64, 201_088u64);
    let (q, kv) = (heads * hd, kv_heads * hd);
    // Weights by hand: BF16 matrices, f32 norms, biases and sinks, MXFP4
    // experts (17 bytes per 32 weights), untied BF16 embedding and output.
    let layer = 2 * d * 4
        + (d * q + 2 * d * kv + q * d) * 2
        + (q + 2 * kv + d) * 4
        + heads * 4
        + experts * d * 2
        + experts * 4
        + 3 * experts * ffn * d / 32 * 17
        + (2 * experts * ffn + experts * d) * 4;
    let embd = vocab * d * 2;
    let weights = [embd + 12 * layer, embd + d * 4 + 12 * layer];
    let total: u64 = weights.iter().sum();
    assert!(
        (12u64 << 30..14u64 << 30).contains(&total),
        "gpt-oss-20b is about 13 GiB in MXFP4: {total}"
    );
    // f16 K and V of every layer; half the layers on each shard.
    let kv_per_token = 2 * layers * kv * 2;
    assert_eq!(kv_per_token, 49_152);
    // Step activations in f32: residual, norm and attention widths and the
    // routed experts' hidden for 512 batched tokens, plus 16 rows of logits
    // on the last shard.
    let per_token = 3 * d + 2 * q + 2 * kv + 2 * used * ffn + experts;
    let activations = [4 * 512 * per_token, 4 * (512 * per_token + 16 * vocab)];
    let device = 24u64 << 30;
    let reserve = (device as f64 * 0.05) as u64;
    let left: Vec<u64> = (0..2)
        .map(|i| device - weights[i] - activations[i] - reserve)
        .collect();
    let kv_tokens = left
        .iter()
        .map(|l| l / (kv_per_token / 2 * 16) * 16)
        .min()
        .unwrap();

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "gpt-oss-20b (gpt-oss, 24 layers, 32 experts of which 4 per token)"
    );
    assert_eq!(
        lines[1],
        format!(
            "2 device(s) of 24.00 GiB; KV cache {kv_per_token} bytes per token (48.0 KiB), \
             context 8192"
        )
    );
    for i in 0..2 {
        assert_eq!(
            lines[2 + i],
            format!(
                "  shard {i}: layers {}..{}: weights {}, activations {}, KV {} B/token, {} left \
                 for KV",
                12 * i,
                12 * (i + 1),
                human(weights[i]),
                human(activations[i]),
                kv_per_token / 2,
                human(left[i])
            )
        );
    }
    assert_eq!(
        lines[4],
        format!(
            "  KV holds {kv_tokens} tokens: {} sequences of 8192 tokens at once",
            kv_tokens / 8192
        )
    );
    assert!(kv_tokens / 8192 >= 1);
}

#[test]
fn plan_says_when_nothing_fits() {
    let text = stdout_of(&[
        "plan",
        "--model",
        "configs/gpt-oss-20b",
        "--device-memory-gib",
        "8",
    ]);
    assert!(text.contains("does not fit"), "{text}");
    let bad = wgserve(&["plan", "--model", "configs/gpt-oss-20b", "--devices", "0"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--devices"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

// ---------------------------------------------------------------- generate

/// One `generate` test at a time: each loads the model and keeps the CPU busy.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const PROMPT: &str = "The capital of France is";

/// `wgserve generate --json <args>`: its JSON object.
fn generate(args: &[&str]) -> Value {
    let mut all = vec!["generate", "--json"];
    all.extend_from_slice(args);
    let out = stdout_of(&all);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {v}"))
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}

#[test]
fn generate_json_max_tokens_prompt_ids_and_plain_text() {
    let _s = serial();
    let v = generate(&["--prompt", PROMPT, "--max-tokens", "6"]);
    let out = ids(&v, "token_ids");
    assert_eq!(out.len(), 6, "{v}");
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("Paris"), "{v}");
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()), "{v}");
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    let prompt = ids(&v, "prompt_token_ids");
    assert!(!prompt.is_empty());

    // Fewer tokens: a prefix of the same greedy answer.
    let short = generate(&["--prompt", PROMPT, "--max-tokens", "2"]);
    assert_eq!(ids(&short, "token_ids"), out[..2]);

    // The same prompt as token ids gives the same answer.
    let joined = prompt
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let by_ids = generate(&["--prompt-ids", &joined, "--max-tokens", "6"]);
    assert_eq!(ids(&by_ids, "token_ids"), out);
    assert_eq!(by_ids["text"], v["text"]);

    // Without --json: the text streamed to stdout, then a newline.
    let plain = stdout_of(&["generate", "--prompt", PROMPT, "--max-tokens", "6"]);
    assert_eq!(plain, format!("{text}\n"));
}

#[test]
fn generate_seed_temperature_top_k_and_top_p() {
    let _s = serial();
    let sampled = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "--prompt",
            PROMPT,
            "--max-tokens",
            "5",
            "--temperature",
            "1.5",
            "--seed",
            seed,
        ];
        args.extend_from_slice(extra);
        ids(&generate(&args), "token_ids")
    };
    let greedy = ids(
        &generate(&["--prompt", PROMPT, "--max-tokens", "5"]),
        "token_ids",
    );
    let a = sampled("1", &[]);
    assert_eq!(sampled("1", &[]), a, "the same seed, the same tokens");
    let others = [sampled("2", &[]), sampled("3", &[])];
    assert!(
        others.iter().any(|o| *o != a),
        "seeds 2 and 3 gave seed 1's {a:?}"
    );
    assert!(
        std::iter::once(&a).chain(&others).any(|o| *o != greedy),
        "temperature 1.5 gave the greedy {greedy:?} for every seed"
    );
    // Narrowed to one candidate, any seed gives the greedy answer.
    assert_eq!(sampled("2", &["--top-k", "1"]), greedy, "--top-k 1");
    assert_eq!(sampled("3", &["--top-p", "0.000001"]), greedy, "--top-p");
}

/// The chat template wraps the message; an answer that ends (EOS) early
/// runs on with `--ignore-eos`.
#[test]
fn generate_chat_and_ignore_eos() {
    let _s = serial();
    let chat = generate(&[
        "--chat",
        "What is the capital of France?",
        "--max-tokens",
        "3",
    ]);
    let plain = generate(&[
        "--prompt",
        "What is the capital of France?",
        "--max-tokens",
        "3",
    ]);
    let (c, p) = (
        ids(&chat, "prompt_token_ids"),
        ids(&plain, "prompt_token_ids"),
    );
    assert!(c.len() > p.len() + 4, "templated {c:?} vs raw {p:?}");
    assert!(
        c.windows(p.len()).any(|w| w == p),
        "the message is inside the template"
    );

    // An assistant turn already answered: the model's next token is
    // <|im_end|>, which ends the answer unless EOS is ignored.
    let done = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
                <|im_start|>assistant\nThe capital of France is Paris.";
    let ended = generate(&["--prompt", done, "--max-tokens", "4"]);
    let ended_ids = ids(&ended, "token_ids");
    assert!(ended_ids.len() < 4, "{ended}");
    let ignored = generate(&["--prompt", done, "--max-tokens", "4", "--ignore-eos"]);
    let ignored_ids = ids(&ignored, "token_ids");
    assert_eq!(ignored_ids.len(), 4, "{ignored}");
    assert_eq!(ignored_ids[..ended_ids.len()], ended_ids[..]);
}

#[test]
fn generate_on_two_shards_matches_one() {
    let _s = serial();
    let one = generate(&["--prompt", PROMPT, "--max-tokens", "4"]);
    let two = generate(&["--prompt", PROMPT, "--max-tokens", "4", "--shards", "2"]);
    assert_eq!(ids(&two, "token_ids"), ids(&one, "token_ids"));
}

/// A tiny random llama whose vocabulary adds BOS (`add_bos_token`) and whose
/// chat template also writes `{{ bos_token }}`: the two must make one BOS.
/// Returns the BOS id.
fn write_bos_model(path: &std::path::Path) -> u32 {
    use wgserve::gguf::metadata::MetaValue;

    let shape = common::tiny::TinyLlama {
        name: "tiny-bos",
        d: 128,
        heads: 2,
        kv_heads: 2,
        ffn: 256,
        vocab: 300,
        context: 64,
    };
    let vocab = shape.vocab;
    // GPT-2's byte alphabet (printable bytes as themselves, the rest from
    // U+0100) makes a valid byte-level BPE vocabulary of 256 tokens.
    let mut tokens: Vec<String> = (0..=255u8)
        .filter(|b| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
        .map(|b| char::from(b).to_string())
        .collect();
    tokens.extend((0..68).map(|i| char::from_u32(256 + i).unwrap().to_string()));
    tokens.push("hi".into());
    let bos = tokens.len() as u32;
    tokens.push("<s>".into());
    let eos = tokens.len() as u32;
    tokens.push("</s>".into());
    while tokens.len() < vocab {
        tokens.push(format!("<extra_{}>", tokens.len()));
    }
    let mut types = vec![1i32; vocab];
    types[bos as usize] = 3;
    types[eos as usize] = 3;

    let mut w = shape.writer();
    w.meta("tokenizer.ggml.model", MetaValue::from("gpt2"))
        .meta("tokenizer.ggml.tokens", MetaValue::str_array(&tokens))
        .meta("tokenizer.ggml.token_type", types.into())
        .meta("tokenizer.ggml.merges", MetaValue::str_array(&["h i"]))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(bos))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(eos))
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        .meta(
            "tokenizer.chat_template",
            MetaValue::from("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"),
        );
    // Any weights do: the test reads only the prompt's ids.
    shape.write(w, path, |i| ((i * 7919 % 101) as f32 / 101.0 - 0.5) * 0.2);
    bos
}

/// `--chat` encodes as the server does: a template that writes BOS, on a
/// model whose encoder adds BOS too, still gives the model one BOS.
#[test]
fn generate_chat_gets_one_bos_when_the_template_writes_it() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-bos.gguf");
    let bos = u64::from(write_bos_model(&model));
    let model = model.to_str().unwrap();
    let chat = generate(&["--model", model, "--chat", "hi", "--max-tokens", "1"]);
    let prompt = ids(&chat, "prompt_token_ids");
    assert_eq!(prompt[0], bos, "{chat}");
    assert_eq!(
        prompt.iter().filter(|&&id| id == bos).count(),
        1,
        "one BOS: {prompt:?}"
    );
    // Raw text is encoded as written: the encoder's BOS before the text's.
    let text = generate(&["--model", model, "--prompt", "<s>hi", "--max-tokens", "1"]);
    assert_eq!(ids(&text, "prompt_token_ids")[..2], [bos, bos], "{text}");
}
