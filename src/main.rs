//! The `wgserve` command line: `serve` (the OpenAI-compatible server and chat
//! page), `generate` (one prompt, streamed to the terminal), `info` (a
//! model's description and the adapters present).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use wgserve::engine::Engine;
use wgserve::gpu::AdapterChoice;
use wgserve::loader::{EngineConfig, DEFAULT_MODEL};
use wgserve::sampling::SamplingParams;
use wgserve::scheduler::{SeqEvent, SeqRequest};
use wgserve::tokenizer::{
    ChatMessage, IncrementalDecoder, Prompt, PromptEncoder, PromptError, Tokenizer,
};

#[derive(Parser)]
#[command(
    name = "wgserve",
    version,
    about = "A self-hosted LLM server on Vulkan"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the model over HTTP (OpenAI API, WebSocket, chat page).
    Serve(Box<wgserve::api::ServeArgs>),
    /// Generate text for one prompt and stream it to stdout.
    Generate(GenerateArgs),
    /// Describe a model file and the Vulkan adapters on this machine.
    Info {
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
    },
    /// Plan device memory: weights per shard, KV bytes per token, how many
    /// sequences fit. Reads no weights; a HuggingFace directory with only
    /// its config.json is planned as the published checkpoint.
    Plan(PlanArgs),
}

#[derive(Args)]
struct PlanArgs {
    /// GGUF file or HuggingFace model directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Number of devices (one shard each).
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Memory of each device, GiB.
    #[arg(long, default_value_t = 24.0)]
    device_memory_gib: f64,
    /// Context per sequence, tokens (default: the model's).
    #[arg(long)]
    context: Option<usize>,
    /// Keep the KV cache in f32 instead of f16.
    #[arg(long)]
    kv_f32: bool,
    #[arg(long, default_value_t = 512)]
    max_num_batched_tokens: usize,
    #[arg(long, default_value_t = 16)]
    max_num_seqs: usize,
}

#[derive(Args)]
struct GenerateArgs {
    /// GGUF model file, or a HuggingFace model directory.
    #[arg(long, default_value = DEFAULT_MODEL, env = "WGSERVE_MODEL")]
    model: PathBuf,
    /// Raw prompt text (no chat template).
    #[arg(long, group = "input", required_unless_present_any = ["chat", "prompt_ids"])]
    prompt: Option<String>,
    /// A user message, sent through the model's chat template.
    #[arg(long, group = "input")]
    chat: Option<String>,
    /// The prompt as token ids, comma-separated ("1,2,3"); the only input a
    /// model without a tokenizer takes.
    #[arg(long, group = "input", value_delimiter = ',', num_args = 1..)]
    prompt_ids: Option<Vec<u32>>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// Keep generating through end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Adapter: "auto", an index, or part of its name.
    #[arg(long, default_value = "auto", env = "WGSERVE_ADAPTER")]
    adapter: AdapterChoice,
    /// Number of shards (devices) to split the layers over.
    #[arg(long, default_value_t = 1)]
    shards: usize,
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "wgserve=info".into())
}

/// Logs to stderr, and also to `file` when one is configured.
fn init_logging(file: Option<&std::path::Path>) -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let file_layer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter())
        .with(stderr)
        .with(file_layer)
        .init();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        let config = wgserve::api::ServerConfig::load(&args)?;
        init_logging(config.log_file.as_deref())?;
        return actix_rt::System::new().block_on(wgserve::serve::serve(config));
    }
    init_logging(None)?;
    match cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Generate(args) => generate(args),
        Command::Info { model } => info(model),
        Command::Plan(args) => plan(args),
    }
}

fn info(model: PathBuf) -> Result<()> {
    let file = wgserve::loader::open_weights(&model)
        .with_context(|| format!("reading {}", model.display()))?;
    let spec = wgserve::model::spec::ModelSpec::from_gguf(&file)?;
    println!("{spec:#?}");
    // Some models (test models) carry no tokenizer; say so rather than fail.
    match wgserve::loader::open_tokenizer(&model, &file) {
        Ok(Some(tok)) => println!("tokenizer: {}", tok.description()),
        Ok(None) => println!("tokenizer: none (the model takes token ids only)"),
        Err(e) => println!("tokenizer: none usable ({e})"),
    }
    for (i, a) in wgserve::gpu::context::list_adapters().iter().enumerate() {
        println!(
            "adapter {i}: {} ({:?}, {:?})",
            a.name, a.device_type, a.backend
        );
    }
    Ok(())
}

