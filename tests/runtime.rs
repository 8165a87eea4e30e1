//! The actor runtime end to end with the real default model
//! (SmolLM2-135M-Instruct) on the Vulkan device: concurrent requests give the
//! same tokens as each alone (also under preemption with a tiny KV pool), a
//! late request joins the running batch, the prefix cache serves a shared
//! prompt prefix, a dropped receiver cancels its sequence, stop strings and
//! split multi-byte characters come out right, and bad requests are refused
//! at `submit`.
//!
//! lavapipe is slow (about half a second per decode step): outputs are kept
//! to a dozen tokens, each test function loads one runtime, and the tests run
//! one at a time.

#[path = "common/reference.rs"]
mod reference;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use wgserve::actors::{Runtime, RuntimeOptions};
use wgserve::backend::{
    Backend, BackendError, Event, GenerateRequest, MetricsSnapshot, PromptInput,
};
use wgserve::gpu::{AdapterChoice, GpuContext};
use wgserve::loader::{load, open_model, EngineConfig, DEFAULT_MODEL};
use wgserve::model::kv_cache::layout_for;
use wgserve::sampling::SamplingParams;
use wgserve::scheduler::{FinishReason, Usage};
use wgserve::tokenizer::Tokenizer;

const MAX_TOKENS: usize = 12;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One test at a time: each loads the model and keeps the CPU busy.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> EngineConfig {
    EngineConfig {
        model: manifest_dir().join(DEFAULT_MODEL),
        kv_memory_bytes: 32 << 20,
        ..EngineConfig::default()
    }
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        open_model(&config().model)
            .expect("the default model opens")
            .2
            .expect("the default model has a tokenizer")
    })
}

/// The reference prompts plus two more: eight in all.
fn prompts() -> Vec<String> {
    let path = reference::data_dir().join("smollm2-greedy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the reference file {} is missing: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("the reference file is JSON");
    let mut prompts: Vec<String> = json["prompts"]
        .as_array()
        .expect("a prompts array")
        .iter()
        .map(|p| p["prompt"].as_str().expect("a prompt string").to_owned())
        .collect();
    prompts.push("The best way to learn a new language is".into());
    prompts.push("Water boils at a temperature of".into());
    assert_eq!(prompts.len(), 8);
    prompts
}

fn greedy(prompt: PromptInput, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        keep_special: false,
        reasoning_effort: None,
    }
}

fn text(prompt: &str) -> GenerateRequest {
    greedy(PromptInput::Text(prompt.into()), MAX_TOKENS)
}

/// Loads the model with `cfg` and runs `body` against a runtime inside an
/// actix system.
fn with_runtime<F, Fut, T>(cfg: EngineConfig, opts: RuntimeOptions, body: F) -> T
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = T>,
{
    let t = Instant::now();
    let loaded = load(&cfg).expect("the default model loads (run scripts/setup)");
    eprintln!(
        "loaded in {:.1?}: {} blocks of {}, context {}",
        t.elapsed(),
        loaded.info.num_blocks,
        loaded.info.block_size,
        loaded.info.max_model_len
    );
    actix_rt::System::new().block_on(async move {
        let rt = Runtime::start(loaded, opts);
        assert!(rt.ready());
        body(rt).await
    })
}

#[derive(Debug, Clone, Default)]
struct Output {
    ids: Vec<u32>,
    deltas: Vec<String>,
    reason: Option<FinishReason>,
    usage: Usage,
}

impl Output {
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

/// Reads a stream to its end; fails on an error event or a stall.
async fn collect(mut rx: UnboundedReceiver<Event>) -> Output {
    let mut out = Output::default();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("the stream stalled")
            .expect("the stream ended without Finished");
        match event {
            Event::Delta {
                text, token_ids, ..
            } => {
                out.deltas.push(text);
                out.ids.extend(token_ids);
            }
            Event::Finished { reason, usage } => {
                out.reason = Some(reason);
                out.usage = usage;
                return out;
            }
            Event::Error(e) => panic!("the request failed: {e}"),
        }
    }
}

async fn run(rt: &Runtime, req: GenerateRequest) -> Output {
    let (_, rx) = rt.submit(req).await.expect("the request is accepted");
    collect(rx).await
}

