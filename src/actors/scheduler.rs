//! The Scheduler actor: the single owner of every sequence, of the KV block
//! pool (inside the core [`Scheduler`]) and of the step loop. Whenever it has
//! work and no step is in flight it drops the sequences whose client went
//! away, plans a step, sends it through the shards in order (shard 0's hidden
//! states to shard 1, ...), applies the last shard's samples, and forwards
//! what happened to the Detokenizer. It keeps each sequence's response
//! sender only to see a closed channel; it never sends text (that is the
//! Detokenizer's job) and never touches a shard's or another actor's state.
//!
//! When the model can run no more steps (a shard panicked, lost its device
//! or stopped), or this actor itself panics, it answers every request it
//! holds with an error, marks the runtime's [`Health`] failed and takes no
//! new work; `wgserve serve` then exits so it is restarted.
//!
//! The core uses `Rc` inside, so this actor is not `Send`: it must be
//! started on the current arbiter (`Actor::start`), never moved to another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Recipient, WeakRecipient,
    WrapFuture,
};
use tokio::sync::mpsc::UnboundedSender;

use super::detokenizer::Detokenizer;
use super::error::{runtime_failed, AddError, FatalError, StepError, Unavailable};
use super::fault::Fault;
use super::health::Health;
use super::messages::{
    AddSequences, Cancel, Emit, Fail, Forget, GetMetrics, OutputSpec, Register, RunStep,
    StopSequence, WaitingChanged,
};
use crate::backend::{BackendError, Event, MetricsSnapshot};
use crate::model::chain::{chain, ChainError};
use crate::scheduler::{FinishReason, Scheduler, SeqEvent, SeqId};
use crate::step::{BatchInput, SampleOutput};

/// What one step through the shards gives: the last shard's samples, or
/// why there are none.
type StepResult = Result<Vec<SampleOutput>, ChainError<StepError>>;

/// Runs one step through every shard in order (`crate::model::chain`, the
/// same rule the synchronous engine follows), each shard behind its actor.
async fn run_shards(shards: Vec<Recipient<RunStep>>, batch: Arc<BatchInput>) -> StepResult {
    chain(shards.len(), |index, input| {
        let sent = shards[index].send(RunStep {
            batch: batch.clone(),
            input,
        });
        async move {
            sent.await
                .map_err(|source| StepError::from(FatalError::Stopped { index, source }))?
        }
    })
    .await
}

/// What the actor keeps per sequence besides the core's state.
struct Tracked {
    /// Watched only for `is_closed()`: a dropped receiver cancels.
    sender: UnboundedSender<Event>,
    received: Instant,
    last_token: Option<Instant>,
}

#[derive(Debug, Default)]
struct Counters {
    prompt_tokens: u64,
    finished: u64,
    cancelled: u64,
    failed: u64,
    ttft_sum: f64,
    ttft_count: u64,
    tpot_sum: f64,
    tpot_count: u64,
}

pub struct SchedulerActor {
    core: Scheduler,
    shards: Vec<Recipient<RunStep>>,
    detokenizer: Addr<Detokenizer>,
    /// Weak: Intake lives as long as the runtime holds it, not longer.
    intake: WeakRecipient<WaitingChanged>,
    seqs: HashMap<SeqId, Tracked>,
    /// A step is with the shards; the next waits for its result.
    stepping: bool,
    /// A retry of an empty schedule is pending.
    retry_pending: bool,
    last_waiting: usize,
    counters: Counters,
    /// Set here, once, when the model can run no more steps.
    health: Health,
    /// Test hook ([`Fault::SchedulerPanic`]): panic when this step is back.
    panic_at_step: Option<u64>,
}

impl SchedulerActor {
    pub fn new(
        core: Scheduler,
        shards: Vec<Recipient<RunStep>>,
        detokenizer: Addr<Detokenizer>,
        intake: WeakRecipient<WaitingChanged>,
        health: Health,
        fault: Option<Fault>,
    ) -> Self {
        Self {
            core,
            shards,
            detokenizer,
            intake,
            seqs: HashMap::new(),
            stepping: false,
            retry_pending: false,
            last_waiting: 0,
            counters: Counters::default(),
            health,
            panic_at_step: fault.and_then(Fault::scheduler_panic_step),
        }
    }

