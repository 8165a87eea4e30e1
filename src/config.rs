//! The server's configuration: one typed struct ([`ServerConfig`]) read from
//! TOML, with every key overridable by an environment variable
//! (`WGSERVE_<FIELD>`) and a command-line flag ([`ServeArgs`]).
//!
//! Precedence, lowest first: built-in defaults, the TOML file given with
//! `--config`, environment variables, command-line flags. Lists are
//! comma-separated in environment variables and flags. Relative paths are
//! resolved against the working directory (not the config file's folder), so
//! the shipped `configs/*.toml` work when the server is started from the
//! repository root. This module only reads and checks settings; the actors
//! and the API layer decide what each one does.

use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use serde::{Deserialize, Serialize};

/// Everything `wgserve serve` needs, field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. `0.0.0.0` exposes the server to the network.
    pub host: String,
    /// TCP port to listen on (0 picks a free one).
    pub port: u16,
    /// The GGUF file to serve.
    pub model: PathBuf,
    /// The name clients pass as `model` and `/v1/models` lists; by default
    /// the GGUF's `general.name` (or the file stem where that is missing).
    pub served_model_name: Option<String>,
    /// One entry per model shard, in layer order: `"auto"` (the best
    /// adapter), an adapter index (`"0"`, `"1"`), or part of an adapter's
    /// name (`"4090"`, `"llvmpipe"`). `["auto", "auto"]` splits the layers into
    /// two shards on the same adapter.
    pub devices: Vec<String>,
    /// Tokens per KV-cache page.
    pub block_size: usize,
    /// Device memory for the KV cache of each shard, MiB; 0 sizes it from
    /// the GPU's memory (`gpu_memory_utilization`, as vLLM does), or 256
    /// MiB on a CPU driver.
    pub kv_memory_mib: usize,
    /// With `kv_memory_mib = 0`: the fraction of each GPU's memory wgserve
    /// may use (weights, activations and the KV cache together).
    pub gpu_memory_utilization: f64,
    /// Token budget of one engine step (prefill chunks and decodes together).
    pub max_num_batched_tokens: usize,
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Context window; by default the model's own. Longer prompts are
    /// rejected, never truncated.
    pub max_model_len: Option<usize>,
    /// Requests that may wait for admission; the next one gets 429.
    pub max_queue: usize,
    /// Largest request body (and WebSocket message) accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// Bearer keys; empty disables authentication. `/`, the page's files
    /// and `/health` never need one.
    pub api_keys: Vec<String>,
    /// Origins allowed to call the API from a browser (`"*"` for any); empty
    /// sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Also write logs to this file (they always go to stderr).
    pub log_file: Option<PathBuf>,
    /// Seconds between SSE keep-alive comments while a stream has nothing
    /// else to send (queued or prefilling).
    pub keepalive_secs: u64,
    /// Reuse the KV cache of full blocks shared with earlier prompts.
    pub enable_prefix_caching: bool,
    /// Tokenizer worker threads.
    pub tokenizer_threads: usize,
    /// Folder of the chat page's static files, served at `/`.
    pub web_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            model: PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            served_model_name: None,
            devices: vec!["auto".into()],
            block_size: 16,
            kv_memory_mib: 0,
            gpu_memory_utilization: 0.9,
            max_num_batched_tokens: 512,
            max_num_seqs: 16,
            max_model_len: None,
            max_queue: 64,
            max_body_bytes: 1 << 20,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            log_file: None,
            keepalive_secs: 5,
            enable_prefix_caching: true,
            tokenizer_threads: 2,
            web_dir: PathBuf::from("web"),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{field}` {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Command-line flags of `wgserve serve`; each also reads `WGSERVE_<FIELD>`
/// from the environment. A flag that is absent leaves the TOML (or default)
/// value in place.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file; its keys are the long flags' names with `_`.
    #[arg(long, env = "WGSERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "WGSERVE_HOST")]
    pub host: Option<String>,
    /// TCP port [default: 8080].
    #[arg(long, env = "WGSERVE_PORT")]
    pub port: Option<u16>,
    /// GGUF model file [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long, env = "WGSERVE_MODEL", value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Model name for clients [default: the GGUF's name].
    #[arg(long, env = "WGSERVE_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    /// Comma-separated adapters, one per shard [default: auto].
    #[arg(long, env = "WGSERVE_DEVICES", value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Tokens per KV page [default: 16].
    #[arg(long, env = "WGSERVE_BLOCK_SIZE")]
    pub block_size: Option<usize>,
    /// KV-cache memory per shard, MiB; 0 = from the GPU's memory [default: 0].
    #[arg(long, env = "WGSERVE_KV_MEMORY_MIB")]
    pub kv_memory_mib: Option<usize>,
    /// Fraction of each GPU's memory to use when kv_memory_mib is 0 [default: 0.9].
    #[arg(long, env = "WGSERVE_GPU_MEMORY_UTILIZATION")]
    pub gpu_memory_utilization: Option<f64>,
    /// Token budget per engine step [default: 512].
    #[arg(long, env = "WGSERVE_MAX_NUM_BATCHED_TOKENS")]
    pub max_num_batched_tokens: Option<usize>,
    /// Most running sequences [default: 16].
    #[arg(long, env = "WGSERVE_MAX_NUM_SEQS")]
    pub max_num_seqs: Option<usize>,
    /// Context window [default: the model's].
    #[arg(long, env = "WGSERVE_MAX_MODEL_LEN")]
    pub max_model_len: Option<usize>,
    /// Waiting requests before 429 [default: 64].
    #[arg(long, env = "WGSERVE_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Largest request body, bytes [default: 1048576].
    #[arg(long, env = "WGSERVE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Comma-separated bearer keys; empty disables auth.
    #[arg(
        long,
        alias = "api-key",
        env = "WGSERVE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Option<Vec<String>>,
    /// Comma-separated CORS origins (`*` for any).
    #[arg(long, env = "WGSERVE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Also log to this file.
    #[arg(long, env = "WGSERVE_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Seconds between SSE keep-alive comments [default: 5].
    #[arg(long, env = "WGSERVE_KEEPALIVE_SECS")]
    pub keepalive_secs: Option<u64>,
    /// Prefix caching on or off [default: true].
    #[arg(long, env = "WGSERVE_ENABLE_PREFIX_CACHING", value_parser = BoolishValueParser::new())]
    pub enable_prefix_caching: Option<bool>,
    /// Tokenizer threads [default: 2].
    #[arg(long, env = "WGSERVE_TOKENIZER_THREADS")]
    pub tokenizer_threads: Option<usize>,
    /// Folder of the chat page [default: web].
    #[arg(long, env = "WGSERVE_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
}

/// Lists given as one comma-separated string keep no empty items, so
/// `--api-keys ""` (or `WGSERVE_API_KEYS=`) means "none".
fn clean_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl ServerConfig {
    /// Defaults, then the `--config` file, then the environment and flags
    /// (clap has already merged those two, flags winning), then checks.
    pub fn load(args: &ServeArgs) -> Result<ServerConfig, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => ServerConfig::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file on top of the defaults (no overrides, no checks).
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text on top of the defaults; unknown keys are errors so a
    /// typo does not silently keep a default.
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Overlays every flag (or environment variable) that was given.
    pub fn apply(&mut self, args: &ServeArgs) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &args.$field {
                    self.$field = v.clone();
                }
            )*};
        }
        macro_rules! set_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = &args.$field {
                    self.$field = Some(v.clone());
                }
            )*};
        }
        set!(
            host,
            port,
            model,
            block_size,
            kv_memory_mib,
            gpu_memory_utilization,
            max_num_batched_tokens,
            max_num_seqs,
            max_queue,
            max_body_bytes,
            keepalive_secs,
            enable_prefix_caching,
            tokenizer_threads,
            web_dir
        );
        set_opt!(served_model_name, max_model_len, log_file);
        if let Some(v) = &args.devices {
            self.devices = clean_list(v);
        }
        if let Some(v) = &args.api_keys {
            self.api_keys = clean_list(v);
        }
        if let Some(v) = &args.cors_origins {
            self.cors_origins = clean_list(v);
        }
    }

    /// Rejects values no component could use, naming the key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, message: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                field,
                message: message.to_string(),
            })
        }
        if self.host.trim().is_empty() {
            return invalid("host", "is empty; use 127.0.0.1 or 0.0.0.0");
        }
        if self.devices.is_empty() || self.devices.iter().any(|d| d.trim().is_empty()) {
            return invalid(
                "devices",
                "needs at least one non-empty entry, e.g. [\"auto\"]",
            );
        }
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            return invalid("gpu_memory_utilization", "must be in (0, 1], e.g. 0.9");
        }
        let positive: [(&'static str, usize); 5] = [
            ("block_size", self.block_size),
            ("max_num_batched_tokens", self.max_num_batched_tokens),
            ("max_num_seqs", self.max_num_seqs),
            ("tokenizer_threads", self.tokenizer_threads),
            ("max_body_bytes", self.max_body_bytes),
        ];
        for (field, value) in positive {
            if value == 0 {
                return invalid(field, "must be at least 1");
            }
        }
        if !self.block_size.is_power_of_two() {
            return invalid("block_size", "must be a power of two (8, 16, 32...)");
        }
        if self.max_model_len == Some(0) {
            return invalid("max_model_len", "must be at least 1 (or left out)");
        }
        if self.keepalive_secs == 0 {
            return invalid("keepalive_secs", "must be at least 1 second");
        }
        if matches!(&self.served_model_name, Some(name) if name.trim().is_empty()) {
            return invalid(
                "served_model_name",
                "is empty; leave it out to use the GGUF's name",
            );
        }
        if self.api_keys.iter().any(|k| k.trim().is_empty()) {
            return invalid("api_keys", "contains an empty key");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["wgserve"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    /// The only test that touches `WGSERVE_*` variables, so no other test
    /// can see them half-set.
    #[test]
    fn precedence_is_defaults_then_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "port = 9000\nhost = \"0.0.0.0\"\nmax_queue = 7\nkeepalive_secs = 3\n\
             devices = [\"auto\", \"auto\"]\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();

        // Defaults only.
        let c = ServerConfig::load(&parse(&[])).unwrap();
        assert_eq!(c, ServerConfig::default());

        // The file overrides the defaults it names, and only those.
        let c = ServerConfig::load(&parse(&["--config", file_arg])).unwrap();
        assert_eq!((c.port, c.host.as_str(), c.max_queue), (9000, "0.0.0.0", 7));
        assert_eq!(c.devices, ["auto", "auto"]);
        assert_eq!(c.block_size, 16);

        // The environment overrides the file; flags override the environment.
        std::env::set_var("WGSERVE_PORT", "9100");
        std::env::set_var("WGSERVE_MAX_QUEUE", "11");
        std::env::set_var("WGSERVE_API_KEYS", "k1,k2");
        std::env::set_var("WGSERVE_ENABLE_PREFIX_CACHING", "no");
        let c = ServerConfig::load(&parse(&["--config", file_arg, "--max-queue", "12"]));
        for var in [
            "WGSERVE_PORT",
            "WGSERVE_MAX_QUEUE",
            "WGSERVE_API_KEYS",
            "WGSERVE_ENABLE_PREFIX_CACHING",
        ] {
            std::env::remove_var(var);
        }
        let c = c.unwrap();
        assert_eq!(c.port, 9100, "env beats the file");
        assert_eq!(c.max_queue, 12, "the flag beats env");
        assert_eq!(c.keepalive_secs, 3, "the file beats the default");
        assert_eq!(c.api_keys, ["k1", "k2"], "env lists are comma-separated");
        assert!(!c.enable_prefix_caching);
    }

    #[test]
    fn flags_set_lists_and_options() {
        let c = ServerConfig::load(&parse(&[
            "--devices",
            "0,1",
            "--cors-origins",
            "*",
            "--max-model-len",
            "2048",
            "--served-model-name",
            "smol",
            "--enable-prefix-caching",
            "false",
        ]))
        .unwrap();
        assert_eq!(c.devices, ["0", "1"]);
        assert_eq!(c.cors_origins, ["*"]);
        assert_eq!(c.max_model_len, Some(2048));
        assert_eq!(c.served_model_name.as_deref(), Some("smol"));
        assert!(!c.enable_prefix_caching);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = ServerConfig::from_toml("prot = 1\n").unwrap_err();
        assert!(err.contains("prot"), "{err}");
        let err = ServerConfig::from_toml("port = \"x\"\n").unwrap_err();
        assert!(err.contains("port"), "{err}");

        let mut c = ServerConfig {
            block_size: 12,
            ..ServerConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("block_size") && err.contains("power of two"),
            "{err}"
        );
        c.block_size = 16;
        c.devices.clear();
        assert!(c.validate().unwrap_err().to_string().contains("devices"));
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = ServerConfig::load(&ServeArgs {
            config: Some(PathBuf::from("/nonexistent/wgserve.toml")),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/wgserve.toml"));
    }

    /// The shipped configs parse, name every key (so they document all of
    /// them), and pass the checks.
    #[test]
    fn shipped_configs_are_complete_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut keys: Vec<String> = match toml::Value::try_from(ServerConfig::default()).unwrap() {
            toml::Value::Table(t) => t.keys().cloned().collect(),
            _ => unreachable!(),
        };
        // Options left unset are not serialized; the files show them commented out.
        keys.extend(["served_model_name", "max_model_len", "log_file"].map(String::from));
        for name in ["default.toml", "two-shards.toml", "example-large.toml"] {
            let path = dir.join(name);
            let c = ServerConfig::from_file(&path).unwrap();
            c.validate().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            for key in &keys {
                assert!(
                    text.lines().any(|l| l
                        .trim_start()
                        .trim_start_matches('#')
                        .trim_start()
                        .starts_with(&format!("{key} "))),
                    "{name} does not mention `{key}`"
                );
            }
        }
        let default = ServerConfig::from_file(&dir.join("default.toml")).unwrap();
        assert_eq!(default, ServerConfig::default());
        let two = ServerConfig::from_file(&dir.join("two-shards.toml")).unwrap();
        assert_eq!(two.devices.len(), 2);
    }
}
