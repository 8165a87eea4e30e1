//! The continuous-batching scheduler's logic, free of actors and GPUs: the
//! single owner of every sequence and of the KV block pool.
//!
//! Each step (vLLM v1 style, no separate prefill and decode phases):
//! 1. Running sequences first, oldest first: each gets the tokens it still
//!    needs computed (one for a decode, the rest of its prompt for a prefill)
//!    within the step's token budget, so a long prompt is prefilled in chunks
//!    across steps. If the pool has no block for a sequence's next tokens, the
//!    newest running sequence is preempted by recompute: its blocks are freed
//!    and it goes back to the front of the queue with its output so far, to be
//!    prefilled again later. Nothing is ever dropped.
//! 2. Then waiting sequences, in arrival order, while budget, `max_num_seqs`
//!    and free blocks above the watermark allow (and not in a step that
//!    preempted, so admission cannot thrash). A newly admitted sequence first
//!    takes every full block of its prompt found in the prefix cache.
//! 3. After the model ran, [`Scheduler::update`] appends the sampled tokens,
//!    registers newly full blocks in the prefix cache, and finishes sequences
//!    on a stop token or a length limit; a finished or cancelled sequence's
//!    blocks are dropped, which frees them at once.
//!
//! This type owns its [`BlockPool`] and all [`Sequence`]s; callers hold only
//! ids. The Scheduler actor wraps it, and `wgserve generate` drives it
//! directly.

use std::collections::VecDeque;

use crate::kv::{BlockHash, BlockPool, BlockRef};
use crate::sampling::{log_softmax, top_logprobs, Sampler, SamplingParams};
use crate::step::{BatchInput, SampleOutput, SampleRow};

/// A sequence's id, unique for the scheduler's lifetime.
pub type SeqId = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Token budget of one step (all sequences together).
    pub max_num_batched_tokens: usize,
    /// Sequences running at once.
    pub max_num_seqs: usize,
    /// The context window: prompt plus output may not exceed it.
    pub max_model_len: usize,
    /// Blocks kept free when admitting a new sequence, so running sequences
    /// can grow a while before anything must be preempted.
    pub watermark_blocks: usize,
    pub enable_prefix_caching: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_num_batched_tokens: 512,
            max_num_seqs: 32,
            max_model_len: 2048,
            watermark_blocks: 1,
            enable_prefix_caching: true,
        }
    }
}

/// What a caller asks to generate.
#[derive(Debug, Clone)]
pub struct SeqRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Token ids that end the sequence (EOS, end-of-turn).
    pub stop_ids: Vec<u32>,
    /// Keep going through stop ids (benchmarks).
    pub ignore_eos: bool,
    /// Return the chosen token's logprob and this many top alternatives.
    pub logprobs: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "this model's maximum context length is {max} tokens, but the prompt has {prompt} tokens \
         (and {max_tokens} more were asked to be generated); shorten the prompt or lower max_tokens"
    )]
    TooLong {
        prompt: usize,
        max_tokens: usize,
        max: usize,
    },
    #[error("the prompt and max_tokens need {need} KV blocks but the cache has only {have}; lower max_tokens or raise the KV memory budget")]
    NeverFits { need: usize, have: usize },
    #[error("sequence {0} already exists")]
    Duplicate(SeqId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (or, decided by the detokenizer, a stop string).
    Stop,
    /// `max_tokens` or the context window reached.
    Length,
    /// The client went away or asked to stop.
    Cancelled,
}

impl FinishReason {
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// The log-probability of a sampled token and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// Most likely first.
    pub top: Vec<(u32, f32)>,
}

/// What happened to a sequence in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqEvent {
    Token {
        id: SeqId,
        token: u32,
        logprobs: Option<TokenLogprobs>,
    },
    Finished {
        id: SeqId,
        reason: FinishReason,
        usage: Usage,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
    /// Completion tokens that went to a reasoning model's thinking. The
    /// Scheduler sees only ids and leaves it 0; the Detokenizer, which
    /// splits reasoning from the answer, fills it in.
    pub reasoning_tokens: usize,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub preemptions: u64,
    pub prompt_tokens_computed: u64,
    pub generation_tokens: u64,
    pub steps: u64,
}

