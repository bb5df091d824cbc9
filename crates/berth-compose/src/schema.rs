//! Berth's table of allowed keys per path, and the scan that reports every other key.
//!
//! Responsibility: the single place that says which Compose keys Berth understands. The scan
//! walks the merged document with this table and returns the full path of *every* key that is
//! not in it (`services.web.privileged`, `services.web.deploy.placement`, ...), so nothing a user
//! wrote is ever silently dropped. It checks keys only; values are checked by `convert`. A few
//! keys are supported only with some values (`external: true` on a secret):
//! those are reported here too, so all unsupported things come back in one error.

use crate::yaml::Value;

/// The shape of a node, as far as keys are concerned.
pub(crate) enum Shape {
    /// Anything; contents not checked here (scalars, free-form maps such as `labels`).
    Any,
    /// A mapping with these keys. `ext` allows `x-*` keys (ignored).
    Object {
        keys: &'static [(&'static str, Shape)],
        ext: bool,
    },
    /// A mapping with free keys whose values have this shape (`services`, `networks`, ...).
    MapOf(&'static Shape),
    /// One item or a list of items of this shape (`ports`, `x-berth.route`, ...).
    Items(&'static Shape),
}

use Shape::{Any, Items, MapOf, Object};

const fn obj(keys: &'static [(&'static str, Shape)]) -> Shape {
    Object { keys, ext: true }
}

const HEALTHCHECK: Shape = obj(&[
    ("test", Any),
    ("interval", Any),
    ("timeout", Any),
    ("retries", Any),
    ("start_period", Any),
    ("start_interval", Any),
    ("disable", Any),
]);

static PORT: Shape = obj(&[
    ("target", Any),
    ("published", Any),
    ("host_ip", Any),
    ("protocol", Any),
    ("mode", Any),
]);

static MOUNT: Shape = obj(&[
    ("type", Any),
    ("source", Any),
    ("target", Any),
    ("read_only", Any),
]);

static SERVICE_NETWORK: Shape = obj(&[("aliases", Any)]);

static DEPENDS: Shape = obj(&[("condition", Any), ("required", Any)]);

static FILE_REF: Shape = obj(&[("source", Any), ("target", Any)]);

static ENV_FILE: Shape = obj(&[("path", Any), ("required", Any)]);

const UPDATE_CONFIG: Shape = obj(&[
    ("parallelism", Any),
    ("delay", Any),
    ("order", Any),
    ("failure_action", Any),
    ("monitor", Any),
    ("max_failure_ratio", Any),
]);

const DEPLOY: Shape = obj(&[
    ("mode", Any),
    ("replicas", Any),
    ("update_config", UPDATE_CONFIG),
    (
        "restart_policy",
        obj(&[
            ("condition", Any),
            ("delay", Any),
            ("max_attempts", Any),
            ("window", Any),
        ]),
    ),
    (
        "resources",
        obj(&[
            ("limits", obj(&[("cpus", Any), ("memory", Any)])),
            // CPU reservations are Swarm's (reported at apply on one engine); device
            // reservations have no equivalent on either runtime.
            ("reservations", obj(&[("cpus", Any), ("memory", Any)])),
        ]),
    ),
    ("rollback_config", UPDATE_CONFIG),
    ("endpoint_mode", Any),
    (
        "placement",
        obj(&[
            ("constraints", Any),
            ("preferences", Items(&PREFERENCE)),
            ("max_replicas_per_node", Any),
        ]),
    ),
]);

const PREFERENCE: Shape = obj(&[("spread", Any)]);

static ROUTE: Shape = Object {
    keys: &[
        ("path_prefix", Any),
        ("host", Any),
        ("port", Any),
        ("strip_prefix", Any),
        (
            "auth",
            Object {
                keys: &[(
                    "jwt",
                    Object {
                        keys: &[("issuers", Any), ("audiences", Any)],
                        ext: false,
                    },
                )],
                ext: false,
            },
        ),
        (
            "rate_limit",
            Object {
                keys: &[("per_second", Any), ("burst", Any), ("key", Any)],
                ext: false,
            },
        ),
        ("redirect_https", Any),
        ("protocol", Any),
        ("plans", Any),
    ],
    ext: false,
};