    /// Cancels every sequence whose client dropped its receiver.
    fn reap_closed(&mut self) {
        let gone: Vec<SeqId> = self
            .seqs
            .iter()
            .filter(|(_, t)| t.sender.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.seqs.remove(&id);
            if self.core.cancel(id).is_some() {
                self.counters.cancelled += 1;
            }
            self.detokenizer.do_send(Forget { id });
            tracing::debug!("sequence {id}: client gone, cancelled");
        }
    }

    fn report_waiting(&mut self) {
        let waiting = self.core.num_waiting();
        if waiting != self.last_waiting {
            self.last_waiting = waiting;
            if let Some(intake) = self.intake.upgrade() {
                intake.do_send(WaitingChanged { waiting });
            }
        }
    }

    /// Starts a step if there is work and none is in flight.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.stepping || self.health.failure().is_some() {
            return;
        }
        self.reap_closed();
        let batch = self.core.schedule();
        self.report_waiting();
        let Some(batch) = batch else {
            if self.core.has_work() && !self.retry_pending {
                // Nothing fits this instant (cannot happen with a consistent
                // pool, but a stalled loop would hang every request).
                self.retry_pending = true;
                ctx.run_later(Duration::from_millis(5), |act, ctx| {
                    act.retry_pending = false;
                    act.kick(ctx);
                });
            }
            return;
        };
        self.stepping = true;
        let fut = run_shards(self.shards.clone(), Arc::new(batch));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.stepping = false;
            act.step_done(result);
            act.kick(ctx);
        }));
    }

    fn step_done(&mut self, result: StepResult) {
        if self.panic_at_step == Some(self.core.stats().steps) {
            panic!(
                "injected test fault ({}): the Scheduler panics as step {} comes back",
                Fault::ENV,
                self.core.stats().steps
            );
        }
        match result {
            Ok(samples) => {
                let events = self.core.update(samples);
                self.observe(&events);
                if !events.is_empty() {
                    self.detokenizer.do_send(Emit { events });
                }
            }
            Err(ChainError::Shard(StepError::Fatal(fatal))) => self.fail_runtime(fatal.to_string()),
            Err(failed) => {
                tracing::error!("model step failed: {failed}");
                let ids: Vec<SeqId> = self
                    .core
                    .abort_in_flight()
                    .into_iter()
                    .filter(|id| self.seqs.remove(id).is_some())
                    .collect();
                self.counters.failed += ids.len() as u64;
                self.detokenizer.do_send(Fail {
                    ids,
                    error: BackendError::from(&failed),
                });
            }
        }
    }

    /// The model can run no more steps: answers every request with an
    /// error, frees every block, and marks the runtime failed, so new work
    /// is refused and the process can exit to be restarted.
    fn fail_runtime(&mut self, reason: String) {
        tracing::error!("the runtime failed: {reason}; answering every request with an error");
        self.health.fail(reason.clone());
        self.core.abort_all();
        self.fail_tracked(&reason);
        self.report_waiting();
    }

    /// Sends every tracked request its error and forgets it.
    fn fail_tracked(&mut self, reason: &str) {
        let ids: Vec<SeqId> = self.seqs.drain().map(|(id, _)| id).collect();
        if ids.is_empty() {
            return;
        }
        self.counters.failed += ids.len() as u64;
        self.detokenizer.do_send(Fail {
            ids,
            error: runtime_failed(reason),
        });
    }

    /// Updates the timing and outcome counters from a step's events.
    fn observe(&mut self, events: &[SeqEvent]) {
        let now = Instant::now();
        for event in events {
            match event {
                SeqEvent::Token { id, .. } => {
                    let Some(t) = self.seqs.get_mut(id) else {
                        continue;
                    };
                    match t.last_token {
                        None => {
                            self.counters.ttft_sum += (now - t.received).as_secs_f64();
                            self.counters.ttft_count += 1;
                        }
                        Some(last) => {
                            self.counters.tpot_sum += (now - last).as_secs_f64();
                            self.counters.tpot_count += 1;
                        }
                    }
                    t.last_token = Some(now);
                }
                SeqEvent::Finished { id, reason, .. } => {
                    self.seqs.remove(id);
                    match reason {
                        FinishReason::Cancelled => self.counters.cancelled += 1,
                        _ => self.counters.finished += 1,
                    }
                }
            }
        }
    }

    /// Ends a sequence at the client's or the Detokenizer's request and
    /// tells the Detokenizer, which sends the final event.
    fn end(&mut self, id: SeqId, reason: FinishReason) {
        let Some(usage) = self.core.cancel(id) else {
            return;
        };
        let events = vec![SeqEvent::Finished { id, reason, usage }];
        self.observe(&events);
        self.detokenizer.do_send(Emit { events });
        self.report_waiting();
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        if let Some(step) = self.panic_at_step {
            tracing::warn!(
                "test fault injection: the Scheduler will panic after step {step} ({})",
                Fault::ENV
            );
        }
    }
}