fn plan(a: PlanArgs) -> Result<()> {
    use wgserve::model::plan::{plan, PlanRequest};
    let (metadata, tensors) = wgserve::loader::model_layout(&a.model)
        .with_context(|| format!("reading {}", a.model.display()))?;
    let spec = wgserve::model::spec::ModelSpec::from_directory(&a.model, &metadata, &tensors)?;
    if a.devices == 0 || a.device_memory_gib <= 0.0 {
        bail!("--devices and --device-memory-gib must be positive");
    }
    let req = PlanRequest {
        devices: a.devices,
        device_bytes: (a.device_memory_gib * (1u64 << 30) as f64) as u64,
        context: a.context.unwrap_or(spec.context_length),
        kv_elem_bytes: if a.kv_f32 { 4 } else { 2 },
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_num_seqs: a.max_num_seqs,
        ..Default::default()
    };
    println!(
        "{} ({}, {} layers, {} experts of which {} per token)",
        spec.name,
        spec.arch.gguf_name(),
        spec.n_layers,
        spec.n_experts,
        spec.n_experts_used
    );
    println!("{}", plan(&spec, &tensors, &req));
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let mut engine = load_for_generate(&a)?;
    let tokenizer = engine.tokenizer.take();
    let prompt = generate_prompt(&a, &engine, tokenizer.as_ref())?;
    let sampling = SamplingParams {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        ..Default::default()
    };
    engine
        .scheduler
        .add(
            0,
            SeqRequest {
                prompt: prompt.clone(),
                sampling,
                max_tokens: a.max_tokens,
                stop_ids: engine.stop_ids.clone(),
                ignore_eos: a.ignore_eos,
                logprobs: None,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = run_to_end(&mut engine, tokenizer.as_ref(), !a.json)?;
    report(&a, &engine, &prompt, &run);
    Ok(())
}

/// Loads the model named by `--model` on `--shards` devices, for one sequence.
fn load_for_generate(a: &GenerateArgs) -> Result<Engine> {
    if !a.model.exists() {
        bail!(
            "model {} not found; run scripts/setup to fetch the default model, or pass --model \
             (a GGUF file or a HuggingFace model directory)",
            a.model.display()
        );
    }
    let cfg = EngineConfig {
        model: a.model.clone(),
        devices: vec![a.adapter.clone(); a.shards.max(1)],
        max_num_seqs: 1,
        ..Default::default()
    };
    let t_load = Instant::now();
    let engine = Engine::new(&cfg).context("loading the model")?;
    tracing::info!(
        "loaded {} in {:.2}s on {} ({} KV blocks of {} tokens)",
        engine.info.name,
        t_load.elapsed().as_secs_f64(),
        engine.adapter(),
        engine.info.num_blocks,
        engine.info.block_size
    );
    Ok(engine)
}

/// The prompt's ids, encoded as the server encodes them (the chat template,
/// the BOS rule, the vocabulary and context checks).
fn generate_prompt(
    a: &GenerateArgs,
    engine: &Engine,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<u32>> {
    let chat;
    let prompt = match (&a.prompt, &a.chat, &a.prompt_ids) {
        (_, _, Some(ids)) => Prompt::Ids(ids),
        (Some(p), _, None) => Prompt::Text(p),
        (None, Some(c), None) => {
            chat = [ChatMessage::new("user", c.clone())];
            Prompt::Chat(&chat)
        }
        (None, None, None) => unreachable!("clap requires one"),
    };
    let encoder = PromptEncoder {
        tokenizer,
        chat_format: &engine.chat_format,
        vocab_size: engine.spec.vocab_size,
        max_model_len: engine.info.max_model_len,
    };
    encoder.encode(prompt, true, None).map_err(|e| match e {
        PromptError::NoTokenizer => anyhow::anyhow!(
            "{} has no tokenizer, so it takes token ids only: pass --prompt-ids 1,2,3",
            a.model.display()
        ),
        e => e.into(),
    })
}

/// What one sequence produced, and when.
struct Run {
    ids: Vec<u32>,
    /// The whole text, `tail` included.
    text: String,
    /// Text held back until the end (an incomplete UTF-8 character).
    tail: String,
    start: Instant,
    first_token: Option<Instant>,
    end: Instant,
}

/// Steps the engine until its one sequence finishes; with `stream`, each
/// piece of text goes to stdout as it is decoded.
fn run_to_end(engine: &mut Engine, tokenizer: Option<&Tokenizer>, stream: bool) -> Result<Run> {
    let mut decoder = IncrementalDecoder::new(true);
    let mut ids = Vec::new();
    let mut text = String::new();
    let start = Instant::now();
    let mut first_token = None;
    let stdout = std::io::stdout();
    while engine.scheduler.has_work() {
        for ev in engine.step()? {
            if let SeqEvent::Token { token, .. } = ev {
                first_token.get_or_insert_with(Instant::now);
                ids.push(token);
                let piece = match tokenizer {
                    Some(tok) => decoder.push(tok, token)?,
                    None => String::new(),
                };
                if stream {
                    let mut lock = stdout.lock();
                    let _ = lock.write_all(piece.as_bytes());
                    let _ = lock.flush();
                }
                text.push_str(&piece);
            }
        }
    }
    let tail = decoder.finish();
    text.push_str(&tail);
    Ok(Run {
        ids,
        text,
        tail,
        start,
        first_token,
        end: Instant::now(),
    })
}

/// With `--json`, one object on stdout; else the end of the streamed text
/// and the speeds on stderr.
fn report(a: &GenerateArgs, engine: &Engine, prompt: &[u32], run: &Run) {
    let t_first = run.first_token.unwrap_or(run.end);
    let prefill_s = (t_first - run.start).as_secs_f64();
    let decode_s = (run.end - t_first).as_secs_f64();
    let prefill_tps = prompt.len() as f64 / prefill_s.max(1e-9);
    let decode_tps = run.ids.len().saturating_sub(1) as f64 / decode_s.max(1e-9);
    if a.json {
        let obj = serde_json::json!({
            "prompt_token_ids": prompt,
            "token_ids": run.ids,
            "text": run.text,
            "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps,
            "adapter": engine.adapter(),
        });
        println!("{obj}");
    } else {
        print!("{}", run.tail);
        println!();
        eprintln!(
            "prompt: {} tokens, {:.1} tok/s; decode: {} tokens, {:.2} tok/s ({})",
            prompt.len(),
            prefill_tps,
            run.ids.len(),
            decode_tps,
            engine.adapter()
        );
    }
}
