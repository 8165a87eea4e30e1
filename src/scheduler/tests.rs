//! Scheduler tests against a mock model that keeps a real paged "KV cache" of
//! token ids: it writes each token at its slot and, to predict, reads the
//! sequence back through its block table. A wrong slot, a stale prefix-cache
//! block or a block freed too early changes its predictions.

use std::collections::HashMap;

use super::*;
use crate::kv::BlockPool;
use crate::sampling::SamplingParams;
use crate::step::{BatchInput, SampleOutput};

/// The "model": the next token is a hash of the whole sequence so far.
fn next_token(history: &[u32]) -> u32 {
    let mut h: u64 = 1469598103934665603;
    for &t in history {
        h = (h ^ u64::from(t)).wrapping_mul(1099511628211);
    }
    10 + (h % 90) as u32
}

struct MockModel {
    cache: HashMap<u32, u32>,
    block_size: u32,
    steps: usize,
    max_batch: usize,
}

impl MockModel {
    fn new(block_size: usize) -> Self {
        Self {
            cache: HashMap::new(),
            block_size: block_size as u32,
            steps: 0,
            max_batch: 0,
        }
    }

    fn run(&mut self, b: &BatchInput) -> Vec<SampleOutput> {
        self.steps += 1;
        self.max_batch = self.max_batch.max(b.block_tables.len());
        for (i, &slot) in b.slot_mapping.iter().enumerate() {
            self.cache.insert(slot, b.tokens[i]);
        }
        b.samples
            .iter()
            .map(|s| {
                let row = s.row as usize;
                let table = &b.block_tables[b.seq_of_token[row] as usize];
                let history: Vec<u32> = (0..=b.positions[row])
                    .map(|p| {
                        let slot = table[(p / self.block_size) as usize] * self.block_size
                            + p % self.block_size;
                        self.cache[&slot]
                    })
                    .collect();
                SampleOutput {
                    argmax: next_token(&history),
                    logits: None,
                }
            })
            .collect()
    }
}

fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut t = prompt.to_vec();
    for _ in 0..n {
        t.push(next_token(&t));
    }
    t[prompt.len()..].to_vec()
}

fn req(prompt: Vec<u32>, max_tokens: usize) -> SeqRequest {
    SeqRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_ids: vec![],
        ignore_eos: false,
        logprobs: None,
    }
}

/// Runs until idle; returns each sequence's output and usage.
type Outputs = HashMap<SeqId, (Vec<u32>, Option<(FinishReason, Usage)>)>;

fn drain(s: &mut Scheduler, m: &mut MockModel) -> Outputs {
    let mut out = Outputs::new();
    while let Some(batch) = s.schedule() {
        let o = m.run(&batch);
        for e in s.update(o) {
            match e {
                SeqEvent::Token { id, token, .. } => out.entry(id).or_default().0.push(token),
                SeqEvent::Finished { id, reason, usage } => {
                    out.entry(id).or_default().1 = Some((reason, usage))
                }
            }
        }
        assert!(m.steps < 10_000, "scheduler did not converge");
    }
    out
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 7 + seed * 13) % 97 + 3)
        .collect()
}

#[test]
fn one_sequence_generates_the_model_tokens() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    let p = prompt(1, 11);
    s.add(1, req(p.clone(), 9)).unwrap();
    let out = drain(&mut s, &mut m);
    assert_eq!(out[&1].0, expected(&p, 9));
    let (reason, usage) = out[&1].1.unwrap();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.completion_tokens, 9);
    assert_eq!(s.pool().num_used(), 0, "blocks freed at finish");
}

#[test]
fn concurrent_sequences_match_alone_and_batch_together() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(256, 4));
    let mut m = MockModel::new(4);
    for i in 0..8u64 {
        s.add(i, req(prompt(i as u32, 5 + i as usize * 3), 12))
            .unwrap();
    }
    let out = drain(&mut s, &mut m);
    for i in 0..8u64 {
        assert_eq!(
            out[&i].0,
            expected(&prompt(i as u32, 5 + i as usize * 3), 12)
        );
    }
    assert_eq!(m.max_batch, 8, "all eight ran in one step");
}

#[test]
fn tiny_pool_preempts_by_recompute_and_outputs_stay_right() {
    let cfg = SchedulerConfig {
        watermark_blocks: 0,
        ..Default::default()
    };
    // 8 sequences needing ~6 blocks each at the end, 16 blocks in all.
    let mut s = Scheduler::new(cfg, BlockPool::new(16, 4));
    let mut m = MockModel::new(4);
    for i in 0..8u64 {
        s.add(i, req(prompt(i as u32, 7), 16)).unwrap();
    }
    let out = drain(&mut s, &mut m);
    for i in 0..8u64 {
        assert_eq!(out[&i].0, expected(&prompt(i as u32, 7), 16), "seq {i}");
        assert_eq!(out[&i].1.unwrap().0, FinishReason::Length);
    }
    assert!(
        s.stats().preemptions > 0,
        "the pool was too small not to preempt"
    );
    assert_eq!(s.pool().num_used(), 0);
}