impl Drop for SchedulerActor {
    fn drop(&mut self) {
        // A handler panicked and actix drops the actor while unwinding.
        // Nobody else holds these requests: answer them now and mark the
        // runtime failed. (The core is not touched: its state is whatever
        // the panic left, and a second panic here would abort.)
        if std::thread::panicking() {
            let reason = "the Scheduler panicked; its message is in the log above";
            tracing::error!("the runtime failed: {reason}");
            self.health.fail(reason);
            self.fail_tracked(reason);
        }
    }
}

impl Handler<AddSequences> for SchedulerActor {
    type Result = Result<(), AddError>;

    fn handle(&mut self, msg: AddSequences, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(reason) = self.health.failure() {
            return Err(Unavailable::Failed(reason).into());
        }
        // All or none: a refusal takes back the group's sequences added so
        // far. Nothing has run or been registered yet, so no event is owed.
        let mut added: Vec<(SeqId, usize, OutputSpec, Instant)> =
            Vec::with_capacity(msg.seqs.len());
        for seq in msg.seqs {
            let prompt_tokens = seq.request.prompt.len();
            if let Err(e) = self.core.add(seq.id, seq.request) {
                for (id, ..) in &added {
                    self.core.cancel(*id);
                }
                return Err(e.into());
            }
            added.push((seq.id, prompt_tokens, seq.output, seq.received));
        }
        for (id, prompt_tokens, output, received) in added {
            self.counters.prompt_tokens += prompt_tokens as u64;
            self.seqs.insert(
                id,
                Tracked {
                    sender: output.sender.clone(),
                    received,
                    last_token: None,
                },
            );
            // Sent before any of its tokens: one mailbox keeps the order.
            self.detokenizer.do_send(Register { id, output });
        }
        self.report_waiting();
        self.kick(ctx);
        Ok(())
    }
}

impl Handler<Cancel> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, _: &mut Context<Self>) {
        // Safe while a step is in flight: `update` skips a sequence that is
        // gone, and its freed blocks are handed out only by the next
        // `schedule`, after this step.
        self.end(msg.id, FinishReason::Cancelled);
    }
}

impl Handler<StopSequence> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: StopSequence, _: &mut Context<Self>) {
        self.end(msg.id, FinishReason::Stop);
    }
}

impl Handler<GetMetrics> for SchedulerActor {
    type Result = actix::MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        let stats = self.core.stats();
        let pool = self.core.pool();
        let ps = pool.stats();
        let c = &self.counters;
        actix::MessageResult(MetricsSnapshot {
            requests_running: self.core.num_running(),
            requests_waiting: self.core.num_waiting(),
            kv_blocks_used: pool.num_used(),
            kv_blocks_total: pool.num_blocks(),
            preemptions_total: stats.preemptions,
            prefix_cache_queries_total: ps.cache_queries,
            prefix_cache_hits_total: ps.cache_hits,
            prompt_tokens_total: c.prompt_tokens,
            generation_tokens_total: stats.generation_tokens,
            requests_finished_total: c.finished,
            requests_cancelled_total: c.cancelled,
            requests_failed_total: c.failed,
            steps_total: stats.steps,
            ttft_seconds_sum: c.ttft_sum,
            ttft_seconds_count: c.ttft_count,
            tpot_seconds_sum: c.tpot_sum,
            tpot_seconds_count: c.tpot_count,
        })
    }
}