/// One request's state. Owned by the scheduler; never shared.
#[derive(Debug)]
pub struct Sequence {
    pub id: SeqId,
    /// Prompt followed by the output so far.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Blocks covering positions `0..num_computed` (and the step's new tokens).
    blocks: Vec<BlockRef>,
    /// Chained hashes of the leading full, computed blocks, one per block.
    hashes: Vec<BlockHash>,
    /// Tokens whose K/V are in the cache.
    num_computed: usize,
    /// Prompt tokens found in the prefix cache at first admission.
    cached_tokens: Option<usize>,
    sampler: Sampler,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    ignore_eos: bool,
    logprobs: Option<usize>,
}

impl Sequence {
    pub fn output(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_len,
            completion_tokens: self.tokens.len() - self.prompt_len,
            cached_tokens: self.cached_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        }
    }

    /// Frees the blocks tail-first, as vLLM does: the pool evicts the least
    /// recently released block first, so the deepest blocks of this sequence
    /// go before the prefix they hang off. Freed head-first, a shared prefix's
    /// root would be evicted first and strand every cached block after it.
    fn release_blocks(&mut self) {
        while self.blocks.pop().is_some() {}
        self.hashes.clear();
        self.num_computed = 0;
    }
}

impl Drop for Sequence {
    // A finished or cancelled sequence is dropped, not released by hand; a
    // plain Vec drop would free front to back.
    fn drop(&mut self) {
        self.release_blocks();
    }
}

