//! Docker Compose files to Berth's typed [`Project`].
//!
//! This crate is pure: no IO, no async. The CLI gathers the Compose files and every file they
//! reference into a [`Bundle`] (using [`referenced_files`] and [`referenced_variables`] to know
//! what to send); [`load`] turns the bundle into a [`Project`] in fixed stages, each its own
//! module:
//!
//! 1. `yaml`: parse each file into a generic tree that keeps scalars as written
//!    (anchors and `<<` merges resolved by `serde-saphyr`);
//! 2. `merge`: merge the files in order, later overriding earlier;
//! 3. `interpolate`: substitute `${VAR}` in every string value, with the
//!    client's variables over the bundle's `.env` (`dotenv` parses it);
//! 4. profiles select the enabled services;
//! 5. `schema`: Berth's table of allowed keys; *every* other key is reported by
//!    path in one [`ComposeError::Unsupported`], never silently dropped;
//! 6. `convert` (with `values` for single values): typed
//!    fields, defaults and cross-checks, the first bad value reported as
//!    [`ComposeError::Invalid`] with its path.
//!
//! No input may panic this crate: hostile YAML ends in an error.

mod convert;
mod dotenv;
mod interpolate;
mod merge;
pub mod model;
mod schema;
mod values;
mod yaml;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use model::*;
/// A memory size (`512M`, `1g`, `100mb`, `1.5GiB`, a byte count) in bytes, as Compose reads them.
pub use values::parse_memory;
use yaml::Value;

/// What the CLI sends: the Compose files plus every file they reference, by path relative to
/// the project dir.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bundle {
    /// Names of the Compose files inside `files`, in merge order (later overrides earlier).
    pub compose_files: Vec<String>,
    /// Relative path -> UTF-8 content (Compose files, `.env`, `env_file`s, secrets, configs).
    pub files: BTreeMap<String, String>,
    /// The client's shell variables used for interpolation (they win over `.env`).
    pub env: BTreeMap<String, String>,
    /// Active profiles.
    pub profiles: Vec<String>,
    /// Absolute path of the project dir on the client (relative bind mounts resolve against it).
    pub project_dir: String,
}

/// Why a Compose project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// YAML syntax error etc.: the message includes the line and column when available.
    #[error("{file}: {message}")]
    Syntax {
        /// The file (Compose file or env file).
        file: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A value is invalid; `path` is the key path, e.g. `services.web.ports[0]`.
    #[error("{path}: {message}")]
    Invalid {
        /// Key path of the value.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Keys Berth does not support, each by path; all of them, not just the first.
    #[error("unsupported keys: {}", keys.join(", "))]
    Unsupported {
        /// Key paths, e.g. `services.web.privileged`.
        keys: Vec<String>,
    },
    /// A referenced file is not in the bundle.
    #[error(
        "file {0} is referenced but does not exist in the project directory (or was not sent)"
    )]
    MissingFile(String),
}

/// Joins a key onto a key path (`services` + `web` = `services.web`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn parse_source(name: &str, content: &str) -> Result<Value, ComposeError> {
    match yaml::parse(name, content)? {
        Value::Null => Ok(Value::Map(Vec::new())),
        v @ Value::Map(_) => Ok(v),
        other => Err(ComposeError::Syntax {
            file: name.to_owned(),
            message: format!("the top level must be a mapping, not {}", other.type_name()),
        }),
    }
}