/// Each prompt's greedy output run alone, computed once for all tests
/// (batch invariance makes it the same on any runtime).
async fn alone(rt: &Runtime, prompt: &str) -> Output {
    static CACHE: OnceLock<Mutex<HashMap<String, Output>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(out) = cache.lock().unwrap().get(prompt) {
        return out.clone();
    }
    let t = Instant::now();
    let out = run(rt, text(prompt)).await;
    eprintln!(
        "alone {prompt:?}: {:?} {:?} in {:.1?}",
        out.ids,
        out.text(),
        t.elapsed()
    );
    cache.lock().unwrap().insert(prompt.to_owned(), out.clone());
    out
}

async fn wait_for(
    rt: &Runtime,
    what: &str,
    done: impl Fn(&MetricsSnapshot) -> bool,
) -> MetricsSnapshot {
    let start = Instant::now();
    loop {
        let m = rt.metrics().await;
        if done(&m) {
            return m;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: {m:?}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_same(got: &Output, want: &Output, what: &str) {
    assert_eq!(
        got.ids, want.ids,
        "{what}: token ids differ from the request run alone"
    );
    assert_eq!(got.reason, want.reason, "{what}");
    assert_eq!(got.text(), want.text(), "{what}");
}

#[test]
fn concurrent_requests_match_each_alone_and_late_ones_join() {
    let _serial = serial();
    with_runtime(config(), RuntimeOptions::default(), |rt| async move {
        let prompts = prompts();
        let mut alone_out = Vec::new();
        for p in &prompts {
            alone_out.push(alone(&rt, p).await);
        }
        let before = rt.metrics().await;

        let t = Instant::now();
        let accepted = join_all(prompts.iter().map(|p| rt.submit(text(p)))).await;
        let outs = join_all(
            accepted
                .into_iter()
                .map(|a| collect(a.expect("accepted").1)),
        )
        .await;
        eprintln!("8 concurrent in {:.1?}", t.elapsed());
        for (i, (got, want)) in outs.iter().zip(&alone_out).enumerate() {
            assert_same(got, want, &format!("concurrent prompt {i}"));
        }

        // Four decode; a fifth arrives after each has two tokens.
        let mut early = Vec::new();
        for p in &prompts[..4] {
            early.push(
                rt.submit(greedy(PromptInput::Text(p.clone()), 16))
                    .await
                    .expect("accepted")
                    .1,
            );
        }
        for rx in &mut early {
            for _ in 0..2 {
                assert!(matches!(rx.recv().await, Some(Event::Delta { .. })));
            }
        }
        let (_, mut late) = rt.submit(text(&prompts[5])).await.expect("accepted");
        let first = late.recv().await.expect("a first event");
        let Event::Delta {
            token_ids,
            text: first_text,
            ..
        } = first
        else {
            panic!("expected a delta, got {first:?}")
        };
        // Events go out in step order: had an early request finished before
        // the late one's first token, its Finished would be queued by now.
        let mut early_out = Vec::new();
        for rx in &mut early {
            let mut seen = Vec::new();
            loop {
                match rx.try_recv() {
                    Ok(e) => {
                        assert!(
                            !matches!(e, Event::Finished { .. }),
                            "an early request finished first"
                        );
                        seen.push(e);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            early_out.push(seen.len());
        }
        let mut late_out = collect(late).await;
        late_out.ids.splice(0..0, token_ids);
        late_out.deltas.insert(0, first_text);
        assert_same(&late_out, &alone_out[5], "late request");
        for rx in early {
            let out = collect(rx).await;
            assert!(out.usage.completion_tokens > 2);
        }
        let m = wait_for(&rt, "idle", |m| {
            m.requests_running == 0 && m.kv_blocks_used == 0
        })
        .await;
        assert_eq!(
            m.requests_finished_total,
            before.requests_finished_total + 8 + 5
        );
        assert_eq!(m.ttft_seconds_count, before.ttft_seconds_count + 8 + 5);
        eprintln!("metrics {m:?}");
    });
}

/// A KV budget that holds `blocks` blocks of 16 tokens of every layer.
fn budget_for_blocks(blocks: u64) -> u64 {
    let cfg = config();
    let (_, spec, _) = open_model(&cfg.model).expect("the default model opens");
    let ctx = GpuContext::new(&AdapterChoice::Auto).expect("a Vulkan device");
    let layout = layout_for(&ctx, &spec, cfg.block_size);
    blocks * 2 * spec.n_layers as u64 * layout.block_bytes()
}

#[test]
fn tiny_pool_preempts_and_outputs_stay_the_same() {
    let _serial = serial();
    let cfg = EngineConfig {
        kv_memory_bytes: budget_for_blocks(10),
        ..config()
    };
    with_runtime(cfg, RuntimeOptions::default(), |rt| async move {
        let prompts = prompts();
        let mut alone_out = Vec::new();
        for p in &prompts {
            alone_out.push(alone(&rt, p).await);
        }
        let m = rt.metrics().await;
        assert_eq!(m.kv_blocks_total, 10);
        let before = m.preemptions_total;
        // Eight sequences of 4-14 + 12 tokens need 16 blocks; there are 10.
        let t = Instant::now();
        let accepted = join_all(prompts.iter().map(|p| rt.submit(text(p)))).await;
        let outs = join_all(
            accepted
                .into_iter()
                .map(|a| collect(a.expect("accepted").1)),
        )
        .await;
        eprintln!("8 concurrent on 10 blocks in {:.1?}", t.elapsed());
        for (i, (got, want)) in outs.iter().zip(&alone_out).enumerate() {
            assert_same(got, want, &format!("prompt {i} on a tiny pool"));
        }
        let m = wait_for(&rt, "idle", |m| {
            m.requests_running == 0 && m.kv_blocks_used == 0
        })
        .await;
        assert!(m.preemptions_total > before, "nothing was preempted: {m:?}");
        eprintln!("metrics {m:?}");
    });
}

/// A prompt of more than three blocks of 16 tokens, and two endings.
fn shared_prefix_prompts() -> (String, String) {
    let prefix = "The following is a short story about a lighthouse keeper who lives alone \
                  on a rocky island far from the coast. Every night he climbs the stairs, \
                  lights the lamp and watches the ships pass in the dark. He has done this for \
                  thirty years. One evening";
    (
        format!("{prefix} a storm arrives and"),
        format!("{prefix} a small boat appears and"),
    )
}

#[test]
fn shared_prefix_is_served_from_the_cache_with_the_same_output() {
    let _serial = serial();
    let (a, b) = shared_prefix_prompts();
    let n_prefix = tokenizer().encode(&a, true).unwrap().len();
    assert!(n_prefix > 48, "the prompt has {n_prefix} tokens");

    let cfg = EngineConfig {
        enable_prefix_caching: false,
        ..config()
    };
    let prompts = [a.clone(), b.clone()];
    let without = with_runtime(cfg, RuntimeOptions::default(), |rt| async move {
        let mut without = Vec::new();
        for p in &prompts {
            let out = run(&rt, text(p)).await;
            assert_eq!(out.usage.cached_tokens, 0);
            without.push(out);
        }
        without
    });
    with_runtime(config(), RuntimeOptions::default(), |rt| async move {
        let first = run(&rt, text(&a)).await;
        assert_eq!(first.usage.cached_tokens, 0);
        assert_same(&first, &without[0], "first request");
        let second = run(&rt, text(&b)).await;
        eprintln!("second request usage {:?}", second.usage);
        assert!(second.usage.cached_tokens >= 32, "{:?}", second.usage);
        assert_eq!(second.usage.cached_tokens % 16, 0);
        assert_same(&second, &without[1], "request served from the prefix cache");
        let m = rt.metrics().await;
        assert!(m.prefix_cache_hits_total >= 2, "{m:?}");
    });
}

#[test]
fn dropped_receiver_cancels_within_a_step_and_frees_blocks() {
    let _serial = serial();
    with_runtime(config(), RuntimeOptions::default(), |rt| async move {
        let prompts = prompts();
        let want = alone(&rt, &prompts[1]).await;
        let (_, mut doomed) = rt
            .submit(greedy(PromptInput::Text(prompts[0].clone()), 200))
            .await
            .expect("accepted");
        let (_, other) = rt.submit(text(&prompts[1])).await.expect("accepted");
        for _ in 0..2 {
            assert!(matches!(doomed.recv().await, Some(Event::Delta { .. })));
        }
        let before = rt.metrics().await;
        assert_eq!(before.requests_running, 2);
        drop(doomed);
        let t = Instant::now();
        let m = wait_for(&rt, "the dropped request is cancelled", |m| {
            m.requests_running <= 1 && m.requests_cancelled_total == 1
        })
        .await;
        eprintln!(
            "cancelled {:.1?} and {} steps after the drop",
            t.elapsed(),
            m.steps_total - before.steps_total
        );
        assert!(
            m.steps_total - before.steps_total <= 2,
            "{before:?} -> {m:?}"
        );
        // The other request is unaffected.
        assert_same(&collect(other).await, &want, "the request left running");
        let m = wait_for(&rt, "idle", |m| {
            m.requests_running == 0 && m.kv_blocks_used == 0
        })
        .await;
        assert_eq!(m.requests_cancelled_total, 1);
        assert!(m.generation_tokens_total < 200);
    });
}

#[test]
fn stop_strings_and_split_characters() {
    let _serial = serial();
    with_runtime(config(), RuntimeOptions::default(), |rt| async move {
        let prompt = &prompts()[0];
        let full = alone(&rt, prompt).await.text();
        let finished_before = rt.metrics().await.requests_finished_total;
        // A stop string from the middle of the greedy text, across tokens.
        let mut start = full.len() / 3;
        while !full.is_char_boundary(start) {
            start += 1;
        }
        let mut end = start + 4;
        while !full.is_char_boundary(end) {
            end += 1;
        }
        let stop = full[start..end].to_owned();
        let want = &full[..full.find(&stop).unwrap()];
        let mut req = text(prompt);
        req.stop = vec![stop.clone(), "never appears".into()];
        let out = run(&rt, req).await;
        eprintln!("full {full:?}, stop {stop:?}, got {:?}", out.text());
        assert_eq!(out.reason, Some(FinishReason::Stop));
        assert_eq!(out.text(), want);
        assert!(out.usage.completion_tokens < MAX_TOKENS);

        // Each emoji is three byte-level tokens.
        let mut req = greedy(PromptInput::Text("Emoji: 😀😀😀".into()), 12);
        req.ignore_eos = true;
        let out = run(&rt, req).await;
        let tok = tokenizer();
        let split = out
            .ids
            .iter()
            .filter(|&&id| std::str::from_utf8(tok.token_bytes(id).unwrap()).is_err())
            .count();
        eprintln!("emoji deltas {:?} ({split} partial tokens)", out.deltas);
        assert!(
            split > 0,
            "no character was split across tokens: {:?}",
            out.ids
        );
        assert!(
            out.deltas.iter().all(|d| !d.contains('\u{FFFD}')),
            "{:?}",
            out.deltas
        );
        assert_eq!(out.text(), tok.decode(&out.ids, true).unwrap());
        let m = wait_for(&rt, "idle", |m| {
            m.requests_running == 0 && m.kv_blocks_used == 0
        })
        .await;
        assert_eq!(m.requests_finished_total, finished_before + 2);
    });
}

#[test]
fn too_long_prompts_and_a_full_queue_are_refused() {
    let _serial = serial();
    let cfg = EngineConfig {
        kv_memory_bytes: budget_for_blocks(16),
        ..config()
    };
    let opts = RuntimeOptions {
        max_queue: 2,
        ..RuntimeOptions::default()
    };
    with_runtime(cfg, opts, |rt| async move {
        let max = rt.model().max_model_len;
        assert_eq!(max, 256);
        let err = rt
            .submit(greedy(PromptInput::Ids(vec![504; max + 1]), 4))
            .await
            .expect_err("too long");
        let BackendError::InvalidRequest(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains(&(max + 1).to_string()) && msg.contains(&max.to_string()),
            "{msg}"
        );
        let long_text = "word ".repeat(400);
        let n = tokenizer().encode(&long_text, true).unwrap().len();
        let err = rt.submit(text(&long_text)).await.expect_err("too long");
        assert!(
            matches!(&err, BackendError::InvalidRequest(m) if m.contains(&n.to_string()) && m.contains("256")),
            "{err:?}"
        );
        assert_eq!(err.status(), 400);

        // Three at once against a limit of two.
        let (a, b, c) = futures_util::join!(
            rt.submit(greedy(PromptInput::Text("a".into()), 2)),
            rt.submit(greedy(PromptInput::Text("b".into()), 2)),
            rt.submit(greedy(PromptInput::Text("c".into()), 2))
        );
        let c = c.expect_err("the third is over the limit");
        assert_eq!(c, BackendError::QueueFull(2));
        assert_eq!(c.status(), 429);
        collect(a.expect("accepted").1).await;
        collect(b.expect("accepted").1).await;
        // The queue drained: accepted again.
        let out = run(&rt, greedy(PromptInput::Text("c".into()), 2)).await;
        assert_eq!(out.usage.completion_tokens, 2);
        let m = rt.metrics().await;
        assert_eq!(m.requests_failed_total, 0);
    });
}
