//! The pipeline file, `berth.pipeline.yaml`: what a build runs, step by step.
//!
//! ```yaml
//! steps:
//!   - name: test
//!     image: toolbox:1
//!     run: ["sh ./test.sh"]     # each command runs with `sh -c`, in a container of `image`
//!     env: { K: V }
//!     workdir: /workspace       # default /workspace
//!     timeout: 10m
//!   - name: image
//!     build: { dockerfile: Dockerfile, context: ., args: {K: V}, target: stage }
//! ```
//!
//! Rules it keeps:
//! - Parsed with `serde-saphyr` (`strict_booleans`, leading-zero and underscored numbers kept
//!   as strings, so `env` values are what was written). **Unknown keys are refused by name**
//!   (`unknown field `imgae``), at every level.
//! - A step is either a `run` step (`image` + `run`, optional `env`, `workdir`, `timeout`) or a
//!   `build` step (`build`, optional `timeout`); mixing the two is refused. Step names are
//!   unique, 1–63 characters of `a-z0-9_-`.
//! - A pipeline has at least one step and at least one `build` step: the **last** `build`
//!   step's image is the version's image.
//! - `context` and `dockerfile` are relative paths without `..`; the Dockerfile path is
//!   relative to the context (as `docker build -f` inside the context).
//! - Durations are `90`, `90s`, `10m`, `1h30m`, `500ms`; zero is refused.
//! - No pipeline file: [`Pipeline::default_pipeline`], one `build` step named `build` with
//!   `Dockerfile` in the root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::source::validate_rel_path;

/// The file name looked for at the root of the source (or its `path`).
pub const PIPELINE_FILE: &str = "berth.pipeline.yaml";

/// The working directory of `run` steps and where the workspace is mounted.
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// A parsed, validated pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// The service's API contract: an OpenAPI file (YAML or JSON), relative to the source's
    /// root (docs/lifecycle.md). Kept with the version for its review.
    pub contract: Option<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Unique name, `a-z0-9_-`.
    pub name: String,
    /// Kill the step after this long; `None` uses the builder's default.
    pub timeout: Option<Duration>,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Run commands in a container.
    Run(RunStep),
    /// Build an image from a Dockerfile.
    Build(BuildStep),
}

/// Commands run in a container of `image`, with the workspace mounted at `/workspace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The image (must exist on the engine: nothing is pulled).
    pub image: String,
    /// Shell commands, run in order by one `sh -c` with `set -e` (see the runner).
    pub commands: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory in the container; default `/workspace`.
    pub workdir: String,
    /// A JUnit XML report the step writes, relative to the workspace (`reports: {junit: PATH}`),
    /// read after the step for the version's review.
    pub junit: Option<String>,
}

/// An image build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStep {
    /// The Dockerfile, relative to the context; default `Dockerfile`.
    pub dockerfile: String,
    /// The context directory, relative to the source; default `.`.
    pub context: String,
    /// Build arguments (`ARG`).
    pub args: BTreeMap<String, String>,
    /// The stage to build, if not the last.
    pub target: Option<String>,
}

/// Why a pipeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not YAML of the expected shape; the message names the unknown key or the wrong type and
    /// where it is.
    #[error("{PIPELINE_FILE}: {0}")]
    Syntax(String),
    /// A rule about steps is broken (names, kinds, paths, durations).
    #[error("{PIPELINE_FILE}: {0}")]
    Invalid(String),
}

impl Pipeline {
    /// The pipeline used when the source has no pipeline file: build `Dockerfile` in the root.
    #[must_use]
    pub fn default_pipeline() -> Pipeline {
        Pipeline {
            steps: vec![Step {
                name: "build".into(),
                timeout: None,
                kind: StepKind::Build(BuildStep {
                    dockerfile: "Dockerfile".into(),
                    context: ".".into(),
                    args: BTreeMap::new(),
                    target: None,
                }),
            }],
            contract: None,
        }
    }

    /// Parses and validates a pipeline file's text.
    ///
    /// # Errors
    /// [`PipelineError::Syntax`] for YAML or shape errors (unknown keys by name),
    /// [`PipelineError::Invalid`] for broken rules.
    pub fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        let options = serde_saphyr::options! {
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
            underscored_numbers_as_strings: true,
            with_snippet: false,
        };
        let raw: RawPipeline = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let mut message = e.to_string();
            if let Some(loc) = e.location() {
                if loc.line() > 0 && !message.contains(&format!("line {}", loc.line())) {
                    message = format!("line {} column {}: {message}", loc.line(), loc.column());
                }
            }
            PipelineError::Syntax(message)
        })?;
        raw.validate()
    }

    /// The index of the last `build` step (the one whose image becomes the version).
    #[must_use]
    pub fn final_build(&self) -> Option<usize> {
        self.steps
            .iter()
            .rposition(|s| matches!(s.kind, StepKind::Build(_)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    steps: Vec<RawStep>,
    #[serde(default)]
    contract: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    run: Option<Vec<String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    timeout: Option<Scalar>,
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default)]
    reports: Option<RawReports>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    junit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    #[serde(default)]
    dockerfile: Option<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    args: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    target: Option<String>,
}

