//! The actors wired together around a stand-in model, without a GPU: a mock
//! shard that keeps a real paged "KV cache" of token ids and predicts from
//! the history it reads back through the block tables, and a byte-level
//! tokenizer with one token per byte (so every multi-byte character is split
//! across tokens). These check the runtime's mechanics quickly; the real
//! model is exercised in `tests/runtime.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler};
use tokio::sync::mpsc::UnboundedReceiver;

use super::shard::{ShardActor, StepModel};
use super::{Fault, Runtime, RuntimeOptions, RuntimeParts};
use crate::backend::{Backend, BackendError, Event, GenerateRequest, ModelCard, PromptInput};
use crate::gpu::GpuError;
use crate::model::shard::{ShardInput, ShardOutput};
use crate::model::spec::ModelError;
use crate::sampling::SamplingParams;
use crate::scheduler::{FinishReason, SchedulerConfig, Usage};
use crate::step::{BatchInput, SampleOutput};
use crate::tokenizer::{ChatFormat, ChatTemplate, GgufVocab, Tokenizer};

/// What the mock model writes, one byte per position: output token at
/// position `p` is `SCRIPT[p % len]`.
const SCRIPT: &str = "héllo wörld 日本! ";
const EOS: u32 = 256;
/// A prompt starting with this byte makes the model fail its step.
const POISON: u8 = b'#';
/// A prompt starting with this byte makes the model panic in its step.
const PANIC: u8 = b'!';
const BLOCK: usize = 4;

fn byte_level_char(b: u8) -> char {
    // GPT-2's bytes-to-unicode table.
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("valid")
}

fn tokenizer() -> Tokenizer {
    byte_vocab(&["<|im_end|>"], EOS)
}

/// A byte-level BPE vocabulary: the 256 bytes (ids 0..256), then `specials`
/// as control tokens, EOS at `eos`.
fn byte_vocab(specials: &[&str], eos: u32) -> Tokenizer {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    tokens.extend(specials.iter().map(|s| s.to_string()));
    // The loader wants at least one merge: two control bytes no test sends.
    let (c0, c1) = (byte_level_char(0), byte_level_char(1));
    tokens.push(format!("{c0}{c1}"));
    let mut types = vec![1; 256];
    types.extend(specials.iter().map(|_| 3));
    types.push(1);
    Tokenizer::from_vocab(GgufVocab {
        model: "gpt2".into(),
        pre: Some("gpt2".into()),
        tokens,
        token_types: types,
        merges: vec![format!("{c0} {c1}")],
        eos_id: Some(eos),
        ..GgufVocab::default()
    })
    .expect("the byte-level test vocabulary builds")
}

/// A failed step of the mock, as a device's validation error would fail it
/// (the shard can run the next step).
fn mock_error(message: String) -> ModelError {
    ModelError::Gpu(GpuError::Validation {
        what: "the mock step".into(),
        message,
    })
}

/// The stand-in model, run by the real [`ShardActor`].
struct MockShard {
    /// slot -> token id, as a real cache would hold K/V.
    cache: HashMap<u32, u32>,
}

impl StepModel for MockShard {
    fn describe(&self) -> String {
        "the mock shard".into()
    }

    fn step(&mut self, b: &BatchInput, _: ShardInput) -> Result<ShardOutput, ModelError> {
        // Slow enough that messages interleave with steps, as on a GPU.
        std::thread::sleep(Duration::from_millis(3));
        for (i, &t) in b.tokens.iter().enumerate() {
            self.cache.insert(b.slot_mapping[i], t);
        }
        let script = SCRIPT.as_bytes();
        let mut out = Vec::new();
        for s in &b.samples {
            let r = s.row as usize;
            let table = &b.block_tables[b.seq_of_token[r] as usize];
            let pos = b.positions[r] as usize;
            let mut history = Vec::new();
            for p in 0..=pos {
                let slot = table[p / BLOCK] * BLOCK as u32 + (p % BLOCK) as u32;
                match self.cache.get(&slot) {
                    Some(&t) => history.push(t),
                    None => return Err(mock_error(format!("position {p} was never written"))),
                }
            }
            if history[0] == u32::from(POISON) {
                return Err(mock_error("poisoned prompt".into()));
            }
            if history[0] == u32::from(PANIC) {
                panic!("injected: the mock shard panicked");
            }
            let next = u32::from(script[(pos + 1) % script.len()]);
            let logits = s.want_logits.then(|| {
                let mut l = vec![-10.0f32; 257];
                l[next as usize] = 10.0;
                l
            });
            out.push(SampleOutput {
                argmax: next,
                logits,
            });
        }
        Ok(ShardOutput::Samples(out))
    }
}

