//! The daemon's configuration: a YAML file whose every field can also be given as a flag, merged (flags
//! win) and then validated into [`Settings`] before anything starts.
//!
//! ```yaml
//! model: /var/lib/ocrnet-edge/model.onnx   # relative paths are relative to this file's folder
//! backend: cpu                             # cpu | trt
//! bind: 127.0.0.1:8080                     # loopback unless you mean otherwise
//! threads: 0                               # CPU backend threads, 0 = one per core
//! queue_depth: 4                           # requests waiting for a worker; more → 503
//! workers: 1                               # inference threads sharing the model
//! body_limit_bytes: 16777216               # larger bodies → 413
//! max_pixels: 16777216                     # larger images (read from the header) → 413
//! request_timeout_ms: 30000                # slower requests → 504
//! bearer_token_file: /etc/ocrnet-edge/token  # or bearer_token: "...": then every /v1 and /metrics
//!                                            # request needs `Authorization: Bearer <token>`
//! ```

use crate::runtime::BackendKind;
use crate::serve::Options;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default bind address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The file as written (and the flags, which fill the same struct). Every field is optional so that the
/// two can be merged; [`Settings::from_config`] applies the defaults and checks the values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// ONNX model (cpu backend) or serialized engine (trt backend).
    pub model: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    /// ADDR:PORT to listen on.
    pub bind: Option<String>,
    /// CPU backend threads (0: one per core).
    pub threads: Option<usize>,
    pub queue_depth: Option<usize>,
    pub workers: Option<usize>,
    pub body_limit_bytes: Option<usize>,
    pub max_pixels: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: field `{field}`{}: {message}", flag_hint(field))]
    Field {
        source_name: String,
        field: &'static str,
        message: String,
    },
}

/// " (--flag)" for a field that also has a command-line flag, since the value may have come from either.
fn flag_hint(field: &str) -> String {
    let flag = match field {
        "model" => "--model",
        "backend" => "--backend",
        "bind" => "--bind",
        "threads" => "--threads",
        "queue_depth" => "--queue-depth",
        "workers" => "--workers",
        "body_limit_bytes" => "--body-limit",
        "max_pixels" => "--max-pixels",
        "request_timeout_ms" => "--request-timeout-ms",
        "bearer_token_file" => "--bearer-token-file",
        _ => return String::new(),
    };
    format!(" ({flag})")
}

impl ServeConfig {
    /// Reads a config file; relative paths in it are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses YAML text; `base` resolves relative paths.
    pub fn parse(text: &str, source_name: &str, base: &Path) -> Result<Self, ConfigError> {
        // An empty file is an empty config, not an error.
        if text.trim().is_empty() {
            return Ok(ServeConfig::default());
        }
        let mut cfg: ServeConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                source_name: source_name.to_string(),
                message: crate::recipe::yaml_message(&e, source_name),
            })?;
        for p in [&mut cfg.model, &mut cfg.bearer_token_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// `self` with every field that `flags` sets replaced by the flag's value.
    pub fn overridden_by(self, flags: ServeConfig) -> ServeConfig {
        // A token given either way on the command line replaces one given either way in the file.
        let (bearer_token, bearer_token_file) =
            if flags.bearer_token.is_some() || flags.bearer_token_file.is_some() {
                (flags.bearer_token, flags.bearer_token_file)
            } else {
                (self.bearer_token, self.bearer_token_file)
            };
        ServeConfig {
            model: flags.model.or(self.model),
            backend: flags.backend.or(self.backend),
            bind: flags.bind.or(self.bind),
            threads: flags.threads.or(self.threads),
            queue_depth: flags.queue_depth.or(self.queue_depth),
            workers: flags.workers.or(self.workers),
            body_limit_bytes: flags.body_limit_bytes.or(self.body_limit_bytes),
            max_pixels: flags.max_pixels.or(self.max_pixels),
            request_timeout_ms: flags.request_timeout_ms.or(self.request_timeout_ms),
            bearer_token,
            bearer_token_file,
        }
    }
}

/// A checked configuration, defaults applied: what the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: PathBuf,
    pub backend: BackendKind,
    pub bind: SocketAddr,
    pub threads: usize,
    pub options: Options,
}

