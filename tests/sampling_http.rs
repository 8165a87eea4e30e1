//! The sampling parameters README lists, on the real default model over real
//! HTTP (the unit tests check the sampler on made-up logits, `api_mock.rs`
//! the parameters' parsing): a seed reproduces a sampled answer and other
//! seeds vary it; top_k = 1, a tiny top_p and min_p = 1 leave only the
//! greedy token; a strong repetition penalty forbids every seen token and
//! presence/frequency penalties change the greedy answer; a stop string cuts
//! the text with finish_reason "stop"; n = 2 gives two indexed choices; the
//! logprobs of a greedy answer name the chosen token as the most likely.
//!
//! One server for the file, tests one at a time, a few tokens per answer:
//! lavapipe decodes a few tokens a second.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

const MAX_TOKENS: usize = 8;
const PROMPT: &str = "Once upon a time, in a small village,";
/// A prompt whose greedy continuation repeats itself.
const REPETITIVE: &str = "red, green, red, green, red, green, red, green,";

fn server() -> SocketAddr {
    static SERVER: OnceLock<Result<ServerProcess, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            set_read_timeout(Duration::from_secs(120));
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let args = [
                "--model".to_string(),
                default_model().display().to_string(),
                "--web-dir".into(),
                dir.join("web").display().to_string(),
                "--kv-memory-mib".into(),
                "64".into(),
            ];
            serve_ready(&args, "sampling-http.log", Duration::from_secs(180))
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
        .addr
}

/// One test at a time: each keeps the CPU busy.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// POSTs `/v1/completions` with `prompt`, `MAX_TOKENS`, token ids returned,
/// and `extra`'s keys; returns the whole response.
fn complete(prompt: &str, extra: Value) -> Value {
    let mut body = json!({"prompt": prompt, "max_tokens": MAX_TOKENS, "return_token_ids": true});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp = post(server(), "/v1/completions", &body);
    assert_eq!(resp.status, 200, "{body}: {}", resp.text());
    resp.json()
}