/// The files a set of Compose sources reference, relative to the project dir, normalized
/// (`./a/../b` is `b`) and deduplicated, in order of appearance: `env_file` entries (optional
/// ones too; the CLI skips those that do not exist) and file-based secrets and configs. `.env`
/// is not listed: sending it if present is the caller's business. Paths are taken as written,
/// before interpolation.
pub fn referenced_files(sources: &[(String, String)]) -> Result<Vec<String>, ComposeError> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: &str| {
        let p = values::normalize_path(p);
        if !p.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    };
    for (name, content) in sources {
        let doc = parse_source(name, content)?;
        if let Some(Value::Map(services)) = doc.get("services") {
            for (_, svc) in services {
                match svc.get("env_file") {
                    Some(Value::Scalar(s, _)) => push(s),
                    Some(Value::Seq(items)) => {
                        for item in items {
                            match item {
                                Value::Scalar(s, _) => push(s),
                                Value::Map(_) => {
                                    if let Some(s) = item.get("path").and_then(Value::scalar_text) {
                                        push(s);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for section in ["secrets", "configs"] {
            if let Some(Value::Map(defs)) = doc.get(section) {
                for (_, def) in defs {
                    if let Some(file) = def.get("file").and_then(Value::scalar_text) {
                        push(file);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Variable names the sources need from the client's environment, sorted and deduplicated:
/// those used by `${VAR}` interpolation, bare `KEY` entries of `environment` and `build.args`
/// (their value comes from the environment) and the `environment:` of secrets and configs. Sources that do not
/// parse are scanned as plain text for `${VAR}` forms.
pub fn referenced_variables(sources: &[(String, String)]) -> Vec<String> {
    let mut names = Vec::new();
    for (name, content) in sources {
        let Ok(doc) = parse_source(name, content) else {
            interpolate::collect(content, &mut names);
            continue;
        };
        interpolate::collect_tree(&doc, &mut names);
        if let Some(Value::Map(services)) = doc.get("services") {
            for (_, svc) in services {
                let build_args = svc.get("build").and_then(|b| b.get("args"));
                for section in [svc.get("environment"), build_args] {
                    match section {
                        Some(Value::Seq(items)) => {
                            for item in items {
                                if let Some(s) = item.scalar_text().filter(|s| !s.contains('=')) {
                                    names.push(s.to_owned());
                                }
                            }
                        }
                        Some(Value::Map(entries)) => {
                            for (k, v) in entries {
                                if *v == Value::Null {
                                    names.push(k.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        for section in ["secrets", "configs"] {
            if let Some(Value::Map(defs)) = doc.get(section) {
                for (_, def) in defs {
                    if let Some(var) = def.get("environment").and_then(Value::scalar_text) {
                        names.push(var.to_owned());
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Parses, merges, interpolates and validates the bundle's Compose files.
pub fn load(bundle: &Bundle) -> Result<Project, ComposeError> {
    let files: BTreeMap<String, String> = bundle
        .files
        .iter()
        .map(|(k, v)| (values::normalize_path(k), v.clone()))
        .collect();
    if bundle.compose_files.is_empty() {
        return Err(ComposeError::Invalid {
            path: "compose_files".to_owned(),
            message: "no Compose file given".to_owned(),
        });
    }

    // 1-2: parse and merge.
    let mut doc: Option<Value> = None;
    for name in &bundle.compose_files {
        let key = values::normalize_path(name);
        let content = files
            .get(&key)
            .ok_or_else(|| ComposeError::MissingFile(key.clone()))?;
        let next = parse_source(name, content)?;
        doc = Some(match doc {
            None => next,
            Some(base) => merge::merge(base, next, &[]),
        });
    }
    let mut doc = doc.unwrap_or(Value::Map(Vec::new()));

    // 3: interpolation variables, then interpolation.
    let mut env = BTreeMap::new();
    if let Some(text) = files.get(".env") {
        for (k, v) in dotenv::parse(".env", text)? {
            if let Some(v) = v {
                env.insert(k, v);
            }
        }
    }
    env.extend(bundle.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    interpolate::interpolate_tree(&mut doc, "", &env)?;

    // 4: services enabled by the active profiles.
    let services: &[(String, Value)] = match doc.get("services") {
        None | Some(Value::Null) => &[],
        Some(Value::Map(entries)) => entries,
        Some(other) => {
            return Err(ComposeError::Invalid {
                path: "services".to_owned(),
                message: format!("expected a mapping, got {}", other.type_name()),
            })
        }
    };
    let mut enabled: Vec<(String, &Value)> = Vec::new();
    for (name, def) in services {
        let path = join("services", name);
        let profiles = match def.get("profiles") {
            None => Vec::new(),
            Some(p) => values::string_list(p, &join(&path, "profiles"))?,
        };
        if profiles.is_empty() || profiles.iter().any(|p| bundle.profiles.contains(p)) {
            enabled.push((name.clone(), def));
        }
    }

    // 5: every unsupported key, by path.
    let mut unsupported = Vec::new();
    schema::scan(&doc, &schema::TOP, "", &mut unsupported);
    schema::scan_top_values(&doc, &mut unsupported);
    for (name, def) in &enabled {
        let path = join("services", name);
        schema::scan(def, &schema::SERVICE, &path, &mut unsupported);
    }
    if !unsupported.is_empty() {
        return Err(ComposeError::Unsupported { keys: unsupported });
    }

    // 6: typed model.
    for (name, def) in &enabled {
        if !convert::valid_service_name(name) {
            return Err(ComposeError::Invalid {
                path: join("services", name),
                message: "service names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*".to_owned(),
            });
        }
        if !matches!(def, Value::Map(_)) {
            return Err(ComposeError::Invalid {
                path: join("services", name),
                message: format!("expected a mapping, got {}", def.type_name()),
            });
        }
    }
    let ctx = convert::Ctx {
        env: &env,
        files: &files,
        project_dir: &bundle.project_dir,
    };
    convert::project(&doc, &enabled, &ctx)
}