/// Where one scheduled sequence's tokens sit in the step.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    id: SeqId,
    n: usize,
    /// Index into the batch's samples, if this chunk ends the known tokens.
    sample: Option<usize>,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    pool: BlockPool,
    waiting: VecDeque<Sequence>,
    /// Oldest first.
    running: Vec<Sequence>,
    /// The step handed out by `schedule` and not yet `update`d.
    in_flight: Vec<Scheduled>,
    stats: SchedulerStats,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, pool: BlockPool) -> Self {
        Self {
            cfg,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
            in_flight: Vec::new(),
            stats: SchedulerStats::default(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    fn contains(&self, id: SeqId) -> bool {
        self.running.iter().any(|s| s.id == id) || self.waiting.iter().any(|s| s.id == id)
    }

    /// Queues a request. Rejects what could never run: an empty prompt, a
    /// prompt plus `max_tokens` beyond the context, a prompt bigger than the
    /// whole cache. (Prompts are never cut.)
    pub fn add(&mut self, id: SeqId, req: SeqRequest) -> Result<(), ScheduleError> {
        if req.prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt);
        }
        if req.prompt.len() + req.max_tokens.max(1) > self.cfg.max_model_len {
            return Err(ScheduleError::TooLong {
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                max: self.cfg.max_model_len,
            });
        }
        // Alone, a sequence must be able to reach its full length, or it could
        // be preempted forever.
        let need = (req.prompt.len() + req.max_tokens.max(1)).div_ceil(self.pool.block_size());
        if need > self.pool.num_blocks() {
            return Err(ScheduleError::NeverFits {
                need,
                have: self.pool.num_blocks(),
            });
        }
        if self.contains(id) {
            return Err(ScheduleError::Duplicate(id));
        }
        self.waiting.push_back(Sequence {
            id,
            prompt_len: req.prompt.len(),
            tokens: req.prompt,
            blocks: Vec::new(),
            hashes: Vec::new(),
            num_computed: 0,
            cached_tokens: None,
            sampler: Sampler::new(req.sampling),
            max_tokens: req.max_tokens,
            stop_ids: req.stop_ids,
            ignore_eos: req.ignore_eos,
            logprobs: req.logprobs,
        });
        Ok(())
    }

    /// Drops a sequence wherever it is; its blocks are freed now. Returns its
    /// usage if it existed.
    pub fn cancel(&mut self, id: SeqId) -> Option<Usage> {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            return Some(self.running.remove(i).usage());
        }
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            return self.waiting.remove(i).map(|s| s.usage());
        }
        None
    }

    /// Blocks needed to hold `upto` tokens, beyond those already held.
    fn blocks_short(&self, seq: &Sequence, upto: usize) -> usize {
        upto.div_ceil(self.pool.block_size())
            .saturating_sub(seq.blocks.len())
    }

    /// Plans the next step. `None` when there is nothing to run.
    pub fn schedule(&mut self) -> Option<BatchInput> {
        assert!(
            self.in_flight.is_empty(),
            "schedule() called twice without update()"
        );
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut plan: Vec<(SeqId, usize)> = Vec::new();
        let mut preempted = false;

        // 1. Running sequences, oldest first.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let seq = &self.running[i];
            let n = (seq.tokens.len() - seq.num_computed).min(budget);
            let mut short = self.blocks_short(seq, seq.num_computed + n);
            let mut self_preempted = false;
            while short > self.pool.num_free() {
                // Preempt the newest running sequence (possibly this one).
                let victim = self.running.len() - 1;
                let mut v = self.running.remove(victim);
                v.release_blocks();
                self.stats.preemptions += 1;
                preempted = true;
                if let Some(k) = plan.iter().position(|(id, _)| *id == v.id) {
                    budget += plan.remove(k).1;
                }
                self.waiting.push_front(v);
                if victim == i {
                    self_preempted = true;
                    break;
                }
                short = self.blocks_short(&self.running[i], self.running[i].num_computed + n);
            }
            if self_preempted {
                break;
            }
            let seq = &mut self.running[i];
            for _ in 0..short {
                seq.blocks
                    .push(self.pool.allocate().expect("checked free blocks"));
            }
            budget -= n;
            plan.push((seq.id, n));
            i += 1;
        }

        // 2. Waiting sequences, in order.
        while !preempted
            && budget > 0
            && self.running.len() < self.cfg.max_num_seqs
            && !self.waiting.is_empty()
        {
            let mut seq = self.waiting.pop_front().expect("not empty");
            if self.cfg.enable_prefix_caching && seq.blocks.is_empty() {
                self.take_cached_prefix(&mut seq);
            }
            let n = (seq.tokens.len() - seq.num_computed).min(budget);
            let short = self.blocks_short(&seq, seq.num_computed + n);
            if short + self.cfg.watermark_blocks > self.pool.num_free() && !self.running.is_empty()
                || short > self.pool.num_free()
            {
                seq.release_blocks();
                self.waiting.push_front(seq);
                break;
            }
            for _ in 0..short {
                seq.blocks
                    .push(self.pool.allocate().expect("checked free blocks"));
            }
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(seq.num_computed);
            }
            budget -= n;
            plan.push((seq.id, n));
            self.running.push(seq);
        }

        if plan.is_empty() {
            return None;
        }
        self.stats.steps += 1;
        Some(self.build_batch(&plan))
    }

    /// Takes references to the leading full blocks of the sequence's tokens
    /// found in the prefix cache. The last token is always left to compute,
    /// since its logits are needed.
    fn take_cached_prefix(&self, seq: &mut Sequence) {
        let bs = self.pool.block_size();
        let usable = (seq.tokens.len() - 1) / bs;
        let mut parent = None;
        for b in 0..usable {
            let chunk = &seq.tokens[b * bs..(b + 1) * bs];
            let h = BlockHash::chain(parent, chunk);
            match self.pool.lookup(h, chunk) {
                Some(block) => {
                    seq.blocks.push(block);
                    seq.hashes.push(h);
                    parent = Some(h);
                }
                None => break,
            }
        }
        seq.num_computed = seq.blocks.len() * bs;
    }

    fn build_batch(&mut self, plan: &[(SeqId, usize)]) -> BatchInput {
        let bs = self.pool.block_size();
        let mut batch = BatchInput::default();
        for (s, &(id, n)) in plan.iter().enumerate() {
            let seq = self
                .running
                .iter()
                .find(|q| q.id == id)
                .expect("planned sequences are running");
            let start = seq.num_computed;
            for pos in start..start + n {
                batch.tokens.push(seq.tokens[pos]);
                batch.positions.push(pos as u32);
                batch.seq_of_token.push(s as u32);
                batch
                    .slot_mapping
                    .push(seq.blocks[pos / bs].id() * bs as u32 + (pos % bs) as u32);
            }
            batch
                .block_tables
                .push(seq.blocks.iter().map(BlockRef::id).collect());
            let sample = (start + n == seq.tokens.len()).then(|| {
                batch.samples.push(SampleRow {
                    row: (batch.tokens.len() - 1) as u32,
                    want_logits: !seq.sampler.params.is_device_greedy() || seq.logprobs.is_some(),
                });
                batch.samples.len() - 1
            });
            self.in_flight.push(Scheduled { id, n, sample });
        }
        batch
    }

    /// The model failed on the last scheduled step: drops every sequence in
    /// it (freeing their blocks) and returns their ids, so the caller can
    /// fail those requests and go on serving the others.
    pub fn abort_in_flight(&mut self) -> Vec<SeqId> {
        let ids: Vec<SeqId> = self.in_flight.drain(..).map(|s| s.id).collect();
        for &id in &ids {
            self.cancel(id);
        }
        ids
    }

    /// The model can run no more steps: drops every sequence, in flight,
    /// running or waiting (freeing their blocks), and returns their ids so
    /// the caller can fail those requests.
    pub fn abort_all(&mut self) -> Vec<SeqId> {
        self.in_flight.clear();
        let running = std::mem::take(&mut self.running);
        let waiting = std::mem::take(&mut self.waiting);
        running.iter().chain(&waiting).map(|s| s.id).collect()
    }

    /// Applies the model's outputs for the last scheduled step (one
    /// [`SampleOutput`] per [`SampleRow`], in order) and reports what happened.
    pub fn update(&mut self, outputs: Vec<SampleOutput>) -> Vec<SeqEvent> {
        let mut outputs: Vec<Option<SampleOutput>> = outputs.into_iter().map(Some).collect();
        let mut events = Vec::new();
        let bs = self.pool.block_size();
        for sch in std::mem::take(&mut self.in_flight) {
            // Cancelled while the step ran: nothing to do.
            let Some(idx) = self.running.iter().position(|s| s.id == sch.id) else {
                continue;
            };
            let seq = &mut self.running[idx];
            let is_prompt = seq.num_computed < seq.prompt_len;
            seq.num_computed += sch.n;
            if is_prompt {
                self.stats.prompt_tokens_computed += sch.n as u64;
            }
            // Register blocks that just became full.
            if self.cfg.enable_prefix_caching {
                while seq.hashes.len() < seq.num_computed / bs {
                    let b = seq.hashes.len();
                    let chunk = &seq.tokens[b * bs..(b + 1) * bs];
                    let h = BlockHash::chain(seq.hashes.last().copied(), chunk);
                    self.pool.register(&seq.blocks[b], h, chunk);
                    seq.hashes.push(h);
                }
            }
            let Some(si) = sch.sample else { continue };
            let Some(out) = outputs.get_mut(si).and_then(Option::take) else {
                continue;
            };
            let (token, logprobs) = match out.logits {
                Some(mut logits) => {
                    let lp = seq.logprobs.map(|k| {
                        let ls = log_softmax(&logits);
                        (ls, k)
                    });
                    let prompt_len = seq.prompt_len;
                    let (prompt, output) = seq.tokens.split_at(prompt_len);
                    let t = seq.sampler.sample(&mut logits, prompt, output);
                    let lp = lp.map(|(ls, k)| TokenLogprobs {
                        logprob: ls[t as usize],
                        top: top_logprobs(&ls, k),
                    });
                    (t, lp)
                }
                None => (out.argmax, None),
            };
            seq.tokens.push(token);
            self.stats.generation_tokens += 1;
            events.push(SeqEvent::Token {
                id: seq.id,
                token,
                logprobs,
            });
            let n_out = seq.tokens.len() - seq.prompt_len;
            let reason = if !seq.ignore_eos && seq.stop_ids.contains(&token) {
                Some(FinishReason::Stop)
            } else if n_out >= seq.max_tokens || seq.tokens.len() >= self.cfg.max_model_len {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(reason) = reason {
                let seq = self.running.remove(idx);
                events.push(SeqEvent::Finished {
                    id: seq.id,
                    reason,
                    usage: seq.usage(),
                });
            }
        }
        events
    }
}
