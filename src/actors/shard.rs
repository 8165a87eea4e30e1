//! A Shard actor: one per device, each on its own arbiter thread, because a
//! step blocks that thread until the GPU is done. It owns one `ModelShard`
//! (that device's layers, weights and KV pages) and runs the steps it is
//! sent; it holds no sequence state and knows no other actor (the Scheduler
//! passes each shard's hidden states on to the next).

use actix::{Actor, Context, Handler};

use super::messages::RunStep;
use crate::model::shard::{ModelShard, ShardOutput};

pub struct ShardActor {
    shard: ModelShard,
}

impl ShardActor {
    pub fn new(shard: ModelShard) -> Self {
        Self { shard }
    }
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::info!(
            "shard actor for layers {:?} on {}",
            self.shard.layers,
            self.shard.ctx.describe()
        );
    }
}

impl Handler<RunStep> for ShardActor {
    type Result = Result<ShardOutput, String>;

    fn handle(&mut self, msg: RunStep, _: &mut Context<Self>) -> Self::Result {
        self.shard
            .step(&msg.batch, msg.input)
            .map_err(|e| format!("layers {:?}: {e}", self.shard.layers))
    }
}