fn ids_of(choice: &Value) -> Vec<u64> {
    choice["token_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no token_ids: {choice}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// The generated ids of the first choice.
fn ids(prompt: &str, extra: Value) -> Vec<u64> {
    ids_of(&complete(prompt, extra)["choices"][0])
}

fn greedy(prompt: &str) -> Vec<u64> {
    ids(prompt, json!({"temperature": 0}))
}

fn prompt_ids(prompt: &str) -> Vec<u64> {
    let resp = post(server(), "/tokenize", &json!({"prompt": prompt}));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn a_seed_reproduces_a_sampled_answer_and_other_seeds_vary_it() {
    let _s = serial();
    let sampled = |seed: u64| ids(PROMPT, json!({"temperature": 1.0, "seed": seed}));
    let first = sampled(7);
    assert_eq!(first.len(), MAX_TOKENS);
    assert_eq!(sampled(7), first, "the same seed gives the same tokens");
    let others: Vec<Vec<u64>> = (1..=3).map(sampled).collect();
    assert!(
        others.iter().any(|o| *o != first),
        "seeds 1..=3 all gave seed 7's answer {first:?}: {others:?}"
    );
    // And sampling at temperature 1 is not the greedy answer in disguise.
    let g = greedy(PROMPT);
    assert!(
        std::iter::once(&first).chain(&others).any(|o| *o != g),
        "every sampled answer equals the greedy one {g:?}"
    );
}

/// top_k = 1, top_p near 0 and min_p = 1 each keep only the most likely
/// token, whatever the temperature and seed: the greedy answer. The same
/// temperature and seed without them give another answer, so each one did
/// the narrowing.
#[test]
fn truncation_to_one_token_is_greedy() {
    let _s = serial();
    let g = greedy(PROMPT);
    assert_eq!(g.len(), MAX_TOKENS);
    for (seed, key, value) in [
        (1, "top_k", json!(1)),
        (2, "top_p", json!(1e-6)),
        (3, "min_p", json!(1.0)),
    ] {
        let mut extra = json!({"temperature": 1.5, "seed": seed});
        assert_ne!(ids(PROMPT, extra.clone()), g, "seed {seed} alone is greedy");
        extra[key] = value;
        assert_eq!(ids(PROMPT, extra.clone()), g, "{extra}");
    }
}

#[test]
fn penalties_change_the_greedy_answer() {
    let _s = serial();
    let g = greedy(REPETITIVE);
    let text = complete(REPETITIVE, json!({"temperature": 0}))["choices"][0]["text"].clone();
    let distinct: std::collections::HashSet<_> = g.iter().collect();
    assert!(
        distinct.len() < g.len(),
        "the unpenalised answer repeats a token: {g:?} {text}"
    );

    // vLLM's repetition penalty covers prompt and output: divided by 1000,
    // no seen token can win, so no id comes twice or from the prompt.
    let p = ids(
        REPETITIVE,
        json!({"temperature": 0, "repetition_penalty": 1000.0}),
    );
    let prompt = prompt_ids(REPETITIVE);
    for (i, id) in p.iter().enumerate() {
        assert!(!p[..i].contains(id), "{id} repeats in {p:?}");
        assert!(!prompt.contains(id), "{id} is in the prompt {prompt:?}");
    }

    // OpenAI's penalties cover the output only.
    for extra in [
        json!({"temperature": 0, "presence_penalty": 2.0}),
        json!({"temperature": 0, "frequency_penalty": 2.0}),
    ] {
        let got = ids(REPETITIVE, extra.clone());
        assert_eq!(got.len(), MAX_TOKENS);
        assert_ne!(got, g, "{extra} left the greedy answer unchanged");
    }
}

#[test]
fn a_stop_string_cuts_the_text_before_it() {
    let _s = serial();
    let prompt = "The capital of France is";
    let free = complete(prompt, json!({"temperature": 0}));
    let free_text = free["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(free["choices"][0]["finish_reason"], "length", "{free}");
    let cut_at = free_text
        .find('.')
        .unwrap_or_else(|| panic!("the free answer has a '.': {free_text:?}"));
    assert!(cut_at > 0, "{free_text:?}");

    let stopped = complete(prompt, json!({"temperature": 0, "stop": ["xyz", "."]}));
    let choice = &stopped["choices"][0];
    assert_eq!(choice["text"], free_text[..cut_at], "{stopped}");
    assert_eq!(choice["finish_reason"], "stop", "{stopped}");
    assert!(stopped["usage"]["completion_tokens"].as_u64().unwrap() < MAX_TOKENS as u64);
}

#[test]
fn n_gives_indexed_choices_reproducible_by_seed() {
    let _s = serial();
    let body = json!({"temperature": 1.0, "seed": 11, "n": 2});
    let a = complete(PROMPT, body.clone());
    let choices = a["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2, "{a}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{a}");
        assert_eq!(ids_of(c).len(), MAX_TOKENS, "{a}");
    }
    assert_eq!(
        a["usage"]["completion_tokens"],
        2 * MAX_TOKENS,
        "usage counts both choices: {a}"
    );
    let b = complete(PROMPT, body);
    for i in 0..2 {
        assert_eq!(
            ids_of(&a["choices"][i]),
            ids_of(&b["choices"][i]),
            "choice {i} with the same seed"
        );
    }
    // Choice i samples with seed + i: choice 1 is a seed-12 answer.
    let seed12 = ids(PROMPT, json!({"temperature": 1.0, "seed": 12}));
    assert_eq!(ids_of(&a["choices"][1]), seed12);
}

#[test]
fn greedy_logprobs_name_the_chosen_token_most_likely() {
    let _s = serial();
    let resp = complete(PROMPT, json!({"temperature": 0, "logprobs": 3}));
    let choice = &resp["choices"][0];
    let lp = &choice["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let token_lps = lp["token_logprobs"].as_array().unwrap();
    let tops = lp["top_logprobs"].as_array().unwrap();
    assert_eq!(tokens.len(), MAX_TOKENS, "{lp}");
    assert_eq!(token_lps.len(), MAX_TOKENS, "{lp}");
    assert_eq!(tops.len(), MAX_TOKENS, "{lp}");
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, choice["text"].as_str().unwrap());
    for i in 0..MAX_TOKENS {
        let chosen = token_lps[i].as_f64().unwrap();
        let top = tops[i].as_object().unwrap();
        assert!((1..=3).contains(&top.len()), "{lp}");
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(chosen <= 0.0, "{lp}");
        assert_eq!(
            chosen, best,
            "position {i}: greedy picks the top logprob: {lp}"
        );
        assert_eq!(
            top[tokens[i].as_str().unwrap()].as_f64(),
            Some(chosen),
            "position {i}: the chosen token is among the top: {lp}"
        );
    }

    // The chat form: content[i] with its own top_logprobs, most likely first.
    let body = json!({"messages": [{"role": "user", "content": "Say hello."}],
                      "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 2});
    let resp = post(server(), "/v1/chat/completions", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4, "{v}");
    let mut text = String::new();
    for c in content {
        let top = c["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 2, "{c}");
        assert_eq!(top[0]["token"], c["token"], "{c}");
        assert_eq!(top[0]["logprob"], c["logprob"], "{c}");
        assert!(
            top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64(),
            "{c}"
        );
        let bytes: Vec<u8> = c["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, c["token"].as_str().unwrap().as_bytes(), "{c}");
        text.push_str(c["token"].as_str().unwrap());
    }
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
}
