//! `wgserve serve`: wires the config, the model, the actor runtime and the
//! HTTP server together. The server listens at once (so `/health` can say
//! 503 while the model loads); the model loads on a blocking thread and the
//! runtime starts when it is ready. If the runtime later fails for good (a
//! shard or the Scheduler panicked, a device was lost), `/health` says so
//! and, once the requests it held have had their error, the process exits
//! non-zero so systemd or Kubernetes restarts it instead of keeping a zombie.
//! This module owns only that wiring.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::actors::runtime::{Runtime, RuntimeOptions};
use crate::actors::Fault;
use crate::api::ServerConfig;
use crate::backend::{
    Accepted, Backend, BackendError, BoxFuture, GenerateRequest, MetricsSnapshot, ModelCard,
    PromptInput, RequestId,
};
use crate::gpu::AdapterChoice;
use crate::loader::EngineConfig;

/// The engine settings a server config asks for.
pub fn engine_config(c: &ServerConfig) -> EngineConfig {
    EngineConfig {
        model: c.model.clone(),
        devices: c
            .devices
            .iter()
            .map(|d| d.parse::<AdapterChoice>().unwrap_or_default())
            .collect(),
        block_size: c.block_size as u32,
        kv_memory_bytes: (c.kv_memory_mib as u64) << 20,
        gpu_memory_utilization: c.gpu_memory_utilization,
        max_num_batched_tokens: c.max_num_batched_tokens,
        max_num_seqs: c.max_num_seqs,
        max_model_len: c.max_model_len,
        enable_prefix_caching: c.enable_prefix_caching,
        quantize_activations: true,
    }
}

/// A backend that answers 503 until the runtime it wraps is set.
pub struct LazyBackend {
    runtime: OnceLock<Runtime>,
    /// What `/v1/models` says before the model is loaded.
    placeholder: ModelCard,
}

impl LazyBackend {
    pub fn new(model: &Path, served_name: Option<String>) -> Self {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Self {
            runtime: OnceLock::new(),
            placeholder: ModelCard {
                id: served_name.unwrap_or(stem),
                path: model.display().to_string(),
                max_model_len: 0,
                adapters: Vec::new(),
                created: 0,
            },
        }
    }

    pub fn set(&self, runtime: Runtime) {
        let _ = self.runtime.set(runtime);
    }

    fn get(&self) -> Result<&Runtime, BackendError> {
        self.runtime
            .get()
            .ok_or_else(|| BackendError::Unavailable("the model is still loading".into()))
    }
}

impl Backend for LazyBackend {
    fn submit_group(
        &self,
        requests: Vec<GenerateRequest>,
    ) -> BoxFuture<'_, Result<Vec<Accepted>, BackendError>> {
        match self.get() {
            Ok(r) => r.submit_group(requests),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn cancel(&self, id: RequestId) -> BoxFuture<'_, ()> {
        match self.get() {
            Ok(r) => r.cancel(id),
            Err(_) => Box::pin(async {}),
        }
    }

    fn tokenize(&self, prompt: PromptInput) -> BoxFuture<'_, Result<Vec<u32>, BackendError>> {
        match self.get() {
            Ok(r) => r.tokenize(prompt),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn detokenize(&self, ids: Vec<u32>) -> BoxFuture<'_, Result<String, BackendError>> {
        match self.get() {
            Ok(r) => r.detokenize(ids),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn metrics(&self) -> BoxFuture<'_, MetricsSnapshot> {
        match self.get() {
            Ok(r) => r.metrics(),
            Err(_) => Box::pin(async { MetricsSnapshot::default() }),
        }
    }

    fn model(&self) -> ModelCard {
        match self.get() {
            Ok(r) => r.model(),
            Err(_) => self.placeholder.clone(),
        }
    }

    fn ready(&self) -> bool {
        self.get().is_ok_and(|r| r.ready())
    }

    fn failure(&self) -> Option<String> {
        self.get().ok().and_then(|r| r.failure())
    }
}

/// How long a failed runtime's server stays up before it stops: the
/// requests it held have had their error events by then (they are sent when
/// the failure is seen) and this leaves time to write them out and for
/// `/health` to say why. Stopping then waits for open responses as on
/// SIGTERM.
const FAILED_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Serves until stopped: binds, loads the model in the background, starts
/// the runtime. Must run inside an actix `System`.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    // Clients name the model by its file name unless the config says otherwise.
    let served_name = config.served_model_name.clone().or_else(|| {
        config
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    });
    let backend = Arc::new(LazyBackend::new(&config.model, served_name.clone()));
    let (server, addrs) = crate::api::bind(config.clone(), backend.clone())?;
    for addr in &addrs {
        tracing::info!(
            "listening on http://{addr} (loading {})",
            config.model.display()
        );
    }
    let engine_cfg = engine_config(&config);
    let fault = Fault::from_env().map_err(anyhow::Error::msg)?;
    if let Some(fault) = fault {
        tracing::warn!(
            "{}={fault}: a test fault will be injected; never set this in production",
            Fault::ENV
        );
    }
    let opts = RuntimeOptions {
        max_queue: config.max_queue,
        tokenizer_threads: config.tokenizer_threads,
        served_model_name: served_name,
        fault,
    };
    let handle = server.handle();
    let loader = backend.clone();
    // Why the process must exit non-zero, if it must.
    let failed: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let failed_in_loader = failed.clone();
    let model_path = config.model.display().to_string();
    actix_rt::spawn(async move {
        let loaded = actix_rt::task::spawn_blocking(move || crate::loader::load(&engine_cfg)).await;
        match loaded {
            Ok(Ok(model)) => {
                let i = &model.info;
                tracing::info!(
                    "model {} ready on {}: weights {} MiB, KV pool {} blocks of {} tokens ({} MiB), context {}",
                    i.name,
                    i.adapters.join(", "),
                    i.weight_bytes >> 20,
                    i.num_blocks,
                    i.block_size,
                    i.kv_bytes >> 20,
                    i.max_model_len
                );
                let runtime = Runtime::start(model, opts);
                let health = runtime.health().clone();
                loader.set(runtime);
                for addr in &addrs {
                    println!("wgserve is ready: http://{addr}/");
                }
                // Pending for as long as the runtime is healthy.
                let reason = health.failed().await;
                tracing::error!(
                    "the runtime failed ({reason}); stopping in {FAILED_EXIT_GRACE:?} to be restarted"
                );
                let _ = failed_in_loader.set(format!("the runtime failed: {reason}"));
                actix_rt::time::sleep(FAILED_EXIT_GRACE).await;
                handle.stop(true).await;
            }
            Ok(Err(e)) => {
                tracing::error!("could not load the model: {e}");
                let _ = failed_in_loader.set(format!("the model {model_path} could not be loaded"));
                handle.stop(false).await;
            }
            Err(e) => {
                tracing::error!("the model loader panicked: {e}");
                let _ = failed_in_loader.set(format!("the model {model_path} could not be loaded"));
                handle.stop(false).await;
            }
        }
    });
    server.await?;
    if let Some(reason) = failed.get() {
        anyhow::bail!("{reason}");
    }
    Ok(())
}