const BERTH: Shape = Object {
    keys: &[
        ("route", Items(&ROUTE)),
        (
            "health",
            Object {
                keys: &[
                    ("http", Any),
                    ("port", Any),
                    ("interval", Any),
                    ("timeout", Any),
                ],
                ext: false,
            },
        ),
        (
            "circuit_breaker",
            Object {
                keys: &[
                    ("failure_ratio", Any),
                    ("min_requests", Any),
                    ("window", Any),
                    ("open_for", Any),
                    ("half_open_probes", Any),
                    (
                        "slow_call",
                        Object {
                            keys: &[("threshold", Any), ("ratio", Any)],
                            ext: false,
                        },
                    ),
                ],
                ext: false,
            },
        ),
        (
            "max_concurrency",
            Object {
                keys: &[("limit", Any), ("queue", Any), ("queue_timeout", Any)],
                ext: false,
            },
        ),
        (
            "timeout",
            Object {
                keys: &[("connect", Any), ("per_try", Any), ("total", Any)],
                ext: false,
            },
        ),
        (
            "retries",
            Object {
                keys: &[("attempts", Any), ("budget_percent", Any)],
                ext: false,
            },
        ),
        ("uses", Any),
        ("from_market", Any),
        ("mqtt", Any),
    ],
    ext: false,
};

/// `build:` in its long form (the short form is a string, which the scan passes over). Other
/// build keys (`cache_from`, `ssh`, `secrets`, `dockerfile_inline`, `platforms`, ...) are
/// reported.
const BUILD: Shape = obj(&[
    ("context", Any),
    ("dockerfile", Any),
    ("args", Any),
    ("target", Any),
    ("labels", Any),
]);

/// The keys of one service.
pub(crate) static SERVICE: Shape = obj(&[
    ("image", Any),
    ("build", BUILD),
    ("command", Any),
    ("entrypoint", Any),
    ("environment", Any),
    ("env_file", Items(&ENV_FILE)),
    ("ports", Items(&PORT)),
    ("expose", Any),
    ("healthcheck", HEALTHCHECK),
    ("labels", Any),
    ("volumes", Items(&MOUNT)),
    ("tmpfs", Any),
    ("networks", MapOf(&SERVICE_NETWORK)),
    ("depends_on", MapOf(&DEPENDS)),
    ("restart", Any),
    ("container_name", Any),
    ("user", Any),
    ("working_dir", Any),
    ("extra_hosts", Any),
    ("cap_add", Any),
    ("cap_drop", Any),
    ("privileged", Any),
    ("network_mode", Any),
    ("pid", Any),
    ("ipc", Any),
    ("userns_mode", Any),
    ("devices", Any),
    ("security_opt", Any),
    ("stop_grace_period", Any),
    ("secrets", Items(&FILE_REF)),
    ("configs", Items(&FILE_REF)),
    ("deploy", DEPLOY),
    ("scale", Any),
    ("profiles", Any),
    ("x-berth", BERTH),
]);

static NETWORK: Shape = obj(&[
    ("external", Any),
    ("name", Any),
    ("internal", Any),
    ("labels", Any),
]);

static VOLUME: Shape = obj(&[("external", Any), ("name", Any), ("labels", Any)]);

static SECRET: Shape = obj(&[("file", Any), ("environment", Any), ("external", Any)]);

static CONFIG: Shape = obj(&[
    ("file", Any),
    ("environment", Any),
    ("content", Any),
    ("external", Any),
]);

/// Top-level keys other than `services` (services are scanned one by one, after profiles).
pub(crate) static TOP: Shape = obj(&[
    ("version", Any),
    ("name", Any),
    ("services", Any),
    ("networks", MapOf(&NETWORK)),
    ("volumes", MapOf(&VOLUME)),
    ("secrets", MapOf(&SECRET)),
    ("configs", MapOf(&CONFIG)),
]);

/// Appends the path of every key of `value` that `shape` does not allow.
pub(crate) fn scan(value: &Value, shape: &Shape, path: &str, out: &mut Vec<String>) {
    match shape {
        Any => {}
        Object { keys, ext } => {
            let Value::Map(entries) = value else { return };
            for (k, v) in entries {
                let sub = crate::join(path, k);
                if let Some((_, s)) = keys.iter().find(|(name, _)| name == k) {
                    scan(v, s, &sub, out);
                } else if !(*ext && k.starts_with("x-")) {
                    out.push(sub);
                }
            }
        }
        MapOf(inner) => {
            if let Value::Map(entries) = value {
                for (k, v) in entries {
                    scan(v, inner, &crate::join(path, k), out);
                }
            }
        }
        Items(inner) => match value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    scan(item, inner, &format!("{path}[{i}]"), out);
                }
            }
            other => scan(other, inner, path, out),
        },
    }
}

/// Value-dependent unsupported settings at top level (`external: true` secrets and configs).
pub(crate) fn scan_top_values(doc: &Value, out: &mut Vec<String>) {
    for section in ["secrets", "configs"] {
        if let Some(Value::Map(entries)) = doc.get(section) {
            for (name, def) in entries {
                if def
                    .get("external")
                    .is_some_and(|v| v.scalar_text() != Some("false"))
                {
                    out.push(format!("{section}.{name}.external"));
                }
            }
        }
    }
}
