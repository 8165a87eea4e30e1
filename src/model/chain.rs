//! One step through a model's shards in layer order: token ids into the
//! first, each shard's hidden states into the next, the last one's samples
//! out. The one copy of that rule, for the synchronous engine (shards held
//! in hand: [`run_shards`]) and the Scheduler actor (shards behind actor
//! messages: [`chain`] with a closure that sends). It owns no state and
//! never looks inside a shard.

use std::future::{ready, Future};

use futures_util::FutureExt;

use super::shard::{ModelShard, ShardInput, ShardOutput};
use super::spec::ModelError;
use crate::step::{BatchInput, SampleOutput};

/// Why a step through the shards gave no samples.
#[derive(Debug, thiserror::Error)]
pub enum ChainError<E> {
    /// A shard's own error.
    #[error(transparent)]
    Shard(E),
    /// Every shard returned hidden states: the shards are wired wrong (the
    /// last one must hold the output head).
    #[error("the last of {shards} shards returned hidden states instead of samples")]
    NoSamples { shards: usize },
}

/// Runs one step through `n` shards in order: `step(i, input)` runs shard
/// `i` and answers its output. The first shard to answer samples ends the
/// step (only the last one holds the head).
pub async fn chain<E, F, Fut>(n: usize, mut step: F) -> Result<Vec<SampleOutput>, ChainError<E>>
where
    F: FnMut(usize, ShardInput) -> Fut,
    Fut: Future<Output = Result<ShardOutput, E>>,
{
    let mut input = ShardInput::Tokens;
    for i in 0..n {
        match step(i, input).await.map_err(ChainError::Shard)? {
            ShardOutput::Hidden(h) => input = ShardInput::Hidden(h),
            ShardOutput::Samples(s) => return Ok(s),
        }
    }
    Err(ChainError::NoSamples { shards: n })
}

/// [`chain`] over shards held in hand, on this thread (`generate`, the
/// benchmark, tests).
pub fn run_shards(
    shards: &mut [ModelShard],
    batch: &BatchInput,
) -> Result<Vec<SampleOutput>, ChainError<ModelError>> {
    let n = shards.len();
    // Each shard runs inside the closure and its future is ready at once,
    // so the whole chain completes in one poll.
    chain(n, |i, input| ready(shards[i].step(batch, input)))
        .now_or_never()
        .expect("a chain of ready futures completes in one poll")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(argmax: u32) -> SampleOutput {
        SampleOutput {
            argmax,
            logits: None,
        }
    }

    /// A stand-in shard `i`: adds `i + 1` to every hidden value, or (the
    /// last one) answers one sample whose id is the sum it received.
    fn fake(i: usize, n: usize, input: ShardInput) -> Result<ShardOutput, String> {
        let h = match input {
            ShardInput::Tokens if i == 0 => vec![0.0],
            ShardInput::Hidden(h) if i > 0 => h,
            _ => return Err(format!("shard {i} got the wrong kind of input")),
        };
        let h: Vec<f32> = h.iter().map(|x| x + (i + 1) as f32).collect();
        if i + 1 == n {
            Ok(ShardOutput::Samples(vec![sample(h[0] as u32)]))
        } else {
            Ok(ShardOutput::Hidden(h))
        }
    }

    fn run<F>(n: usize, step: F) -> Result<Vec<SampleOutput>, ChainError<String>>
    where
        F: FnMut(usize, ShardInput) -> Result<ShardOutput, String>,
    {
        let mut step = step;
        chain(n, |i, input| ready(step(i, input)))
            .now_or_never()
            .expect("ready")
    }

    #[test]
    fn hidden_states_pass_in_order_and_the_last_samples() {
        // 1 + 2 + 3: each shard saw the previous one's output.
        let out = run(3, |i, input| fake(i, 3, input)).expect("chain");
        assert_eq!(out, vec![sample(6)]);
    }

    #[test]
    fn a_shard_error_stops_the_chain() {
        let mut ran = Vec::new();
        let err = run(3, |i, input| {
            ran.push(i);
            if i == 1 {
                Err("broken".to_string())
            } else {
                fake(i, 3, input)
            }
        })
        .unwrap_err();
        assert!(matches!(err, ChainError::Shard(ref e) if e == "broken"));
        assert_eq!(ran, [0, 1]);
    }

    #[test]
    fn no_samples_from_the_last_shard_is_an_error() {
        let err = run(2, |_, _| Ok(ShardOutput::Hidden(vec![1.0]))).unwrap_err();
        assert!(matches!(err, ChainError::NoSamples { shards: 2 }));
        assert!(matches!(
            run(0, |_, _| Ok(ShardOutput::Hidden(Vec::new()))),
            Err(ChainError::NoSamples { shards: 0 })
        ));
    }
}