#[test]
fn long_prompt_is_prefilled_in_chunks_within_the_budget() {
    let cfg = SchedulerConfig {
        max_num_batched_tokens: 8,
        ..Default::default()
    };
    let mut s = Scheduler::new(cfg, BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    let p = prompt(3, 30);
    s.add(1, req(p.clone(), 3)).unwrap();
    let first = s.schedule().unwrap();
    assert_eq!(first.num_tokens(), 8);
    assert!(first.samples.is_empty(), "no sample before the prompt ends");
    let o = m.run(&first);
    assert!(s.update(o).is_empty());
    let out = drain(&mut s, &mut m);
    assert_eq!(out[&1].0, expected(&p, 3));
    assert_eq!(
        m.steps,
        4 + 2,
        "30 prompt tokens in 4 chunks, then 2 decodes"
    );
}

#[test]
fn shared_prefix_is_served_from_the_cache() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    let mut a = prompt(5, 21);
    s.add(1, req(a.clone(), 4)).unwrap();
    let first = drain(&mut s, &mut m);
    assert_eq!(first[&1].1.unwrap().1.cached_tokens, 0);
    a.truncate(18);
    a.extend([1, 2, 3]);
    s.add(2, req(a.clone(), 4)).unwrap();
    let second = drain(&mut s, &mut m);
    assert_eq!(second[&2].0, expected(&a, 4));
    assert_eq!(
        second[&2].1.unwrap().1.cached_tokens,
        16,
        "four full blocks reused"
    );
    assert!(s.pool().stats().cache_hits >= 4);
}

#[test]
fn a_new_request_joins_the_running_batch() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    s.add(1, req(prompt(1, 4), 20)).unwrap();
    for _ in 0..3 {
        let b = s.schedule().unwrap();
        let o = m.run(&b);
        s.update(o);
    }
    s.add(2, req(prompt(2, 4), 2)).unwrap();
    let b = s.schedule().unwrap();
    assert_eq!(b.block_tables.len(), 2, "joined at the next step");
    let o = m.run(&b);
    s.update(o);
    let out = drain(&mut s, &mut m);
    assert_eq!(out[&2].1.unwrap().0, FinishReason::Length);
}

#[test]
fn cancel_frees_blocks_at_once() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    s.add(1, req(prompt(1, 10), 50)).unwrap();
    let b = s.schedule().unwrap();
    let o = m.run(&b);
    s.update(o);
    assert!(s.pool().num_used() > 0);
    // Cancelled between schedule and update: the update skips it.
    let b = s.schedule().unwrap();
    assert!(s.cancel(1).is_some());
    assert_eq!(s.pool().num_used(), 0);
    let o = m.run(&b);
    assert!(s.update(o).is_empty());
    assert!(!s.has_work());
}

#[test]
fn stop_token_finishes_with_stop() {
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    let p = prompt(9, 6);
    let exp = expected(&p, 5);
    let mut r = req(p, 50);
    r.stop_ids = vec![exp[2]];
    s.add(1, r).unwrap();
    let out = drain(&mut s, &mut m);
    assert_eq!(out[&1].0, exp[..3].to_vec());
    assert_eq!(out[&1].1.unwrap().0, FinishReason::Stop);
}

#[test]
fn too_long_prompts_are_rejected_not_cut() {
    let cfg = SchedulerConfig {
        max_model_len: 32,
        ..Default::default()
    };
    let mut s = Scheduler::new(cfg, BlockPool::new(64, 4));
    let err = s.add(1, req(prompt(1, 30), 5)).unwrap_err();
    assert!(
        matches!(err, ScheduleError::TooLong { prompt: 30, .. }),
        "{err}"
    );
    assert!(s.add(2, req(vec![], 5)).is_err());
    assert!(s.add(3, req(prompt(1, 20), 5)).is_ok());
}

#[test]
fn shared_system_prompt_keeps_hitting_under_memory_pressure() {
    // 8 blocks of 4 tokens. A request on the 16-token system prompt holds 6
    // blocks (4 of the prompt, 2 of its own question and answer); an unrelated
    // request between two of them needs 4, more than the 2 never-used blocks,
    // so it must evict cached blocks. Freed tail-first, the victims are the
    // last request's own blocks, and the system prompt (the root every later
    // request hangs off) stays cached. Freed head-first, the root went first
    // and every block after it was stranded.
    let mut s = Scheduler::new(SchedulerConfig::default(), BlockPool::new(8, 4));
    let mut m = MockModel::new(4);
    let system = prompt(40, 16);
    let mut id = 0;
    for round in 0..4u32 {
        let mut shared = system.clone();
        shared.extend(prompt(50 + round, 6));
        id += 1;
        s.add(id, req(shared.clone(), 2)).unwrap();
        let out = drain(&mut s, &mut m);
        assert_eq!(out[&id].0, expected(&shared, 2));
        let cached = out[&id].1.unwrap().1.cached_tokens;
        let want = if round == 0 { 0 } else { system.len() };
        assert_eq!(cached, want, "round {round}: the system prompt's blocks");

        let other = prompt(60 + round, 14);
        id += 1;
        s.add(id, req(other.clone(), 2)).unwrap();
        let out = drain(&mut s, &mut m);
        assert_eq!(out[&id].0, expected(&other, 2));
    }
    assert!(
        s.pool().stats().evictions > 0,
        "the pool was small enough to force evictions"
    );
    assert_eq!(s.pool().num_used(), 0);
}

#[test]
fn abort_all_drops_every_sequence_and_frees_every_block() {
    let cfg = SchedulerConfig {
        max_num_seqs: 2,
        ..Default::default()
    };
    let mut s = Scheduler::new(cfg, BlockPool::new(64, 4));
    let mut m = MockModel::new(4);
    for i in 0..3u64 {
        s.add(i, req(prompt(i as u32, 6), 20)).unwrap();
    }
    let b = s.schedule().unwrap();
    let o = m.run(&b);
    s.update(o);
    let _in_flight = s.schedule().unwrap();
    assert_eq!((s.num_running(), s.num_waiting()), (2, 1));
    let mut ids = s.abort_all();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
    assert!(!s.has_work());
    assert_eq!(s.pool().num_used(), 0);
    // The step that was in flight is forgotten: the next plan starts clean.
    s.add(7, req(prompt(7, 5), 2)).unwrap();
    let out = drain(&mut s, &mut m);
    assert_eq!(out[&7].0, expected(&prompt(7, 5), 2));
}