/// A YAML scalar kept as text (strings, numbers and booleans all become their spelling).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn scalars(map: Option<BTreeMap<String, Scalar>>) -> BTreeMap<String, String> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

impl RawPipeline {
    fn validate(self) -> Result<Pipeline, PipelineError> {
        let invalid = PipelineError::Invalid;
        if self.steps.is_empty() {
            return Err(invalid("`steps` is empty".into()));
        }
        let mut names = BTreeSet::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for raw in self.steps {
            let name = raw.name.clone();
            if !valid_step_name(&name) {
                return Err(invalid(format!(
                    "step name {name:?}: use 1-63 characters of a-z, 0-9, `_` and `-`"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("step name {name:?} is used twice")));
            }
            let step_err = |m: String| invalid(format!("step {name:?}: {m}"));
            let timeout = match &raw.timeout {
                None => None,
                Some(s) => Some(parse_duration(&s.0).map_err(step_err)?),
            };
            let kind = match (raw.build, raw.run) {
                (Some(_), Some(_)) => {
                    return Err(step_err("has both `run` and `build`; use two steps".into()))
                }
                (None, None) => {
                    return Err(step_err("needs `run` (with `image`) or `build`".into()))
                }
                (Some(b), None) => {
                    for (key, set) in [
                        ("image", raw.image.is_some()),
                        ("env", raw.env.is_some()),
                        ("workdir", raw.workdir.is_some()),
                        ("reports", raw.reports.is_some()),
                    ] {
                        if set {
                            return Err(step_err(format!(
                                "`{key}` applies to `run` steps only, not `build`"
                            )));
                        }
                    }
                    let context = b.context.unwrap_or_else(|| ".".into());
                    let dockerfile = b.dockerfile.unwrap_or_else(|| "Dockerfile".into());
                    for (key, p) in [("context", &context), ("dockerfile", &dockerfile)] {
                        validate_rel_path(p).map_err(|m| step_err(format!("`{key}`: {m}")))?;
                    }
                    if dockerfile.trim().is_empty() {
                        return Err(step_err("`dockerfile` is empty".into()));
                    }
                    StepKind::Build(BuildStep {
                        dockerfile,
                        context,
                        args: scalars(b.args),
                        target: b.target.filter(|t| !t.is_empty()),
                    })
                }
                (None, Some(commands)) => {
                    let image = raw
                        .image
                        .filter(|i| !i.trim().is_empty())
                        .ok_or_else(|| step_err("a `run` step needs an `image`".into()))?;
                    if commands.is_empty() || commands.iter().any(|c| c.trim().is_empty()) {
                        return Err(step_err(
                            "`run` needs at least one non-empty command".into(),
                        ));
                    }
                    let env = scalars(raw.env);
                    if let Some(k) = env.keys().find(|k| !valid_env_name(k)) {
                        return Err(step_err(format!("env name {k:?} is not a variable name")));
                    }
                    let workdir = raw.workdir.unwrap_or_else(|| WORKSPACE_MOUNT.into());
                    if !workdir.starts_with('/') {
                        return Err(step_err("`workdir` must be an absolute path".into()));
                    }
                    let junit = match raw.reports {
                        None => None,
                        Some(r) => {
                            validate_rel_path(&r.junit)
                                .map_err(|m| step_err(format!("`reports.junit`: {m}")))?;
                            Some(r.junit)
                        }
                    };
                    StepKind::Run(RunStep {
                        image,
                        commands,
                        env,
                        workdir,
                        junit,
                    })
                }
            };
            steps.push(Step {
                name,
                timeout,
                kind,
            });
        }
        if let Some(c) = &self.contract {
            validate_rel_path(c).map_err(|m| invalid(format!("`contract`: {m}")))?;
        }
        let pipeline = Pipeline {
            steps,
            contract: self.contract,
        };
        if pipeline.final_build().is_none() {
            return Err(invalid(
                "no `build` step: a pipeline must produce an image".into(),
            ));
        }
        Ok(pipeline)
    }
}

fn valid_step_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn valid_env_name(n: &str) -> bool {
    let mut bytes = n.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses `90` (seconds), `90s`, `10m`, `1h30m`, `500ms`. Zero is refused.
///
/// # Errors
/// A message naming the bad text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("bad duration {text:?} (examples: 90s, 10m, 1h30m, 500ms)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    if let Ok(secs) = s.parse::<u64>() {
        total = Duration::from_secs(secs);
    } else {
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let part = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(part);
            rest = &rest[unit_len..];
        }
    }
    if total.is_zero() {
        return Err(format!("duration {text:?} must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
steps:
  - name: test
    image: toolbox:1
    run: ["sh ./test.sh", "echo done"]
    env: { K: V, N: 0022, B: yes, I: 3 }
    timeout: 10m
  - name: image
    build: { dockerfile: docker/Dockerfile, context: ., args: {A: 1}, target: stage }
"#;

    #[test]
    fn parses_the_documented_example() {
        let p = Pipeline::parse(FULL).unwrap();
        assert_eq!(p.steps.len(), 2);
        let StepKind::Run(run) = &p.steps[0].kind else {
            panic!("not run")
        };
        assert_eq!(run.image, "toolbox:1");
        assert_eq!(run.commands, vec!["sh ./test.sh", "echo done"]);
        assert_eq!(run.workdir, "/workspace");
        assert_eq!(run.env["N"], "0022");
        assert_eq!(run.env["B"], "yes");
        assert_eq!(run.env["I"], "3");
        assert_eq!(p.steps[0].timeout, Some(Duration::from_secs(600)));
        let StepKind::Build(b) = &p.steps[1].kind else {
            panic!("not build")
        };
        assert_eq!(b.dockerfile, "docker/Dockerfile");
        assert_eq!(b.args["A"], "1");
        assert_eq!(b.target.as_deref(), Some("stage"));
        assert_eq!(p.final_build(), Some(1));
    }

    #[test]
    fn reports_and_contract() {
        let p = Pipeline::parse(
            "contract: api/openapi.yaml\nsteps:\n  - name: test\n    image: t\n    run: [./t]\n    reports: { junit: out/junit.xml }\n  - name: image\n    build: {}\n",
        )
        .unwrap();
        assert_eq!(p.contract.as_deref(), Some("api/openapi.yaml"));
        let StepKind::Run(r) = &p.steps[0].kind else {
            panic!("not run")
        };
        assert_eq!(r.junit.as_deref(), Some("out/junit.xml"));
        for (text, needle) in [
            ("contract: ../x.yaml\nsteps:\n  - name: a\n    build: {}\n", "`contract`"),
            (
                "steps:\n  - name: a\n    build: {}\n    reports: { junit: r.xml }\n",
                "`reports` applies to `run` steps only",
            ),
            (
                "steps:\n  - name: t\n    image: t\n    run: [x]\n    reports: { junit: /abs.xml }\n  - name: a\n    build: {}\n",
                "`reports.junit`",
            ),
        ] {
            let err = Pipeline::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = Pipeline::parse("steps:\n  - name: t\n    image: t\n    run: [x]\n    reports: { tap: r }\n  - name: a\n    build: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tap"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            ("steps: []\nversion: 2\n", "version"),
            ("steps:\n  - name: a\n    imgae: x\n    run: [x]\n", "imgae"),
            (
                "steps:\n  - name: a\n    build: { dockerfil: D }\n",
                "dockerfil",
            ),
        ] {
            let err = Pipeline::parse(text).unwrap_err();
            assert!(
                matches!(&err, PipelineError::Syntax(m) if m.contains(key)),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn rules_are_enforced() {
        for (text, needle) in [
            ("steps: []\n", "empty"),
            ("steps:\n  - name: a\n    image: x\n    run: [ls]\n", "no `build` step"),
            ("steps:\n  - name: A\n    build: {}\n", "step name"),
            (
                "steps:\n  - name: a\n    build: {}\n  - name: a\n    build: {}\n",
                "twice",
            ),
            ("steps:\n  - name: a\n    run: [ls]\n    build: {}\n", "both"),
            ("steps:\n  - name: a\n    run: [ls]\n", "needs an `image`"),
            ("steps:\n  - name: a\n", "needs `run`"),
            ("steps:\n  - name: a\n    image: x\n    build: {}\n", "`image`"),
            (
                "steps:\n  - name: a\n    build: { context: ../up }\n",
                "`context`",
            ),
            (
                "steps:\n  - name: a\n    timeout: 0s\n    build: {}\n",
                "more than zero",
            ),
            (
                "steps:\n  - name: a\n    image: x\n    run: [ls]\n    workdir: rel\n  - name: b\n    build: {}\n",
                "absolute",
            ),
            (
                "steps:\n  - name: a\n    image: x\n    run: [ls]\n    env: {1X: y}\n  - name: b\n    build: {}\n",
                "variable name",
            ),
        ] {
            let err = Pipeline::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn default_pipeline_builds_the_dockerfile() {
        let p = Pipeline::default_pipeline();
        assert_eq!(p.final_build(), Some(0));
        assert!(matches!(&p.steps[0].kind, StepKind::Build(b) if b.dockerfile == "Dockerfile"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "m", "10x", "1.5s", "-1s", "0"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
