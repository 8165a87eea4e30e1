//! A Shard actor: one per device, each on its own arbiter thread, because a
//! step blocks that thread until the GPU is done. It owns one model shard
//! (that device's layers, weights and KV pages: a `ModelShard`, or a
//! stand-in in tests) and runs the steps it is sent; it holds no sequence
//! state and knows no other actor (the Scheduler passes each shard's hidden
//! states on to the next).
//!
//! It also decides whether a failed step is fatal. A panic inside a step
//! (caught here), a lost device (wgpu's callback) or a failed readback leave
//! the device in a state nobody knows: the shard answers that step and every
//! later one with [`StepError::Fatal`], and the Scheduler fails the runtime.
//! Any other error fails only the step's requests.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use actix::{Actor, Context, Handler};

use super::fault::Fault;
use super::messages::{RunStep, StepError};
use crate::gpu::GpuError;
use crate::model::shard::{ModelShard, ShardInput, ShardOutput};
use crate::model::spec::ModelError;
use crate::scheduler::BatchInput;

/// What a Shard actor runs: a [`ModelShard`], or a stand-in model in tests.
pub trait StepModel: Unpin + 'static {
    fn step(&mut self, batch: &BatchInput, input: ShardInput) -> Result<ShardOutput, StepError>;

    /// Which layers on which device, for logs and error messages.
    fn describe(&self) -> String;
}

impl StepModel for ModelShard {
    fn step(&mut self, batch: &BatchInput, input: ShardInput) -> Result<ShardOutput, StepError> {
        ModelShard::step(self, batch, input).map_err(|e| {
            let message = format!("layers {:?}: {e}", self.layers);
            match e {
                // Mapping a buffer fails when the device stopped answering
                // (a lost device reaches a mapping as an error).
                ModelError::Gpu(GpuError::Readback(_)) => StepError::Fatal(message),
                _ => StepError::Step(message),
            }
        })
    }

    fn describe(&self) -> String {
        format!("layers {:?} on {}", self.layers, self.ctx.info.name)
    }
}

pub struct ShardActor<M: StepModel> {
    model: M,
    /// Why the shard can run no more steps, once it cannot.
    broken: Option<String>,
    /// Set by wgpu's device-lost callback (on another thread).
    device_lost: Arc<OnceLock<String>>,
    steps: u64,
    /// Test hook ([`Fault::ShardPanic`]): panic inside this step.
    panic_at_step: Option<u64>,
}

impl<M: StepModel> ShardActor<M> {
    pub fn new(model: M, fault: Option<Fault>) -> Self {
        Self {
            model,
            broken: None,
            device_lost: Arc::new(OnceLock::new()),
            steps: 0,
            panic_at_step: fault.and_then(Fault::shard_panic_step),
        }
    }

    fn run(&mut self, msg: RunStep) -> Result<ShardOutput, StepError> {
        self.steps += 1;
        let inject = self.panic_at_step == Some(self.steps);
        let model = &mut self.model;
        let steps = self.steps;
        // The device and this shard's state are unknown after a panic; it
        // is caught only to report it, and the shard runs nothing more.
        let result = catch_unwind(AssertUnwindSafe(move || {
            if inject {
                panic!(
                    "injected test fault ({}): panic in step {steps}",
                    Fault::ENV
                );
            }
            model.step(&msg.batch, msg.input)
        }));
        match result {
            Ok(r) => r,
            Err(payload) => Err(StepError::Fatal(format!(
                "{}: the step panicked: {}",
                self.model.describe(),
                panic_message(payload.as_ref())
            ))),
        }
    }
}

impl ShardActor<ModelShard> {
    /// A shard on a real device, which also watches for the device's loss.
    pub fn on_device(shard: ModelShard, fault: Option<Fault>) -> Self {
        let actor = Self::new(shard, fault);
        let lost = actor.device_lost.clone();
        actor
            .model
            .ctx
            .device
            .set_device_lost_callback(move |reason, message| {
                // `Destroyed` is our own teardown, not a failure.
                if reason != wgpu::DeviceLostReason::Destroyed {
                    let _ = lost.set(format!("the device was lost ({reason:?}): {message}"));
                }
            });
        actor
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

impl<M: StepModel> Actor for ShardActor<M> {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::info!("shard actor for {}", self.model.describe());
        if let Some(step) = self.panic_at_step {
            tracing::warn!(
                "test fault injection: this shard will panic in step {step} ({})",
                Fault::ENV
            );
        }
    }
}

impl<M: StepModel> Handler<RunStep> for ShardActor<M> {
    type Result = Result<ShardOutput, StepError>;

    fn handle(&mut self, msg: RunStep, _: &mut Context<Self>) -> Self::Result {
        if let Some(reason) = &self.broken {
            return Err(StepError::Fatal(reason.clone()));
        }
        let mut result = self.run(msg);
        if let Some(lost) = self.device_lost.get() {
            // Even a step that seemed to succeed read from a lost device.
            result = Err(StepError::Fatal(format!(
                "{}: {lost}",
                self.model.describe()
            )));
        }
        if let Err(StepError::Fatal(reason)) = &result {
            tracing::error!("shard failed for good: {reason}");
            self.broken = Some(reason.clone());
        }
        result
    }
}
