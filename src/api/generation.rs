//! One API request's backend side: submits its choices (`n` per prompt) to
//! the [`Backend`] as one group, admitted whole or not at all, merges their
//! event streams in arrival order, and cancels every unfinished choice when
//! dropped. Handlers, SSE bodies and WebSocket tasks own one (inside a
//! `job::Job`); dropping it (client gone, stream error, cancel message)
//! both drops the receivers, which the runtime sees within a step, and
//! calls [`Backend::cancel`] so nothing depends on polling.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::ApiError;
use super::params::CompletionJob;
use crate::backend::{Backend, BackendError, Event, RequestId};

type ChoiceEvents = Pin<Box<dyn Stream<Item = (usize, Event)> + Send>>;

/// The running choices of one request.
pub struct Generation {
    backend: Arc<dyn Backend>,
    /// Backend id of each submitted choice, by choice index.
    ids: Vec<RequestId>,
    /// Whether each choice has sent its last event (`Finished` or `Error`).
    done: Vec<bool>,
    events: SelectAll<ChoiceEvents>,
}

impl Generation {
    /// Submits every choice of `job` together. A refusal (full queue, more
    /// choices than the queue could ever hold, bad prompt...) refuses them
    /// all and comes back as the request's error, before any response is
    /// started.
    pub async fn start(backend: Arc<dyn Backend>, job: &CompletionJob) -> Result<Self, ApiError> {
        let requests = (0..job.num_choices())
            .map(|index| job.choice_request(index))
            .collect();
        let accepted = backend.submit_group(requests).await?;
        let mut generation = Generation {
            backend,
            ids: Vec::with_capacity(accepted.len()),
            done: Vec::with_capacity(accepted.len()),
            events: SelectAll::new(),
        };
        for (index, (id, rx)) in accepted.into_iter().enumerate() {
            generation.ids.push(id);
            generation.done.push(false);
            generation.events.push(Box::pin(
                UnboundedReceiverStream::new(rx).map(move |e| (index, e)),
            ));
        }
        Ok(generation)
    }

    pub fn num_choices(&self) -> usize {
        self.ids.len()
    }

    /// The next event of any choice, or `None` once every choice is done.
    /// Cancel-safe (usable in `select!`).
    pub async fn next(&mut self) -> Option<(usize, Event)> {
        match self.events.next().await {
            Some((index, event)) => {
                if matches!(event, Event::Finished { .. } | Event::Error(_)) {
                    self.done[index] = true;
                }
                Some((index, event))
            }
            None => {
                // A stream that closed without its last event: the runtime
                // dropped the request. Report it rather than end quietly.
                let index = self.done.iter().position(|d| !d)?;
                self.done[index] = true;
                Some((
                    index,
                    Event::Error(BackendError::Engine(
                        "the runtime closed the request's stream before it finished".into(),
                    )),
                ))
            }
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        let pending: Vec<RequestId> = self
            .ids
            .iter()
            .zip(&self.done)
            .filter(|(_, done)| !**done)
            .map(|(id, _)| *id)
            .collect();
        if pending.is_empty() {
            return;
        }
        // The receivers drop with `self` right after this; the explicit
        // cancel is for runtimes that only look between steps.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let backend = self.backend.clone();
            handle.spawn(async move {
                for id in pending {
                    backend.cancel(id).await;
                }
            });
        }
    }
}