/// The runtime around a mock shard on its own thread.
fn start(max_queue: usize, num_blocks: usize) -> (Runtime, Arbiter) {
    start_with(max_queue, num_blocks, None)
}

/// [`start`], with a fault injected.
fn start_with(max_queue: usize, num_blocks: usize, fault: Option<Fault>) -> (Runtime, Arbiter) {
    let thread = Arbiter::new();
    let shard = ShardActor::start_in_arbiter(&thread.handle(), move |_| {
        ShardActor::new(
            MockShard {
                cache: HashMap::new(),
            },
            fault,
        )
    });
    let tok = tokenizer();
    let parts = RuntimeParts {
        vocab_size: tok.vocab_size(),
        stop_ids: tok.stop_ids().to_vec(),
        tokenizer: Some(tok),
        chat_format: ChatFormat::Template(Box::new(ChatTemplate::chatml())),
        scheduler_config: SchedulerConfig {
            max_num_batched_tokens: 64,
            max_num_seqs: 8,
            max_model_len: 512,
            watermark_blocks: 1,
            enable_prefix_caching: true,
        },
        num_blocks,
        block_size: BLOCK,
        shards: vec![shard.recipient()],
        card: ModelCard {
            id: "mock".into(),
            path: "mock".into(),
            max_model_len: 512,
            adapters: Vec::new(),
            created: 0,
        },
    };
    let opts = RuntimeOptions {
        max_queue,
        tokenizer_threads: 1,
        served_model_name: None,
        fault,
    };
    (Runtime::start_parts(parts, opts), thread)
}

fn request(prompt: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: PromptInput::Text(prompt.into()),
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        keep_special: false,
        reasoning_effort: None,
    }
}

/// What the mock writes after a prompt of `prompt_len` bytes.
fn expected(prompt_len: usize, n: usize) -> Vec<u8> {
    let s = SCRIPT.as_bytes();
    (prompt_len..prompt_len + n)
        .map(|p| s[p % s.len()])
        .collect()
}

#[derive(Debug, Default)]
struct Collected {
    deltas: Vec<String>,
    ids: Vec<u32>,
    end: Option<Event>,
}

impl Collected {
    fn text(&self) -> String {
        self.deltas.concat()
    }

    fn finished(&self) -> (FinishReason, Usage) {
        match &self.end {
            Some(Event::Finished { reason, usage }) => (*reason, *usage),
            other => panic!("expected Finished, got {other:?}"),
        }
    }
}

async fn collect(mut rx: UnboundedReceiver<Event>) -> Collected {
    let mut c = Collected::default();
    let deadline = Duration::from_secs(20);
    while let Ok(Some(event)) = tokio::time::timeout(deadline, rx.recv()).await {
        match event {
            Event::Delta {
                text, token_ids, ..
            } => {
                c.deltas.push(text);
                c.ids.extend(token_ids);
            }
            end => {
                c.end = Some(end);
                break;
            }
        }
    }
    c
}

