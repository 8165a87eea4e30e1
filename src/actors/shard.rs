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
//! Any other error of the model fails only the step's requests
//! ([`StepError::Step`]).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use actix::{Actor, Context, Handler};

use super::error::{FatalError, StepError};
use super::fault::Fault;
use super::messages::RunStep;
use crate::gpu::GpuError;
use crate::model::shard::{ModelShard, ShardInput, ShardOutput};
use crate::model::spec::ModelError;
use crate::step::BatchInput;

/// What a Shard actor runs: a [`ModelShard`], or a stand-in model in tests.
pub trait StepModel: Unpin + 'static {
    fn step(&mut self, batch: &BatchInput, input: ShardInput) -> Result<ShardOutput, ModelError>;

    /// Which layers on which device, for logs and error messages.
    fn describe(&self) -> String;
}

impl StepModel for ModelShard {
    fn step(&mut self, batch: &BatchInput, input: ShardInput) -> Result<ShardOutput, ModelError> {
        ModelShard::step(self, batch, input)
    }

    fn describe(&self) -> String {
        format!("layers {:?} on {}", self.layers, self.ctx.info.name)
    }
}

pub struct ShardActor<M: StepModel> {
    model: M,
    /// Why the shard can run no more steps, once it cannot.
    broken: Option<FatalError>,
    /// Set by wgpu's device-lost callback (on another thread): its reason
    /// and message.
    device_lost: Arc<OnceLock<(String, String)>>,
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
        let shard = || self.model.describe();
        match result {
            Ok(Ok(out)) => Ok(out),
            // Mapping a buffer fails when the device stopped answering (a
            // lost device reaches a mapping as an error).
            Ok(Err(ModelError::Gpu(GpuError::Readback(message)))) => Err(FatalError::Readback {
                shard: shard(),
                message,
            }
            .into()),
            Ok(Err(source)) => Err(StepError::Step {
                shard: shard(),
                source: Box::new(source),
            }),
            Err(payload) => Err(FatalError::Panicked {
                shard: shard(),
                message: panic_message(payload.as_ref()).to_string(),
            }
            .into()),
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
                    let _ = lost.set((format!("{reason:?}"), message));
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
        if let Some(fatal) = &self.broken {
            return Err(fatal.clone().into());
        }
        let mut result = self.run(msg);
        if let Some((reason, message)) = self.device_lost.get() {
            // Even a step that seemed to succeed read from a lost device.
            result = Err(FatalError::DeviceLost {
                shard: self.model.describe(),
                reason: reason.clone(),
                message: message.clone(),
            }
            .into());
        }
        if let Err(StepError::Fatal(fatal)) = &result {
            tracing::error!("shard failed for good: {fatal}");
            self.broken = Some(fatal.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A model whose every step fails with the error `fail` makes; counts
    /// the steps it ran.
    struct Failing {
        fail: fn() -> ModelError,
        ran: Arc<AtomicUsize>,
    }

    impl StepModel for Failing {
        fn step(&mut self, _: &BatchInput, _: ShardInput) -> Result<ShardOutput, ModelError> {
            self.ran.fetch_add(1, Ordering::SeqCst);
            Err((self.fail)())
        }

        fn describe(&self) -> String {
            "the failing shard".into()
        }
    }

    fn start(fail: fn() -> ModelError) -> (actix::Addr<ShardActor<Failing>>, Arc<AtomicUsize>) {
        let ran = Arc::new(AtomicUsize::new(0));
        let model = Failing {
            fail,
            ran: ran.clone(),
        };
        (ShardActor::new(model, None).start(), ran)
    }

    async fn step(shard: &actix::Addr<ShardActor<Failing>>) -> StepError {
        shard
            .send(RunStep {
                batch: Arc::new(BatchInput::default()),
                input: ShardInput::Tokens,
            })
            .await
            .expect("the shard answers")
            .expect_err("every step fails")
    }

    #[actix_rt::test]
    async fn a_model_error_fails_only_its_step() {
        let (shard, ran) = start(|| ModelError::Batch(crate::step::BatchError::OutOfRange));
        for _ in 0..2 {
            match step(&shard).await {
                StepError::Step { shard, source } => {
                    assert_eq!(shard, "the failing shard");
                    assert!(matches!(*source, ModelError::Batch(_)), "{source}");
                }
                other => panic!("expected a step error, got {other}"),
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    #[actix_rt::test]
    async fn a_failed_readback_fails_the_shard_for_good() {
        let (shard, ran) = start(|| ModelError::Gpu(GpuError::Readback("mapping failed".into())));
        let StepError::Fatal(first) = step(&shard).await else {
            panic!("a failed readback is fatal");
        };
        assert_eq!(
            first,
            FatalError::Readback {
                shard: "the failing shard".into(),
                message: "mapping failed".into()
            }
        );
        // Every later step gets the same error without running.
        let StepError::Fatal(second) = step(&shard).await else {
            panic!("still fatal");
        };
        assert_eq!(second, first);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