impl Settings {
    /// Applies the defaults and checks every value; `source_name` names where the config came from in
    /// errors ("config.yaml + flags").
    pub fn from_config(cfg: ServeConfig, source_name: &str) -> Result<Self, ConfigError> {
        let field = |field: &'static str, message: String| ConfigError::Field {
            source_name: source_name.to_string(),
            field,
            message,
        };
        let defaults = Options::default();
        let model = cfg.model.ok_or_else(|| {
            field(
                "model",
                "no model given: set `model:` in the config or pass --model".into(),
            )
        })?;
        let bind_text = cfg.bind.unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind: SocketAddr = bind_text.parse().map_err(|_| {
            field(
                "bind",
                format!("'{bind_text}' is not an ADDR:PORT socket address (e.g. 127.0.0.1:8080)"),
            )
        })?;
        let in_range = |name: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(field(name, format!("{v} is out of range {lo}..={hi}")))
            }
        };
        let queue_depth = cfg.queue_depth.unwrap_or(defaults.queue_depth);
        in_range("queue_depth", queue_depth as u64, 1, 65_536)?;
        let workers = cfg.workers.unwrap_or(defaults.workers);
        in_range("workers", workers as u64, 1, 256)?;
        let body_limit = cfg.body_limit_bytes.unwrap_or(defaults.body_limit);
        in_range("body_limit_bytes", body_limit as u64, 64, 1 << 32)?;
        let max_pixels = cfg.max_pixels.unwrap_or(defaults.max_pixels);
        in_range("max_pixels", max_pixels, 1, 1 << 32)?;
        let timeout_ms = cfg
            .request_timeout_ms
            .unwrap_or(defaults.request_timeout.as_millis() as u64);
        in_range("request_timeout_ms", timeout_ms, 1, 3_600_000)?;
        let threads = cfg.threads.unwrap_or(0);
        in_range(
            "threads",
            threads as u64,
            0,
            crate::exec::engine::MAX_THREADS as u64,
        )?;
        let bearer_token = match (cfg.bearer_token, cfg.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "bearer_token",
                    "give either bearer_token or bearer_token_file, not both".into(),
                ))
            }
            (Some(t), None) => Some(check_token(t).map_err(|m| field("bearer_token", m))?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    field(
                        "bearer_token_file",
                        format!("reading {}: {e}", path.display()),
                    )
                })?;
                Some(
                    check_token(text.trim_end_matches(['\n', '\r']).to_string()).map_err(|m| {
                        field("bearer_token_file", format!("{}: {m}", path.display()))
                    })?,
                )
            }
            (None, None) => None,
        };
        Ok(Settings {
            model,
            backend: cfg.backend.unwrap_or(BackendKind::Cpu),
            bind,
            threads,
            options: Options {
                queue_depth,
                workers,
                body_limit,
                max_pixels,
                request_timeout: Duration::from_millis(timeout_ms),
                bearer_token,
            },
        })
    }
}

/// A token must be non-empty visible ASCII (it travels in a header).
fn check_token(t: String) -> Result<String, String> {
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII without spaces".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../deploy/serve.yaml");
        let cfg =
            ServeConfig::parse(text, "deploy/serve.yaml", Path::new("/etc/ocrnet-edge")).unwrap();
        let s = Settings::from_config(cfg, "deploy/serve.yaml").unwrap();
        assert_eq!(s.model, Path::new("/var/lib/ocrnet-edge/model.onnx"));
        assert!(s.bind.ip().is_loopback());
        assert_eq!(s.options, Options::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let e = ServeConfig::parse(
            "model: m.onnx\nqueue_dept: 3\n",
            "c.yaml",
            Path::new("/etc"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.yaml") && e.contains("queue_dept"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file_and_flags_win() {
        let file = ServeConfig::parse(
            "model: m.onnx\nbackend: cpu\nbind: 0.0.0.0:9000\nqueue_depth: 8\n",
            "c.yaml",
            Path::new("/etc/ocr"),
        )
        .unwrap();
        assert_eq!(file.model.as_deref(), Some(Path::new("/etc/ocr/m.onnx")));
        let flags = ServeConfig {
            bind: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let s = Settings::from_config(file.overridden_by(flags), "c.yaml").unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:0");
        assert_eq!(s.options.queue_depth, 8);
        assert_eq!(s.options.workers, 1);
        assert_eq!(s.backend, BackendKind::Cpu);
    }

    #[test]
    fn bad_values_name_their_field() {
        let check = |yaml: &str, want: &str| {
            let cfg = ServeConfig::parse(yaml, "c.yaml", Path::new("")).unwrap();
            let e = Settings::from_config(cfg, "c.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} should name {want}");
        };
        check("queue_depth: 0\n", "model");
        check("model: m\nqueue_depth: 0\n", "queue_depth");
        check("model: m\nbind: localhost\n", "bind");
        check("model: m\nbearer_token: 'a b'\n", "bearer_token");
        check(
            "model: m\nbearer_token_file: /nonexistent/t\n",
            "bearer_token_file",
        );
        let e = ServeConfig::parse("model: m\nbackend: gpu\n", "c.yaml", Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gpu") || e.contains("backend"), "{e}");
        let default = Settings::from_config(
            ServeConfig {
                model: Some("m".into()),
                ..Default::default()
            },
            "flags",
        )
        .unwrap();
        assert!(default.bind.ip().is_loopback());
    }
}