/// Polls the metrics until `done` holds (or panics after a while).
async fn wait_for(
    rt: &Runtime,
    what: &str,
    done: impl Fn(&crate::backend::MetricsSnapshot) -> bool,
) {
    let start = Instant::now();
    loop {
        let m = rt.metrics().await;
        if done(&m) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: {m:?}");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

#[actix_rt::test]
async fn streams_whole_characters_and_finishes_at_max_tokens() {
    let (rt, _t) = start(8, 64);
    assert!(rt.ready());
    let (_, rx) = rt.submit(request("x", 20)).await.expect("accepted");
    let c = collect(rx).await;
    let want = expected(1, 20);
    assert_eq!(
        c.ids,
        want.iter().map(|&b| u32::from(b)).collect::<Vec<_>>()
    );
    assert_eq!(c.text(), String::from_utf8_lossy(&want));
    assert!(
        c.deltas.iter().all(|d| !d.contains('\u{FFFD}')),
        "a character was split: {:?}",
        c.deltas
    );
    // "é" and the CJK characters span tokens: some tokens complete nothing.
    assert!(c.deltas.iter().any(String::is_empty));
    assert_eq!(
        c.finished(),
        (
            FinishReason::Length,
            Usage {
                prompt_tokens: 1,
                completion_tokens: 20,
                cached_tokens: 0,
                reasoning_tokens: 0,
            }
        )
    );
    wait_for(&rt, "idle", |m| {
        m.requests_running == 0 && m.kv_blocks_used == 0 && m.requests_finished_total == 1
    })
    .await;
    let m = rt.metrics().await;
    assert_eq!(m.generation_tokens_total, 20);
    assert_eq!(m.prompt_tokens_total, 1);
    assert_eq!(m.ttft_seconds_count, 1);
    assert_eq!(m.tpot_seconds_count, 19);
}

#[actix_rt::test]
async fn stop_string_ends_the_text_right_before_it() {
    let (rt, _t) = start(8, 64);
    // The output starts "éllo wörld": the stop string spans five tokens.
    let mut req = request("x", 40);
    req.stop = vec!["wör".into(), "zzz".into()];
    let (_, rx) = rt.submit(req).await.expect("accepted");
    let c = collect(rx).await;
    assert_eq!(c.text(), "éllo ");
    let (reason, usage) = c.finished();
    assert_eq!(reason, FinishReason::Stop);
    // Up to the token completing "wör": é(2) l l o ' ' w ö(2) r.
    assert_eq!(usage.completion_tokens, 10);
    wait_for(&rt, "stopped sequence freed", |m| {
        m.requests_running == 0 && m.kv_blocks_used == 0
    })
    .await;
}

#[actix_rt::test]
async fn dropped_receiver_cancels_within_a_step() {
    let (rt, _t) = start(8, 64);
    let (_, mut rx) = rt.submit(request("x", 200)).await.expect("accepted");
    for _ in 0..3 {
        assert!(matches!(rx.recv().await, Some(Event::Delta { .. })));
    }
    let before = rt.metrics().await;
    assert_eq!(before.requests_running, 1);
    assert!(before.kv_blocks_used > 0);
    drop(rx);
    wait_for(&rt, "cancel after drop", |m| {
        m.requests_running == 0 && m.kv_blocks_used == 0 && m.requests_cancelled_total == 1
    })
    .await;
    let after = rt.metrics().await;
    assert!(
        after.steps_total <= before.steps_total + 2,
        "took {} steps",
        after.steps_total - before.steps_total
    );
}

#[actix_rt::test]
async fn cancel_sends_cancelled_and_frees_blocks() {
    let (rt, _t) = start(8, 64);
    let (id, mut rx) = rt.submit(request("x", 200)).await.expect("accepted");
    assert!(matches!(rx.recv().await, Some(Event::Delta { .. })));
    rt.cancel(id).await;
    let c = collect(rx).await;
    assert_eq!(c.finished().0, FinishReason::Cancelled);
    wait_for(&rt, "cancelled", |m| {
        m.requests_running == 0 && m.kv_blocks_used == 0 && m.requests_cancelled_total == 1
    })
    .await;
}

#[actix_rt::test]
async fn new_request_joins_the_running_batch() {
    let (rt, _t) = start(8, 64);
    let (_, mut long) = rt.submit(request("x", 100)).await.expect("accepted");
    for _ in 0..3 {
        assert!(matches!(long.recv().await, Some(Event::Delta { .. })));
    }
    let (_, short) = rt.submit(request("yy", 3)).await.expect("accepted");
    let short = collect(short).await;
    assert_eq!(short.finished().0, FinishReason::Length);
    assert_eq!(short.text(), String::from_utf8_lossy(&expected(2, 3)));
    // The long one is still going.
    let m = rt.metrics().await;
    assert_eq!(m.requests_running, 1);
    let long = collect(long).await;
    assert_eq!(long.finished().1.completion_tokens, 100);
    assert_eq!(long.ids.len(), 97);
}

#[actix_rt::test]
async fn preempted_sequences_still_produce_the_same_text() {
    // 12 blocks of 4 tokens; four sequences of 1 + 20 tokens need 24.
    let (rt, _t) = start(16, 12);
    let mut rxs = Vec::new();
    for p in ["a", "bb", "ccc", "d"] {
        rxs.push((
            p.len(),
            rt.submit(request(p, 20)).await.expect("accepted").1,
        ));
    }
    for (len, rx) in rxs {
        let c = collect(rx).await;
        assert_eq!(c.finished().0, FinishReason::Length);
        assert_eq!(c.text(), String::from_utf8_lossy(&expected(len, 20)));
    }
    let m = rt.metrics().await;
    assert!(m.preemptions_total > 0, "{m:?}");
    wait_for(&rt, "idle", |m| m.kv_blocks_used == 0).await;
}

#[actix_rt::test]
async fn engine_failure_fails_its_step_and_serving_goes_on() {
    let (rt, _t) = start(8, 64);
    let (_, bad) = rt.submit(request("#bad", 5)).await.expect("accepted");
    let bad = collect(bad).await;
    match bad.end {
        Some(Event::Error(BackendError::Engine(msg))) => assert!(msg.contains("poisoned"), "{msg}"),
        other => panic!("expected an engine error, got {other:?}"),
    }
    let (_, good) = rt.submit(request("ok", 5)).await.expect("accepted");
    assert_eq!(collect(good).await.finished().0, FinishReason::Length);
    let m = rt.metrics().await;
    assert_eq!(m.requests_failed_total, 1);
    assert_eq!(m.kv_blocks_used, 0);
}

#[actix_rt::test]
async fn admission_limits_and_prompt_checks() {
    let (rt, _t) = start(2, 64);
    // All three reach Intake before any is handed over: the third is over
    // the limit of two.
    let (a, b, c) = futures_util::join!(
        rt.submit(request("a", 2)),
        rt.submit(request("b", 2)),
        rt.submit(request("c", 2))
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(c.err(), Some(BackendError::QueueFull(2)));
    collect(a.unwrap().1).await;
    collect(b.unwrap().1).await;
    // Room again once they are handed over.
    assert!(rt.submit(request("d", 1)).await.is_ok());

    let err = rt
        .submit(GenerateRequest {
            prompt: PromptInput::Ids(vec![65; 512]),
            ..request("", 1)
        })
        .await
        .expect_err("too long");
    let BackendError::InvalidRequest(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("512") && msg.contains("context"), "{msg}");
    // Prompt fits, but not with max_tokens: the scheduler's numbers.
    let err = rt.submit(request("abcd", 600)).await.expect_err("too long");
    let BackendError::InvalidRequest(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("512") && msg.contains("600"), "{msg}");
    let err = rt
        .submit(GenerateRequest {
            prompt: PromptInput::Ids(vec![999]),
            ..request("", 1)
        })
        .await
        .expect_err("bad id");
    assert!(
        matches!(err, BackendError::InvalidRequest(ref m) if m.contains("999")),
        "{err:?}"
    );
    assert_eq!(
        rt.tokenize(PromptInput::Text("hé".into())).await,
        Ok(vec![104, 0xC3, 0xA9])
    );
    assert_eq!(rt.detokenize(vec![104, 0xC3, 0xA9]).await, Ok("hé".into()));
}

#[actix_rt::test]
async fn logprobs_come_with_each_token() {
    let (rt, _t) = start(8, 64);
    let mut req = request("x", 4);
    req.logprobs = Some(2);
    let (_, mut rx) = rt.submit(req).await.expect("accepted");
    let mut n = 0;
    while let Some(event) = rx.recv().await {
        match event {
            Event::Delta {
                token_ids,
                logprobs,
                ..
            } => {
                assert_eq!(logprobs.len(), token_ids.len());
                assert_eq!(logprobs[0].top[0].id, token_ids[0]);
                // Each token is named by the text `/detokenize` gives it
                // alone, or by id where that has none.
                for t in std::iter::once(&logprobs[0].token).chain(&logprobs[0].top) {
                    let alone = rt.detokenize(vec![t.id]).await;
                    let want = alone.unwrap_or_else(|_| format!("token_id:{}", t.id));
                    assert_eq!(t.text, want, "token {}", t.id);
                }
                n += 1;
            }
            Event::Finished { .. } => break,
            Event::Error(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 4);
}

/// The byte-level test vocabulary plus harmony's markup as control tokens.
fn harmony_tokenizer() -> Tokenizer {
    let specials = [
        "<|start|>",
        "<|end|>",
        "<|message|>",
        "<|channel|>",
        "<|return|>",
        "<|call|>",
        "<|constrain|>",
    ];
    byte_vocab(&specials, 260)
}

/// Stands in for the Scheduler: counts the stop requests it gets.
#[derive(Default)]
struct StopSink(usize);

impl Actor for StopSink {
    type Context = Context<Self>;
}

impl Handler<super::messages::StopSequence> for StopSink {
    type Result = ();

    fn handle(&mut self, _: super::messages::StopSequence, _: &mut Context<Self>) {
        self.0 += 1;
    }
}

/// Streams `text`'s tokens one per step through a Detokenizer that splits
/// reasoning as `format` says, with the stop string "STOP"; returns the
/// (answer, reasoning) the request's channel got and the usage's count of
/// reasoning tokens.
async fn detokenize_reasoning(
    format: crate::tokenizer::ReasoningFormat,
    text: &str,
) -> (String, String, usize) {
    use super::detokenizer::Detokenizer;
    use super::messages::{Emit, OutputSpec, Register};
    use crate::scheduler::SeqEvent;
    use std::sync::Arc;

    let tok = Arc::new(harmony_tokenizer());
    let ids = tok.encode(text, false).unwrap();
    let detok = Detokenizer::new(Some(tok), StopSink::default().start().recipient()).start();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let output = OutputSpec {
        stop: vec!["STOP".into()],
        keep_special: false,
        reasoning: Some(format),
        sender: tx,
    };
    detok.send(Register { id: 7, output }).await.unwrap();
    for &token in &ids {
        let events = vec![SeqEvent::Token {
            id: 7,
            token,
            logprobs: None,
        }];
        detok.send(Emit { events }).await.unwrap();
    }
    let events = vec![SeqEvent::Finished {
        id: 7,
        reason: FinishReason::Stop,
        usage: Usage::default(),
    }];
    detok.send(Emit { events }).await.unwrap();
    let (mut answer, mut reasoning) = (String::new(), String::new());
    let mut reasoning_tokens = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta {
                text, reasoning: r, ..
            } => {
                answer.push_str(&text);
                reasoning.push_str(&r);
            }
            Event::Finished { reason, usage } => {
                assert_eq!(reason, FinishReason::Stop);
                reasoning_tokens = Some(usage.reasoning_tokens);
                break;
            }
            Event::Error(e) => panic!("{e}"),
        }
    }
    (
        answer,
        reasoning,
        reasoning_tokens.expect("a Finished event"),
    )
}

/// How many tokens `text` encodes to: what a reasoning count should be
/// when `text` is everything the model wrote before its answer.
fn token_count(text: &str) -> usize {
    harmony_tokenizer().encode(text, false).unwrap().len()
}

/// A harmony chat's tokens, one per step: the Detokenizer sends the
/// analysis channel as reasoning and the final channel as the answer, no
/// markup in either, and applies stop strings to the answer only. Every
/// token before the answer, channel markup included, counts as reasoning.
#[actix_rt::test]
async fn harmony_output_splits_into_reasoning_and_answer() {
    use crate::tokenizer::ReasoningFormat;
    let before_answer = "<|channel|>analysis<|message|>STOP is not a stop here: <|x|>.<|end|>\
                         <|start|>assistant<|channel|>final<|message|>";
    let text = format!("{before_answer}It is <4>. STOP now<|return|>");
    let text = text.as_str();
    assert!(
        harmony_tokenizer()
            .encode(text, false)
            .unwrap()
            .contains(&259),
        "markup is parsed as special tokens"
    );
    let (answer, reasoning, count) = detokenize_reasoning(ReasoningFormat::Harmony, text).await;
    assert_eq!(reasoning, "STOP is not a stop here: <|x|>.");
    assert_eq!(answer, "It is <4>. ");
    assert_eq!(count, token_count(before_answer));
    // An answer on the final channel alone has no reasoning tokens.
    let direct = "<|channel|>final<|message|>Four.<|return|>";
    let (answer, reasoning, count) = detokenize_reasoning(ReasoningFormat::Harmony, direct).await;
    assert_eq!(
        (answer.as_str(), reasoning.as_str(), count),
        ("Four.", "", 0)
    );
}

/// `<think>` reasoning (Qwen 3, DeepSeek-R1), the tags written as plain
/// text, split the same way, from the start or from inside the reasoning;
/// the tokens up to the answer (tags and the blank line included) count as
/// reasoning.
#[actix_rt::test]
async fn think_tags_split_into_reasoning_and_answer() {
    use crate::tokenizer::ReasoningFormat;
    let qwen = ReasoningFormat::Think {
        starts_inside: false,
    };
    let text = "<think>\nSTOP? Not here.\n</think>\n\nFour. STOP";
    let (answer, reasoning, count) = detokenize_reasoning(qwen, text).await;
    assert_eq!(reasoning, "\nSTOP? Not here.\n");
    assert_eq!(answer, "Four. ");
    assert_eq!(count, token_count("<think>\nSTOP? Not here.\n</think>\n\n"));
    let (answer, reasoning, count) = detokenize_reasoning(qwen, "  Four.").await;
    assert_eq!(
        (answer.as_str(), reasoning.as_str(), count),
        ("Four.", "", 0)
    );
    let r1 = ReasoningFormat::Think {
        starts_inside: true,
    };
    let (answer, reasoning, count) = detokenize_reasoning(r1, "hmm, 2+2</think>4").await;
    assert_eq!((answer.as_str(), reasoning.as_str()), ("4", "hmm, 2+2"));
    assert_eq!(count, token_count("hmm, 2+2</think>"));
    // Cut off while thinking: every token is reasoning.
    let (_, _, count) = detokenize_reasoning(r1, "still thinking</thi").await;
    assert_eq!(count, token_count("still thinking</thi"));
}

/// The choices of one API call (`n` × prompts), all of "x".
fn group(count: usize, max_tokens: usize) -> Vec<GenerateRequest> {
    (0..count).map(|_| request("x", max_tokens)).collect()
}

#[actix_rt::test]
async fn a_group_larger_than_the_queue_is_refused_naming_the_limit() {
    // Eight run at once and four may wait: thirteen choices could never be
    // admitted together, even on this idle server.
    let (rt, _t) = start(4, 64);
    let err = rt.submit_group(group(13, 2)).await.expect_err("never fits");
    assert_eq!(
        err,
        BackendError::TooManyChoices {
            choices: 13,
            max_queue: 4
        }
    );
    assert_eq!(err.status(), 400);
    let msg = err.to_string();
    assert!(msg.contains("max_queue") && msg.contains('4'), "{msg}");
    // Nothing of it ran, and the queue is whole: a group of four fits.
    let m = rt.metrics().await;
    assert_eq!((m.prompt_tokens_total, m.requests_cancelled_total), (0, 0));
    let accepted = rt.submit_group(group(4, 2)).await.expect("fits");
    assert_eq!(accepted.len(), 4);
    for (_, rx) in accepted {
        assert_eq!(collect(rx).await.finished().0, FinishReason::Length);
    }
}

#[actix_rt::test]
async fn a_group_is_admitted_whole_or_not_at_all() {
    let (rt, _t) = start(4, 64);
    // Both reach Intake before either is handed over: three are queued when
    // the second asks for three more, so it is refused whole (429), and
    // none of its choices runs.
    let (a, b) = futures_util::join!(rt.submit_group(group(3, 2)), rt.submit_group(group(3, 2)));
    let a = a.expect("the first group fits");
    assert_eq!(b.err(), Some(BackendError::QueueFull(3)));
    for (_, rx) in a {
        assert_eq!(collect(rx).await.finished().0, FinishReason::Length);
    }
    wait_for(&rt, "the first group done", |m| {
        m.requests_running == 0 && m.requests_waiting == 0
    })
    .await;
    let m = rt.metrics().await;
    assert_eq!(m.requests_finished_total, 3);
    assert_eq!(m.requests_cancelled_total, 0);
    assert_eq!(m.prompt_tokens_total, 3, "only the first group's prompts");
}

#[actix_rt::test]
async fn one_bad_choice_refuses_its_group_and_leaks_no_queue_place() {
    let (rt, _t) = start(4, 64);
    // A tokenizer refusal (an id past the vocabulary) in the last choice.
    let mut bad = group(3, 2);
    bad.push(GenerateRequest {
        prompt: PromptInput::Ids(vec![999]),
        ..request("", 2)
    });
    let err = rt.submit_group(bad).await.expect_err("bad id");
    assert!(
        matches!(err, BackendError::InvalidRequest(ref m) if m.contains("999")),
        "{err:?}"
    );
    // A scheduler refusal (prompt plus max_tokens past the context) in the first.
    let mut bad = group(3, 2);
    bad[0] = request("abcd", 600);
    let err = rt.submit_group(bad).await.expect_err("too long");
    assert!(
        matches!(err, BackendError::InvalidRequest(ref m) if m.contains("600")),
        "{err:?}"
    );
    let m = rt.metrics().await;
    assert_eq!(
        (
            m.prompt_tokens_total,
            m.requests_finished_total,
            m.requests_cancelled_total
        ),
        (0, 0, 0),
        "no choice of a refused group ran"
    );
    // Every place in the queue is free again.
    let accepted = rt.submit_group(group(4, 2)).await.expect("fits");
    for (_, rx) in accepted {
        assert_eq!(collect(rx).await.finished().0, FinishReason::Length);
    }
}

/// Collects every stream and checks each ended in an engine error whose
/// message contains `needle`.
async fn all_fail_with(rxs: Vec<UnboundedReceiver<Event>>, needle: &str) -> Vec<Collected> {
    let mut out = Vec::new();
    for rx in rxs {
        let c = collect(rx).await;
        match &c.end {
            Some(Event::Error(BackendError::Engine(msg))) => {
                assert!(msg.contains(needle), "{msg}")
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
        out.push(c);
    }
    out
}

/// A failed runtime is no zombie: not ready, says why, refuses new work
/// with 503, and holds no blocks.
async fn assert_failed(rt: &Runtime, needle: &str) {
    assert!(!rt.ready());
    let reason = rt.failure().expect("the runtime says it failed");
    assert!(reason.contains(needle), "{reason}");
    let err = rt.submit(request("y", 2)).await.expect_err("refused");
    assert!(
        matches!(err, BackendError::Unavailable(ref m) if m.contains(needle)),
        "{err:?}"
    );
    assert_eq!(err.status(), 503);
    let m = rt.metrics().await;
    assert_eq!((m.requests_running, m.requests_waiting), (0, 0), "{m:?}");
    assert_eq!(m.kv_blocks_used, 0);
}

#[actix_rt::test]
async fn a_shard_panic_answers_every_request_and_fails_the_runtime() {
    let (rt, _t) = start(16, 64);
    let (_, mut running) = rt.submit(request("x", 200)).await.expect("accepted");
    for _ in 0..3 {
        assert!(matches!(running.recv().await, Some(Event::Delta { .. })));
    }
    // Its first step panics the model, with the other request in the batch.
    let (_, panicking) = rt.submit(request("!boom", 5)).await.expect("accepted");
    all_fail_with(vec![running, panicking], "mock shard panicked").await;
    assert_failed(&rt, "the step panicked").await;
}

/// The test hook panics the shard mid-generation, with requests running
/// and others waiting (eight run at once): every one gets the error.
#[actix_rt::test]
async fn an_injected_shard_panic_fails_running_and_waiting_requests() {
    let fault = Fault::ShardPanic { at_step: 6 };
    let (rt, _t) = start_with(16, 256, Some(fault));
    let accepted = rt.submit_group(group(10, 100)).await.expect("accepted");
    let rxs = accepted.into_iter().map(|(_, rx)| rx).collect();
    let collected = all_fail_with(rxs, "injected test fault").await;
    assert!(
        collected.iter().any(|c| !c.ids.is_empty()),
        "it failed mid-generation"
    );
    assert_failed(&rt, "panic in step 6").await;
    assert_eq!(rt.metrics().await.requests_failed_total, 10);
}

#[actix_rt::test]
async fn an_injected_scheduler_panic_answers_every_request_and_fails_the_runtime() {
    let fault = Fault::SchedulerPanic { at_step: 4 };
    let (rt, _t) = start_with(16, 256, Some(fault));
    let accepted = rt.submit_group(group(3, 100)).await.expect("accepted");
    let rxs = accepted.into_iter().map(|(_, rx)| rx).collect();
    all_fail_with(rxs, "Scheduler panicked").await;
    assert!(!rt.ready());
    let reason = rt.failure().expect("the runtime says it failed");
    assert!(reason.contains("Scheduler panicked"), "{reason}");
    let err = rt.submit(request("y", 2)).await.expect_err("refused");
    assert_eq!(err.status(), 503, "{err:?}");
}
