//! The merged, interpolated, key-checked tree to Berth's [`Project`].
//!
//! Responsibility: read each supported key into its typed field, apply Compose's defaults and
//! cross-checks (declared networks, volumes, secrets and configs; `container_name` only with one
//! replica; `depends_on` targets), and report the first invalid value as
//! [`ComposeError::Invalid`] naming its path. Unsupported keys were already refused by `schema`,
//! so this module may assume every key it sees is one it knows.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    AuthSpec, BerthExt, BuildSpec, CircuitBreakerSpec, ConcurrencySpec, DependsCondition,
    DeviceSpec, EndpointMode, FailureAction, FileObject, FileRef, Healthcheck, HttpHealth, JwtSpec,
    Mount, MountKind, Network, Placement, PlanSpec, PortSpec, Project, RateLimitKey, RateLimitSpec,
    Resources, RestartCondition, RestartPolicy, RetrySpec, RouteProtocol, RouteSpec, Service,
    ServiceNetwork, SlowCallSpec, TimeoutSpec, UpdateConfig, UpdateOrder, Volume,
};
use crate::values::{
    boolean, command, host_ip, invalid, memory_bytes, normalize_path, number, opt_bool,
    opt_duration, opt_string, opt_uint, port_range, protocol, short_port, string, string_list,
    string_or_list, uint,
};
use crate::yaml::Value;
use crate::{dotenv, join, ComposeError};

/// What conversion needs besides the tree.
pub(crate) struct Ctx<'a> {
    /// Interpolation variables (client env over `.env`).
    pub env: &'a BTreeMap<String, String>,
    /// Bundle files by normalized relative path.
    pub files: &'a BTreeMap<String, String>,
    /// Absolute project dir on the client.
    pub project_dir: &'a str,
}

impl Ctx<'_> {
    fn file(&self, path: &str) -> Result<&str, ComposeError> {
        let key = normalize_path(path);
        self.files
            .get(&key)
            .map(String::as_str)
            .ok_or(ComposeError::MissingFile(key))
    }
}

/// Splits an `extra_hosts` entry, `host:ip` or `host=ip`.
pub(crate) fn split_host(s: &str) -> Option<(&str, &str)> {
    let (h, ip) = s.split_once('=').or_else(|| s.split_once(':'))?;
    let (h, ip) = (h.trim(), ip.trim());
    (!h.is_empty() && !ip.is_empty()).then_some((h, ip))
}

fn entries<'v>(v: Option<&'v Value>, path: &str) -> Result<&'v [(String, Value)], ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Map(e)) => Ok(e),
        Some(other) => Err(invalid(
            path,
            format!("expected a mapping, got {}", other.type_name()),
        )),
    }
}

/// `KEY: value` mapping or `KEY=value` list; values `None` for a bare key or a null value.
fn key_values(
    v: Option<&Value>,
    path: &str,
) -> Result<Vec<(String, Option<String>)>, ComposeError> {
    match v {
        Some(Value::Seq(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let s = string(item, &format!("{path}[{i}]"))?;
                Ok(match s.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (s, None),
                })
            })
            .collect(),
        other => entries(other, path)?
            .iter()
            .map(|(k, v)| Ok((k.clone(), opt_string(Some(v), &join(path, k))?)))
            .collect(),
    }
}

fn string_map(v: Option<&Value>, path: &str) -> Result<BTreeMap<String, String>, ComposeError> {
    Ok(key_values(v, path)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// Converts the whole project. `services` holds the enabled services only.
pub(crate) fn project(
    doc: &Value,
    services: &[(String, &Value)],
    ctx: &Ctx<'_>,
) -> Result<Project, ComposeError> {
    let mut networks = BTreeMap::new();
    for (name, def) in entries(doc.get("networks"), "networks")? {
        let path = join("networks", name);
        entries(Some(def), &path)?;
        networks.insert(
            name.clone(),
            Network {
                external: external(def, &path)?,
                name: opt_string(def.get("name"), &join(&path, "name"))?,
                internal: opt_bool(def.get("internal"), &join(&path, "internal"))?,
                labels: string_map(def.get("labels"), &join(&path, "labels"))?,
            },
        );
    }
    networks.entry("default".to_owned()).or_default();

    let mut volumes = BTreeMap::new();
    for (name, def) in entries(doc.get("volumes"), "volumes")? {
        let path = join("volumes", name);
        entries(Some(def), &path)?;
        volumes.insert(
            name.clone(),
            Volume {
                external: external(def, &path)?,
                name: opt_string(def.get("name"), &join(&path, "name"))?,
                labels: string_map(def.get("labels"), &join(&path, "labels"))?,
            },
        );
    }

    let secrets = file_objects(doc, "secrets", ctx)?;
    let configs = file_objects(doc, "configs", ctx)?;

    let enabled: BTreeSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = BTreeMap::new();
    for (name, def) in services {
        let declared = Declared {
            networks: &networks,
            volumes: &volumes,
            secrets: &secrets,
            configs: &configs,
            services: &enabled,
        };
        out.insert(name.clone(), service(name, def, ctx, &declared)?);
    }
    check_cycles(&out)?;
    Ok(Project {
        services: out,
        networks,
        volumes,
        secrets,
        configs,
    })
}

fn external(def: &Value, path: &str) -> Result<bool, ComposeError> {
    let p = join(path, "external");
    match def.get("external") {
        Some(Value::Map(_)) => Err(invalid(
            &p,
            "the `external: {name: ...}` form is not supported: use `external: true` and `name:`",
        )),
        v => opt_bool(v, &p),
    }
}

fn file_objects(
    doc: &Value,
    section: &str,
    ctx: &Ctx<'_>,
) -> Result<BTreeMap<String, FileObject>, ComposeError> {
    let mut out = BTreeMap::new();
    for (name, def) in entries(doc.get(section), section)? {
        let path = join(section, name);
        entries(Some(def), &path)?;
        let content = if let Some(file) = opt_string(def.get("file"), &join(&path, "file"))? {
            ctx.file(&file)?.to_owned()
        } else if let Some(var) = opt_string(def.get("environment"), &join(&path, "environment"))? {
            ctx.env.get(&var).cloned().ok_or_else(|| {
                invalid(
                    &join(&path, "environment"),
                    format!("variable {var} is not set"),
                )
            })?
        } else if let Some(content) = opt_string(def.get("content"), &join(&path, "content"))? {
            content
        } else {
            return Err(invalid(
                &path,
                "needs `file:` or `environment:`".to_owned()
                    + if section == "configs" {
                        " or `content:`"
                    } else {
                        ""
                    },
            ));
        };
        out.insert(name.clone(), FileObject { content });
    }
    Ok(out)
}

struct Declared<'a> {
    networks: &'a BTreeMap<String, Network>,
    volumes: &'a BTreeMap<String, Volume>,
    secrets: &'a BTreeMap<String, FileObject>,
    configs: &'a BTreeMap<String, FileObject>,
    services: &'a BTreeSet<&'a str>,
}

/// Checks a service name against Compose's pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[allow(clippy::too_many_lines)] // one line per key reads best
fn service(
    name: &str,
    def: &Value,
    ctx: &Ctx<'_>,
    declared: &Declared<'_>,
) -> Result<Service, ComposeError> {
    let path = join("services", name);
    let p = |k: &str| join(&path, k);
    let get = |k: &str| def.get(k);

    let build = build(get("build"), &p("build"), ctx)?;
    let berth_ext = berth(get("x-berth"), &p("x-berth"))?;
    if berth_ext.from_market.is_some() {
        // An installed copy of a market entry: apply resolves the image (docs/market.md#install).
        for key in ["image", "build"] {
            if get(key).is_some_and(|v| *v != Value::Null) {
                return Err(invalid(
                    &p(key),
                    "a service installed with `x-berth.from_market` takes its image from the market",
                ));
            }
        }
    }
    let image = match get("image") {
        None | Some(Value::Null) if build.is_some() || berth_ext.from_market.is_some() => {
            String::new()
        }
        None | Some(Value::Null) => {
            return Err(invalid(&p("image"), "is required (or `build:`)"));
        }
        Some(v) => string(v, &p("image"))?,
    };
    if image.trim().is_empty() && build.is_none() && berth_ext.from_market.is_none() {
        return Err(invalid(&p("image"), "must not be empty"));
    }

    let deploy = get("deploy");
    let deploy_get = |k: &str| deploy.and_then(|d| d.get(k));
    let dpath = p("deploy");
    if let Some(d) = deploy {
        entries(Some(d), &dpath)?;
    }

    // Replicas: deploy.replicas, or scale; both must agree.
    let replicas_deploy: Option<u32> = opt_uint(deploy_get("replicas"), &join(&dpath, "replicas"))?;
    let scale: Option<u32> = opt_uint(get("scale"), &p("scale"))?;
    let replicas = match (replicas_deploy, scale) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                &p("scale"),
                format!("conflicts with deploy.replicas ({b} vs {a})"),
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => 1,
    };

    // `deploy.mode`: `global` runs one task per node (Swarm) and has no replica count.
    let mpath = join(&dpath, "mode");
    let global = match opt_string(deploy_get("mode"), &mpath)?.as_deref() {
        None | Some("replicated") => false,
        Some("global") => true,
        Some(other) => {
            return Err(invalid(
                &mpath,
                format!("unknown mode {other:?} (replicated or global)"),
            ))
        }
    };
    if global && (replicas_deploy.is_some() || scale.is_some()) {
        return Err(invalid(
            &join(&dpath, "replicas"),
            "cannot be set with `mode: global` (one replica per node)",
        ));
    }
    let replicas = if global { 1 } else { replicas };

    let network_mode = host_mode(get("network_mode"), &p("network_mode"), &["host", "none"])?;
    if let Some(mode) = &network_mode {
        // Such a container has no address on an application network: nothing to publish
        // from, route to or probe (docs/compose.md#network_mode).
        for (key, set) in [
            (
                "ports",
                get("ports").is_some_and(|v| !matches!(v, Value::Null)),
            ),
            (
                "networks",
                get("networks").is_some_and(|v| !matches!(v, Value::Null)),
            ),
        ] {
            if set {
                return Err(invalid(
                    &p(key),
                    format!("cannot be used with `network_mode: {mode}`"),
                ));
            }
        }
    }

    let container_name = opt_string(get("container_name"), &p("container_name"))?;
    if container_name.is_some() && replicas > 1 {
        return Err(invalid(
            &p("container_name"),
            format!("cannot be set with {replicas} replicas: container names must be unique"),
        ));
    }

    Ok(Service {
        image,
        build,
        command: get("command").map_or(Ok(None), |v| command(v, &p("command")))?,
        entrypoint: get("entrypoint").map_or(Ok(None), |v| command(v, &p("entrypoint")))?,
        environment: environment(def, &path, ctx)?,
        ports: ports(get("ports"), &p("ports"))?,
        expose: expose(get("expose"), &p("expose"))?,
        healthcheck: healthcheck(get("healthcheck"), &p("healthcheck"))?,
        labels: string_map(get("labels"), &p("labels"))?,
        mounts: mounts(get("volumes"), &p("volumes"), ctx, declared)?,
        tmpfs: get("tmpfs").map_or(Ok(Vec::new()), |v| string_or_list(v, &p("tmpfs")))?,
        networks: if network_mode.is_some() {
            BTreeMap::new()
        } else {
            service_networks(get("networks"), &p("networks"), declared)?
        },
        depends_on: depends_on(get("depends_on"), &p("depends_on"), name, declared)?,
        restart: restart(
            get("restart"),
            &p("restart"),
            deploy_get("restart_policy"),
            &dpath,
        )?,
        container_name,
        user: opt_string(get("user"), &p("user"))?,
        working_dir: opt_string(get("working_dir"), &p("working_dir"))?,
        extra_hosts: extra_hosts(get("extra_hosts"), &p("extra_hosts"))?,
        cap_add: get("cap_add").map_or(Ok(Vec::new()), |v| string_list(v, &p("cap_add")))?,
        cap_drop: get("cap_drop").map_or(Ok(Vec::new()), |v| string_list(v, &p("cap_drop")))?,
        stop_grace_period_ms: opt_duration(get("stop_grace_period"), &p("stop_grace_period"))?,
        secrets: file_refs(get("secrets"), &p("secrets"), declared.secrets, "secret")?,
        configs: file_refs(get("configs"), &p("configs"), declared.configs, "config")?,
        replicas,
        update_config: update_config(deploy_get("update_config"), &join(&dpath, "update_config"))?,
        resources: resources(deploy_get("resources"), &join(&dpath, "resources"))?,
        berth: berth_ext,
        privileged: opt_bool(get("privileged"), &p("privileged"))?,
        network_mode,
        pid: host_mode(get("pid"), &p("pid"), &["host"])?,
        ipc: host_mode(
            get("ipc"),
            &p("ipc"),
            &["host", "private", "shareable", "none"],
        )?,
        userns_mode: host_mode(get("userns_mode"), &p("userns_mode"), &["host"])?,
        devices: devices(get("devices"), &p("devices"))?,
        security_opt: get("security_opt")
            .map_or(Ok(Vec::new()), |v| string_list(v, &p("security_opt")))?,
        global,
        placement: placement(deploy_get("placement"), &join(&dpath, "placement"))?,
        rollback_config: rollback_config(
            deploy_get("rollback_config"),
            &join(&dpath, "rollback_config"),
        )?,
        endpoint_mode: endpoint_mode(deploy_get("endpoint_mode"), &join(&dpath, "endpoint_mode"))?,
    })
    .and_then(|s| no_address_checks(s, &path))
}

/// A mode key (`network_mode`, `pid`, `ipc`, `userns_mode`) with the values Berth supports.
fn host_mode(
    v: Option<&Value>,
    path: &str,
    allowed: &[&str],
) -> Result<Option<String>, ComposeError> {
    let Some(mode) = opt_string(v, path)? else {
        return Ok(None);
    };
    if allowed.contains(&mode.as_str()) {
        Ok(Some(mode))
    } else {
        Err(invalid(
            path,
            format!(
                "{mode:?} is not supported (supported: {})",
                allowed.join(", ")
            ),
        ))
    }
}

/// A service with `network_mode` has no container address Berth can route to or probe.
fn no_address_checks(s: Service, path: &str) -> Result<Service, ComposeError> {
    if let Some(mode) = &s.network_mode {
        if !s.berth.routes.is_empty() {
            return Err(invalid(
                &join(path, "x-berth.route"),
                format!("cannot be used with `network_mode: {mode}` (the gateway reaches a service by its address on the application network)"),
            ));
        }
        if s.berth.health.is_some() {
            return Err(invalid(
                &join(path, "x-berth.health"),
                format!("cannot be used with `network_mode: {mode}` (use a Docker `healthcheck:`)"),
            ));
        }
    }
    Ok(s)
}

/// `devices:` in the short syntax, `HOST[:CONTAINER[:PERMS]]`.
fn devices(v: Option<&Value>, path: &str) -> Result<Vec<DeviceSpec>, ComposeError> {
    let Some(v) = v.filter(|v| !matches!(v, Value::Null)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in string_list(v, path)?.into_iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let parts: Vec<&str> = item.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => {
                return Err(invalid(
                    &ip,
                    format!("{item:?}: expected HOST[:CONTAINER[:PERMS]]"),
                ))
            }
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(invalid(
                &ip,
                format!("{item:?}: device paths must be absolute"),
            ));
        }
        if perms.is_empty() || !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(
                &ip,
                format!("{item:?}: permissions are some of r, w and m"),
            ));
        }
        out.push(DeviceSpec {
            host: normalize_path(host),
            container: container.to_owned(),
            permissions: perms.to_owned(),
        });
    }
    Ok(out)
}

fn environment(
    def: &Value,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut out = BTreeMap::new();
    let mut put = |k: String, v: Option<String>| {
        match v.or_else(|| ctx.env.get(&k).cloned()) {
            Some(v) => out.insert(k, v),
            None => out.remove(&k),
        };
    };
    let ef_path = join(path, "env_file");
    let env_files: Vec<(String, bool, String)> = match def.get("env_file") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Scalar(s, _)) => vec![(s.clone(), true, ef_path.clone())],
        Some(Value::Seq(items)) => {
            let mut v = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{ef_path}[{i}]");
                match item {
                    Value::Map(_) => {
                        let file = match item.get("path") {
                            Some(p) => string(p, &join(&ip, "path"))?,
                            None => return Err(invalid(&ip, "needs `path:`")),
                        };
                        let required = match item.get("required") {
                            None | Some(Value::Null) => true,
                            Some(r) => boolean(r, &join(&ip, "required"))?,
                        };
                        v.push((file, required, ip));
                    }
                    other => v.push((string(other, &ip)?, true, ip)),
                }
            }
            v
        }
        Some(other) => {
            return Err(invalid(
                &ef_path,
                format!("expected a path or a list, got {}", other.type_name()),
            ))
        }
    };
    for (file, required, _) in env_files {
        let text = match ctx.file(&file) {
            Ok(t) => t,
            Err(ComposeError::MissingFile(_)) if !required => continue,
            Err(e) => return Err(e),
        };
        for (k, v) in dotenv::parse(&normalize_path(&file), text)? {
            put(k, v);
        }
    }
    for (k, v) in key_values(def.get("environment"), &join(path, "environment"))? {
        put(k, v);
    }
    Ok(out)
}

/// `build: DIR` or `build: {context, dockerfile, args, target, labels}`.
fn build(v: Option<&Value>, path: &str, ctx: &Ctx<'_>) -> Result<Option<BuildSpec>, ComposeError> {
    let (context, def) = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(m @ Value::Map(_)) => {
            let context = opt_string(m.get("context"), &join(path, "context"))?;
            (context.unwrap_or_else(|| ".".into()), Some(m))
        }
        Some(other) => (string(other, path)?, None),
    };
    let cpath = if def.is_some() {
        join(path, "context")
    } else {
        path.to_string()
    };
    if context.trim().is_empty() {
        return Err(invalid(&cpath, "must not be empty"));
    }
    if context.contains("://") || context.starts_with("git@") {
        return Err(invalid(
            &cpath,
            "a remote (URL) build context is not supported: clone it and name the directory",
        ));
    }
    if context.starts_with('~') {
        return Err(invalid(&cpath, "a path starting with `~` is not supported"));
    }
    let get = |k: &str| def.and_then(|d| d.get(k));
    let dockerfile = opt_string(get("dockerfile"), &join(path, "dockerfile"))?
        .unwrap_or_else(|| "Dockerfile".into());
    let dpath = join(path, "dockerfile");
    if dockerfile.trim().is_empty() {
        return Err(invalid(&dpath, "must not be empty"));
    }
    let dockerfile = normalize_path(&dockerfile);
    if dockerfile.is_empty() || dockerfile.starts_with('/') || dockerfile.starts_with("..") {
        return Err(invalid(
            &dpath,
            "must be a path inside the build context, relative to it",
        ));
    }
    let mut args = BTreeMap::new();
    for (k, v) in key_values(get("args"), &join(path, "args"))? {
        if let Some(v) = v.or_else(|| ctx.env.get(&k).cloned()) {
            args.insert(k, v);
        }
    }
    let target = opt_string(get("target"), &join(path, "target"))?.filter(|t| !t.is_empty());
    let context = match normalize_path(&context) {
        c if c.is_empty() => ".".to_string(),
        c => c,
    };
    Ok(Some(BuildSpec {
        context,
        dockerfile,
        args,
        target,
        labels: string_map(get("labels"), &join(path, "labels"))?,
    }))
}

fn ports(v: Option<&Value>, path: &str) -> Result<Vec<PortSpec>, ComposeError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Seq(items)) => items,
        Some(other) => {
            return Err(invalid(
                path,
                format!("expected a list, got {}", other.type_name()),
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let specs = match item {
            Value::Scalar(s, _) => short_port(s).map_err(|m| invalid(&ip, m))?,
            Value::Map(_) => vec![long_port(item, &ip)?],
            other => {
                return Err(invalid(
                    &ip,
                    format!("expected a port, got {}", other.type_name()),
                ))
            }
        };
        for spec in specs {
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}

fn single_port(v: &Value, path: &str) -> Result<u16, ComposeError> {
    let s = string(v, path)?;
    match port_range(&s).map_err(|m| invalid(path, m))?.as_slice() {
        [one] => Ok(*one),
        _ => Err(invalid(
            path,
            "port ranges are not supported in the long syntax",
        )),
    }
}

fn long_port(v: &Value, path: &str) -> Result<PortSpec, ComposeError> {
    let target = match v.get("target") {
        Some(t) => single_port(t, &join(path, "target"))?,
        None => return Err(invalid(path, "needs `target:`")),
    };
    let published = match v.get("published") {
        None | Some(Value::Null) => None,
        Some(p) => Some(single_port(p, &join(path, "published"))?),
    };
    let host_ip = match opt_string(v.get("host_ip"), &join(path, "host_ip"))? {
        Some(ip) => Some(host_ip(&ip).map_err(|m| invalid(&join(path, "host_ip"), m))?),
        None => None,
    };
    let protocol = match opt_string(v.get("protocol"), &join(path, "protocol"))? {
        Some(p) => protocol(&p).map_err(|m| invalid(&join(path, "protocol"), m))?,
        None => crate::model::Protocol::Tcp,
    };
    if let Some(mode) = opt_string(v.get("mode"), &join(path, "mode"))? {
        if mode != "ingress" && mode != "host" {
            return Err(invalid(
                &join(path, "mode"),
                format!("unknown mode {mode:?} (ingress or host)"),
            ));
        }
    }
    Ok(PortSpec {
        host_ip,
        published,
        target,
        protocol,
        leased: false,
    })
}

fn expose(v: Option<&Value>, path: &str) -> Result<Vec<u16>, ComposeError> {
    let mut out = Vec::new();
    for (i, s) in v
        .map_or(Ok(Vec::new()), |v| string_list(v, path))?
        .iter()
        .enumerate()
    {
        let ip = format!("{path}[{i}]");
        let port = match s.rsplit_once('/') {
            Some((port, proto)) => {
                protocol(proto).map_err(|m| invalid(&ip, m))?;
                port
            }
            None => s,
        };
        for p in port_range(port).map_err(|m| invalid(&ip, m))? {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn healthcheck(v: Option<&Value>, path: &str) -> Result<Option<Healthcheck>, ComposeError> {
    let Some(v) = v else { return Ok(None) };
    entries(Some(v), path)?;
    let tpath = join(path, "test");
    let test = match v.get("test") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Scalar(s, _)) => vec!["CMD-SHELL".to_owned(), s.clone()],
        Some(other) => {
            let list = string_list(other, &tpath)?;
            match list.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => list,
                None => Vec::new(),
                Some(first) => {
                    return Err(invalid(
                        &tpath,
                        format!("must start with CMD, CMD-SHELL or NONE, not {first:?}"),
                    ))
                }
            }
        }
    };
    let disable = opt_bool(v.get("disable"), &join(path, "disable"))?
        || test.first().is_some_and(|t| t == "NONE");
    Ok(Some(Healthcheck {
        test,
        interval_ms: opt_duration(v.get("interval"), &join(path, "interval"))?,
        timeout_ms: opt_duration(v.get("timeout"), &join(path, "timeout"))?,
        retries: opt_uint(v.get("retries"), &join(path, "retries"))?,
        start_period_ms: opt_duration(v.get("start_period"), &join(path, "start_period"))?,
        start_interval_ms: opt_duration(v.get("start_interval"), &join(path, "start_interval"))?,
        disable,
    }))
}

fn bind_source(src: &str, path: &str, ctx: &Ctx<'_>) -> Result<String, ComposeError> {
    if src.starts_with('~') {
        return Err(invalid(
            path,
            format!("{src:?}: `~` paths are refused (the server cannot know the client's home); use a path relative to the project"),
        ));
    }
    if src.starts_with('/') {
        return Ok(normalize_path(src));
    }
    if !ctx.project_dir.starts_with('/') {
        return Err(invalid(
            path,
            format!("relative bind source {src:?} needs an absolute project_dir"),
        ));
    }
    Ok(normalize_path(&format!("{}/{src}", ctx.project_dir)))
}

fn named_volume(src: &str, path: &str, declared: &Declared<'_>) -> Result<String, ComposeError> {
    if declared.volumes.contains_key(src) {
        Ok(src.to_owned())
    } else {
        Err(invalid(
            path,
            format!("volume {src:?} is not declared in the top-level `volumes`"),
        ))
    }
}

fn mounts(
    v: Option<&Value>,
    path: &str,
    ctx: &Ctx<'_>,
    declared: &Declared<'_>,
) -> Result<Vec<Mount>, ComposeError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Seq(items)) => items,
        Some(other) => {
            return Err(invalid(
                path,
                format!("expected a list, got {}", other.type_name()),
            ))
        }
    };
    let mut out: Vec<Mount> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let mut mount = match item {
            Value::Scalar(s, _) => short_mount(s, &ip, ctx, declared)?,
            Value::Map(_) => long_mount(item, &ip, ctx, declared)?,
            other => {
                return Err(invalid(
                    &ip,
                    format!("expected a mount, got {}", other.type_name()),
                ))
            }
        };
        mount.index = Some(i);
        // A later mount on the same target replaces an earlier one (override files).
        out.retain(|m| m.target != mount.target);
        out.push(mount);
    }
    Ok(out)
}

fn is_path(src: &str) -> bool {
    src.starts_with(['/', '.', '~'])
}

fn check_target(target: &str, path: &str) -> Result<(), ComposeError> {
    if target.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("mount target {target:?} must be an absolute path"),
        ))
    }
}

fn short_mount(
    s: &str,
    path: &str,
    ctx: &Ctx<'_>,
    declared: &Declared<'_>,
) -> Result<Mount, ComposeError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, mode] => (Some(*source), *target, Some(*mode)),
        _ => return Err(invalid(path, format!("invalid volume {s:?}"))),
    };
    check_target(target, path)?;
    let mut read_only = false;
    for opt in mode
        .unwrap_or_default()
        .split(',')
        .filter(|o| !o.is_empty())
    {
        match opt {
            "ro" => read_only = true,
            "rw" | "cached" | "delegated" | "consistent" => {}
            other => {
                return Err(invalid(
                    path,
                    format!("volume option {other:?} is not supported"),
                ))
            }
        }
    }
    let (kind, source) = match source {
        None => (MountKind::Volume, None),
        Some(src) if is_path(src) => (MountKind::Bind, Some(bind_source(src, path, ctx)?)),
        Some(src) => (MountKind::Volume, Some(named_volume(src, path, declared)?)),
    };
    Ok(Mount {
        kind,
        source,
        target: target.to_owned(),
        read_only,
        index: None,
    })
}

fn long_mount(
    v: &Value,
    path: &str,
    ctx: &Ctx<'_>,
    declared: &Declared<'_>,
) -> Result<Mount, ComposeError> {
    let tpath = join(path, "type");
    let kind = match opt_string(v.get("type"), &tpath)?.as_deref() {
        Some("volume") => MountKind::Volume,
        Some("bind") => MountKind::Bind,
        Some("tmpfs") => MountKind::Tmpfs,
        Some(other) => {
            return Err(invalid(
                &tpath,
                format!("mount type {other:?} is not supported (volume, bind or tmpfs)"),
            ))
        }
        None => return Err(invalid(path, "needs `type:`")),
    };
    let target = match v.get("target") {
        Some(t) => string(t, &join(path, "target"))?,
        None => return Err(invalid(path, "needs `target:`")),
    };
    check_target(&target, &join(path, "target"))?;
    let spath = join(path, "source");
    let source = opt_string(v.get("source"), &spath)?.filter(|s| !s.is_empty());
    let source = match (kind, source) {
        (MountKind::Bind, None) => return Err(invalid(path, "a bind mount needs `source:`")),
        (MountKind::Bind, Some(s)) => Some(bind_source(&s, &spath, ctx)?),
        (MountKind::Volume, Some(s)) => Some(named_volume(&s, &spath, declared)?),
        (MountKind::Volume, None) => None,
        (MountKind::Tmpfs, Some(_)) => {
            return Err(invalid(&spath, "a tmpfs mount takes no source"))
        }
        (MountKind::Tmpfs, None) => None,
    };
    Ok(Mount {
        kind,
        source,
        target,
        read_only: opt_bool(v.get("read_only"), &join(path, "read_only"))?,
        index: None,
    })
}

fn service_networks(
    v: Option<&Value>,
    path: &str,
    declared: &Declared<'_>,
) -> Result<BTreeMap<String, ServiceNetwork>, ComposeError> {
    let mut out = BTreeMap::new();
    let check = |name: &str, p: &str| {
        if declared.networks.contains_key(name) {
            Ok(())
        } else {
            Err(invalid(
                p,
                format!("network {name:?} is not declared in the top-level `networks`"),
            ))
        }
    };
    match v {
        None | Some(Value::Null) => {
            out.insert("default".to_owned(), ServiceNetwork::default());
        }
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{path}[{i}]");
                let name = string(item, &ip)?;
                check(&name, &ip)?;
                out.insert(name, ServiceNetwork::default());
            }
        }
        Some(other) => {
            for (name, def) in entries(Some(other), path)? {
                let np = join(path, name);
                check(name, &np)?;
                let aliases = match def {
                    Value::Null => Vec::new(),
                    _ => {
                        entries(Some(def), &np)?;
                        def.get("aliases")
                            .map_or(Ok(Vec::new()), |a| string_list(a, &join(&np, "aliases")))?
                    }
                };
                out.insert(name.clone(), ServiceNetwork { aliases });
            }
        }
    }
    Ok(out)
}

fn depends_on(
    v: Option<&Value>,
    path: &str,
    me: &str,
    declared: &Declared<'_>,
) -> Result<BTreeMap<String, DependsCondition>, ComposeError> {
    let mut wanted: Vec<(String, DependsCondition, bool, String)> = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{path}[{i}]");
                let name = string(item, &ip)?;
                wanted.push((name, DependsCondition::ServiceStarted, true, ip));
            }
        }
        Some(other) => {
            for (name, def) in entries(Some(other), path)? {
                let np = join(path, name);
                let cpath = join(&np, "condition");
                let condition = match opt_string(def.get("condition"), &cpath)?.as_deref() {
                    None | Some("service_started") => DependsCondition::ServiceStarted,
                    Some("service_healthy") => DependsCondition::ServiceHealthy,
                    Some("service_completed_successfully") => {
                        DependsCondition::ServiceCompletedSuccessfully
                    }
                    Some(other) => {
                        return Err(invalid(
                            &cpath,
                            format!("unknown condition {other:?} (service_started, service_healthy or service_completed_successfully)"),
                        ))
                    }
                };
                let required = match def.get("required") {
                    None | Some(Value::Null) => true,
                    Some(r) => boolean(r, &join(&np, "required"))?,
                };
                wanted.push((name.clone(), condition, required, np));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (name, condition, required, p) in wanted {
        if name == me {
            return Err(invalid(&p, "a service cannot depend on itself"));
        }
        if !declared.services.contains(name.as_str()) {
            if required {
                return Err(invalid(
                    &p,
                    format!(
                        "service {name:?} is not defined or not enabled by the active profiles"
                    ),
                ));
            }
            continue;
        }
        out.insert(name, condition);
    }
    Ok(out)
}

fn check_cycles(services: &BTreeMap<String, Service>) -> Result<(), ComposeError> {
    // Depth-first search with colours; iterative to keep the stack flat on hostile input.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&str, Colour> = services
        .keys()
        .map(|k| (k.as_str(), Colour::White))
        .collect();
    for start in services.keys() {
        if colour.get(start.as_str()) != Some(&Colour::White) {
            continue;
        }
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, deps(services, start))];
        colour.insert(start, Colour::Grey);
        while let Some((node, pending)) = stack.last_mut() {
            let node: &str = node;
            if let Some(next) = pending.pop() {
                match colour.get(next).copied() {
                    Some(Colour::Grey) => {
                        return Err(invalid(
                            &format!("services.{node}.depends_on"),
                            format!("dependency cycle through {next:?}"),
                        ))
                    }
                    Some(Colour::White) => {
                        colour.insert(next, Colour::Grey);
                        stack.push((next, deps(services, next)));
                    }
                    _ => {}
                }
            } else {
                colour.insert(node, Colour::Black);
                stack.pop();
            }
        }
    }
    Ok(())
}

fn deps<'a>(services: &'a BTreeMap<String, Service>, name: &str) -> Vec<&'a str> {
    services
        .get(name)
        .map(|s| s.depends_on.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn restart(
    v: Option<&Value>,
    path: &str,
    policy: Option<&Value>,
    deploy_path: &str,
) -> Result<RestartPolicy, ComposeError> {
    let mut out = RestartPolicy::default();
    if let Some(s) = opt_string(v, path)? {
        let (cond, attempts) = match s.split_once(':') {
            Some((c, n)) => (c, Some(n)),
            None => (s.as_str(), None),
        };
        out.condition = match cond {
            "no" => RestartCondition::No,
            "always" => RestartCondition::Always,
            "on-failure" => RestartCondition::OnFailure,
            "unless-stopped" => RestartCondition::UnlessStopped,
            other => {
                return Err(invalid(
                    path,
                    format!(
                    "unknown restart policy {other:?} (no, always, on-failure[:N], unless-stopped)"
                ),
                ))
            }
        };
        if let Some(n) = attempts {
            if out.condition != RestartCondition::OnFailure {
                return Err(invalid(
                    path,
                    "a retry count is only allowed with on-failure",
                ));
            }
            out.max_attempts = Some(uint(&Value::str(n), path)?);
        }
    }
    if let Some(policy) = policy {
        let pp = join(deploy_path, "restart_policy");
        entries(Some(policy), &pp)?;
        let cpath = join(&pp, "condition");
        out.condition = match opt_string(policy.get("condition"), &cpath)?.as_deref() {
            None | Some("any") => RestartCondition::Always,
            Some("on-failure") => RestartCondition::OnFailure,
            Some("none") => RestartCondition::No,
            Some(other) => {
                return Err(invalid(
                    &cpath,
                    format!("unknown condition {other:?} (none, on-failure or any)"),
                ))
            }
        };
        if let Some(n) = opt_uint(policy.get("max_attempts"), &join(&pp, "max_attempts"))? {
            out.max_attempts = Some(n);
        }
        if let Some(d) = opt_duration(policy.get("delay"), &join(&pp, "delay"))? {
            out.delay_ms = Some(d);
        }
        out.window_ms = opt_duration(policy.get("window"), &join(&pp, "window"))?;
    }
    Ok(out)
}

fn extra_hosts(v: Option<&Value>, path: &str) -> Result<Vec<String>, ComposeError> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{path}[{i}]");
                let s = string(item, &ip)?;
                let (h, addr) = split_host(&s)
                    .ok_or_else(|| invalid(&ip, format!("expected host:ip, got {s:?}")))?;
                out.push(format!("{h}:{addr}"));
            }
        }
        Some(other) => {
            for (host, addrs) in entries(Some(other), path)? {
                let hp = join(path, host);
                for addr in string_or_list(addrs, &hp)? {
                    out.push(format!("{host}:{addr}"));
                }
            }
        }
    }
    Ok(out)
}

fn file_refs(
    v: Option<&Value>,
    path: &str,
    declared: &BTreeMap<String, FileObject>,
    what: &str,
) -> Result<Vec<FileRef>, ComposeError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Seq(items)) => items,
        Some(other) => {
            return Err(invalid(
                path,
                format!("expected a list, got {}", other.type_name()),
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let r = match item {
            Value::Map(_) => FileRef {
                source: match item.get("source") {
                    Some(s) => string(s, &join(&ip, "source"))?,
                    None => return Err(invalid(&ip, "needs `source:`")),
                },
                target: opt_string(item.get("target"), &join(&ip, "target"))?,
            },
            other => FileRef {
                source: string(other, &ip)?,
                target: None,
            },
        };
        if !declared.contains_key(&r.source) {
            return Err(invalid(
                &ip,
                format!("{what} {:?} is not declared at top level", r.source),
            ));
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn update_config(v: Option<&Value>, path: &str) -> Result<UpdateConfig, ComposeError> {
    let mut out = UpdateConfig::default();
    let Some(v) = v else { return Ok(out) };
    entries(Some(v), path)?;
    if let Some(n) = opt_uint(v.get("parallelism"), &join(path, "parallelism"))? {
        out.parallelism = n;
    }
    if let Some(d) = opt_duration(v.get("delay"), &join(path, "delay"))? {
        out.delay_ms = d;
    }
    let opath = join(path, "order");
    out.order = match opt_string(v.get("order"), &opath)?.as_deref() {
        None => None,
        Some("start-first") => Some(UpdateOrder::StartFirst),
        Some("stop-first") => Some(UpdateOrder::StopFirst),
        Some(other) => {
            return Err(invalid(
                &opath,
                format!("unknown order {other:?} (start-first or stop-first)"),
            ))
        }
    };
    let fpath = join(path, "failure_action");
    out.failure_action = match opt_string(v.get("failure_action"), &fpath)?.as_deref() {
        None | Some("rollback") => FailureAction::Rollback,
        Some("pause") => FailureAction::Pause,
        Some("continue") => FailureAction::Continue,
        Some(other) => {
            return Err(invalid(
                &fpath,
                format!("unknown failure action {other:?} (rollback, pause or continue)"),
            ))
        }
    };
    out.monitor_ms = opt_duration(v.get("monitor"), &join(path, "monitor"))?;
    if let Some(r) = v.get("max_failure_ratio").filter(|r| **r != Value::Null) {
        let rp = join(path, "max_failure_ratio");
        let ratio = number(r, &rp)?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(invalid(&rp, "must be between 0 and 1"));
        }
        out.max_failure_ratio = ratio;
    }
    Ok(out)
}

/// `deploy.placement`: constraints `ATTRIBUTE ==|!= VALUE`, `preferences: [{spread: D}]`,
/// `max_replicas_per_node` (Swarm checks the attributes themselves).
fn placement(v: Option<&Value>, path: &str) -> Result<Placement, ComposeError> {
    let mut out = Placement::default();
    let Some(v) = v.filter(|v| **v != Value::Null) else {
        return Ok(out);
    };
    entries(Some(v), path)?;
    let cpath = join(path, "constraints");
    if let Some(c) = v.get("constraints").filter(|c| **c != Value::Null) {
        for (i, item) in string_list(c, &cpath)?.into_iter().enumerate() {
            let ok = ["==", "!="].iter().any(|op| {
                item.split_once(op)
                    .is_some_and(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
            });
            if !ok {
                return Err(invalid(
                    &format!("{cpath}[{i}]"),
                    format!("{item:?} is not `ATTRIBUTE == VALUE` or `ATTRIBUTE != VALUE`"),
                ));
            }
            out.constraints.push(item);
        }
    }
    let ppath = join(path, "preferences");
    match v.get("preferences") {
        None | Some(Value::Null) => {}
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{ppath}[{i}]");
                let spread = opt_string(item.get("spread"), &join(&ip, "spread"))?
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| invalid(&ip, "must be `spread: DESCRIPTOR`"))?;
                out.spread.push(spread);
            }
        }
        Some(_) => return Err(invalid(&ppath, "must be a list of `spread:` entries")),
    }
    let mpath = join(path, "max_replicas_per_node");
    out.max_replicas_per_node = opt_uint(v.get("max_replicas_per_node"), &mpath)?;
    if out.max_replicas_per_node == Some(0) {
        return Err(invalid(&mpath, "must be at least 1"));
    }
    Ok(out)
}

/// `deploy.rollback_config`: `update_config`'s keys; a rollback that fails can only pause or
/// continue.
fn rollback_config(v: Option<&Value>, path: &str) -> Result<Option<UpdateConfig>, ComposeError> {
    let Some(v) = v.filter(|v| **v != Value::Null) else {
        return Ok(None);
    };
    if v.get("failure_action").and_then(Value::scalar_text) == Some("rollback") {
        return Err(invalid(
            &join(path, "failure_action"),
            "a rollback cannot itself roll back (pause or continue)",
        ));
    }
    update_config(Some(v), path).map(Some)
}

fn endpoint_mode(v: Option<&Value>, path: &str) -> Result<Option<EndpointMode>, ComposeError> {
    Ok(match opt_string(v, path)?.as_deref() {
        None => None,
        Some("vip") => Some(EndpointMode::Vip),
        Some("dnsrr") => Some(EndpointMode::Dnsrr),
        Some(other) => {
            return Err(invalid(
                path,
                format!("unknown endpoint mode {other:?} (vip or dnsrr)"),
            ))
        }
    })
}

fn resources(v: Option<&Value>, path: &str) -> Result<Resources, ComposeError> {
    let mut out = Resources::default();
    let Some(v) = v else { return Ok(out) };
    entries(Some(v), path)?;
    if let Some(r) = v.get("reservations").filter(|r| **r != Value::Null) {
        let rp = join(path, "reservations");
        entries(Some(r), &rp)?;
        if let Some(m) = r.get("memory").filter(|m| **m != Value::Null) {
            out.memory_reservation_bytes = Some(memory_bytes(m, &join(&rp, "memory"))?);
        }
        if let Some(c) = r.get("cpus").filter(|c| **c != Value::Null) {
            let cp = join(&rp, "cpus");
            let cpus = number(c, &cp)?;
            if cpus <= 0.0 {
                return Err(invalid(&cp, "must be greater than 0"));
            }
            out.cpus_reservation = Some(cpus);
        }
    }
    let Some(limits) = v.get("limits") else {
        return Ok(out);
    };
    let lp = join(path, "limits");
    entries(Some(limits), &lp)?;
    if let Some(c) = limits.get("cpus").filter(|c| **c != Value::Null) {
        let cp = join(&lp, "cpus");
        let cpus = number(c, &cp)?;
        if cpus <= 0.0 {
            return Err(invalid(&cp, "must be greater than 0"));
        }
        out.cpus = Some(cpus);
    }
    if let Some(m) = limits.get("memory").filter(|m| **m != Value::Null) {
        out.memory_bytes = Some(memory_bytes(m, &join(&lp, "memory"))?);
    }
    // Docker refuses a reservation above the limit at create; say so at apply.
    if let (Some(limit), Some(reserved)) = (out.memory_bytes, out.memory_reservation_bytes) {
        if reserved > limit {
            return Err(invalid(
                &join(&join(path, "reservations"), "memory"),
                "must not exceed resources.limits.memory",
            ));
        }
    }
    Ok(out)
}

fn berth(v: Option<&Value>, path: &str) -> Result<BerthExt, ComposeError> {
    let mut out = BerthExt::default();
    let Some(v) = v else { return Ok(out) };
    entries(Some(v), path)?;
    let rpath = join(path, "route");
    match v.get("route") {
        None | Some(Value::Null) => {}
        Some(r @ Value::Map(_)) => out.routes.push(route(r, &rpath)?),
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                out.routes.push(route(item, &format!("{rpath}[{i}]"))?);
            }
        }
        Some(other) => {
            return Err(invalid(
                &rpath,
                format!(
                    "expected a route or a list of routes, got {}",
                    other.type_name()
                ),
            ))
        }
    }
    if let Some(h) = v.get("health").filter(|h| **h != Value::Null) {
        let hp = join(path, "health");
        entries(Some(h), &hp)?;
        let http = match h.get("http") {
            Some(p) => string(p, &join(&hp, "http"))?,
            None => return Err(invalid(&hp, "needs `http:` (the path to probe)")),
        };
        if !http.starts_with('/') {
            return Err(invalid(&join(&hp, "http"), "must start with /"));
        }
        out.health = Some(HttpHealth {
            http,
            port: opt_port(h.get("port"), &join(&hp, "port"))?,
            interval_ms: opt_duration(h.get("interval"), &join(&hp, "interval"))?.unwrap_or(2000),
            timeout_ms: opt_duration(h.get("timeout"), &join(&hp, "timeout"))?.unwrap_or(1000),
        });
    }
    out.circuit_breaker =
        circuit_breaker(v.get("circuit_breaker"), &join(path, "circuit_breaker"))?;
    out.max_concurrency =
        max_concurrency(v.get("max_concurrency"), &join(path, "max_concurrency"))?;
    out.timeout = timeout(v.get("timeout"), &join(path, "timeout"))?;
    out.retries = retries(v.get("retries"), &join(path, "retries"))?;
    out.uses = uses(v.get("uses"), &join(path, "uses"))?;
    out.from_market = from_market(v.get("from_market"), &join(path, "from_market"))?;
    out.mqtt = opt_bool(v.get("mqtt"), &join(path, "mqtt"))?;
    if out.routes.is_empty() {
        // The gateway enforces these on HTTP routes only: refuse rather than ignore them.
        let set = [
            ("circuit_breaker", out.circuit_breaker.is_some()),
            ("max_concurrency", out.max_concurrency.is_some()),
            ("timeout", !out.timeout.is_unset()),
            ("retries", out.retries.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
            return Err(invalid(
                &join(path, key),
                "applies to the gateway's HTTP routes, and this service has no `x-berth.route`",
            ));
        }
    }
    Ok(out)
}

/// `x-berth.from_market`: `TEAM/SERVICE:VERSION`.
fn from_market(v: Option<&Value>, path: &str) -> Result<Option<String>, ComposeError> {
    let Some(text) = opt_string(v, path)? else {
        return Ok(None);
    };
    let valid = text.split_once('/').is_some_and(|(team, rest)| {
        rest.split_once(':').is_some_and(|(service, version)| {
            !team.is_empty()
                && !service.is_empty()
                && !version.is_empty()
                && !service.contains('/')
                && !version.contains(['/', ':'])
        })
    });
    if !valid {
        return Err(invalid(
            path,
            format!("{text:?}: expected TEAM/SERVICE:VERSION, a published version of the market"),
        ));
    }
    Ok(Some(text))
}

/// `x-berth.uses`: market entries as `TEAM/SERVICE`, each at most once.
fn uses(v: Option<&Value>, path: &str) -> Result<Vec<String>, ComposeError> {
    let list = names(v, path)?;
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let part = |p: &str, extra: &[u8]| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || extra.contains(&b)
                })
        };
        let valid = entry
            .split_once('/')
            .is_some_and(|(team, service)| part(team, b"") && part(service, b"_."));
        if !valid {
            return Err(invalid(
                &at,
                format!("{entry:?} is not a market entry: expected TEAM/SERVICE"),
            ));
        }
        if list[..i].contains(entry) {
            return Err(invalid(&at, format!("{entry:?} is listed twice")));
        }
    }
    Ok(list)
}

fn opt_port(v: Option<&Value>, path: &str) -> Result<Option<u16>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(p) => {
            let n: u16 = uint(p, path)?;
            if n == 0 {
                return Err(invalid(path, "port must be between 1 and 65535"));
            }
            Ok(Some(n))
        }
    }
}

fn route(v: &Value, path: &str) -> Result<RouteSpec, ComposeError> {
    entries(Some(v), path)?;
    let ppath = join(path, "path_prefix");
    let path_prefix = opt_string(v.get("path_prefix"), &ppath)?.unwrap_or_else(|| "/".to_owned());
    if !path_prefix.starts_with('/') {
        return Err(invalid(
            &ppath,
            format!("{path_prefix:?} must start with /"),
        ));
    }
    let auth = auth(v.get("auth"), &join(path, "auth"))?;
    let rate_limit = rate_limit(v.get("rate_limit"), &join(path, "rate_limit"))?;
    if auth.is_none() && rate_limit.is_some_and(|r| r.key == RateLimitKey::Consumer) {
        return Err(invalid(
            &join(path, "rate_limit.key"),
            "`consumer` counts per authenticated subject and needs `auth` on the same route",
        ));
    }
    let plans = plans(v.get("plans"), &join(path, "plans"))?;
    if !plans.is_empty() && !matches!(auth, Some(AuthSpec::Subscribers)) {
        return Err(invalid(
            &join(path, "plans"),
            "plans limit subscribers and need `auth: subscribers` on the same route",
        ));
    }
    let host = opt_string(v.get("host"), &join(path, "host"))?;
    // berth_core::MARKET_HOST: the market's subscribers call it; no application may serve it.
    if host.as_deref().is_some_and(|h| {
        h.trim_end_matches('.')
            .eq_ignore_ascii_case("berth-gateway")
    }) {
        return Err(invalid(
            &join(path, "host"),
            "`berth-gateway` is reserved: subscribers of the market call it (docs/market.md)",
        ));
    }
    Ok(RouteSpec {
        path_prefix,
        host,
        port: opt_port(v.get("port"), &join(path, "port"))?,
        strip_prefix: opt_bool(v.get("strip_prefix"), &join(path, "strip_prefix"))?,
        auth,
        rate_limit,
        redirect_https: opt_bool(v.get("redirect_https"), &join(path, "redirect_https"))?,
        protocol: route_protocol(v.get("protocol"), &join(path, "protocol"))?,
        plans,
    })
}

/// `x-berth.route.plans: {NAME: {per_second: N, burst: M}}` (docs/market.md#plans).
fn plans(v: Option<&Value>, path: &str) -> Result<BTreeMap<String, PlanSpec>, ComposeError> {
    let mut out = BTreeMap::new();
    let Some(v) = policy_object(v, path)? else {
        return Ok(out);
    };
    for (name, plan) in entries(Some(v), path)? {
        let ppath = join(path, name);
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(invalid(
                &ppath,
                "a plan name is 1-32 lowercase letters, digits, '-' and '_'",
            ));
        }
        let Some(plan) = policy_object(Some(plan), &ppath)? else {
            return Err(invalid(&ppath, "needs `per_second`"));
        };
        for (key, _) in entries(Some(plan), &ppath)? {
            if key != "per_second" && key != "burst" {
                return Err(ComposeError::Unsupported {
                    keys: vec![join(&ppath, key)],
                });
            }
        }
        let per_second = bounded(
            Some(required(plan, "per_second", &ppath)?),
            &join(&ppath, "per_second"),
            0,
            1,
            u32::MAX,
        )?;
        let burst = bounded(
            plan.get("burst"),
            &join(&ppath, "burst"),
            per_second,
            1,
            u32::MAX,
        )?;
        out.insert(name.clone(), PlanSpec { per_second, burst });
    }
    Ok(out)
}

/// `http1` (the default when absent or null) or `h2c`.
fn route_protocol(v: Option<&Value>, path: &str) -> Result<RouteProtocol, ComposeError> {
    match opt_string(v, path)?.as_deref() {
        None | Some("http1") => Ok(RouteProtocol::Http1),
        Some("h2c") => Ok(RouteProtocol::H2c),
        Some(other) => Err(invalid(
            path,
            format!("unknown protocol {other:?} (http1 or h2c)"),
        )),
    }
}

/// The value of an optional policy object: `None` when absent or null, else its entries checked
/// to be a mapping.
fn policy_object<'v>(v: Option<&'v Value>, path: &str) -> Result<Option<&'v Value>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            entries(Some(v), path)?;
            Ok(Some(v))
        }
    }
}

/// An integer in `min..=max`, `default` when absent or null.
fn bounded(
    v: Option<&Value>,
    path: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ComposeError> {
    let n = opt_uint(v, path)?.unwrap_or(default);
    if n < min || n > max {
        let range = if max == u32::MAX {
            format!("at least {min}")
        } else {
            format!("between {min} and {max}")
        };
        return Err(invalid(
            path,
            format!("{n} is out of range: must be {range}"),
        ));
    }
    Ok(n)
}

/// A ratio 0 < r ≤ 1.
fn ratio(v: &Value, path: &str) -> Result<f64, ComposeError> {
    let r = number(v, path)?;
    if r <= 0.0 || r > 1.0 {
        return Err(invalid(path, "must be greater than 0 and at most 1"));
    }
    Ok(r)
}

/// A duration greater than 0, or `None` when absent or null.
fn positive_duration(v: Option<&Value>, path: &str) -> Result<Option<u64>, ComposeError> {
    match opt_duration(v, path)? {
        Some(0) => Err(invalid(path, "must be at least 1ms")),
        d => Ok(d),
    }
}

/// A required key's value, or an error naming the object that lacks it.
fn required<'v>(obj: &'v Value, key: &str, path: &str) -> Result<&'v Value, ComposeError> {
    obj.get(key)
        .filter(|v| **v != Value::Null)
        .ok_or_else(|| invalid(path, format!("needs `{key}:`")))
}

/// A list of non-empty names (one name is accepted too).
fn names(v: Option<&Value>, path: &str) -> Result<Vec<String>, ComposeError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let out = string_or_list(v, path)?;
    for (i, n) in out.iter().enumerate() {
        if n.trim().is_empty() {
            let p = if matches!(v, Value::Seq(_)) {
                format!("{path}[{i}]")
            } else {
                path.to_owned()
            };
            return Err(invalid(&p, "must not be empty"));
        }
    }
    Ok(out)
}

fn auth(v: Option<&Value>, path: &str) -> Result<Option<AuthSpec>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Scalar(s, _)) if s == "jwt" => Ok(Some(AuthSpec::Jwt(JwtSpec::default()))),
        Some(Value::Scalar(s, _)) if s == "subscribers" => Ok(Some(AuthSpec::Subscribers)),
        Some(v @ Value::Map(_)) => {
            let jpath = join(path, "jwt");
            let Some(jwt) = v.get("jwt") else {
                return Err(invalid(path, "needs `jwt:` (the only kind supported)"));
            };
            let Some(jwt) = policy_object(Some(jwt), &jpath)? else {
                return Ok(Some(AuthSpec::Jwt(JwtSpec::default())));
            };
            let audiences = names(jwt.get("audiences"), &join(&jpath, "audiences"))?;
            if let Some(i) = audiences.iter().position(|a| a.starts_with("market:")) {
                return Err(invalid(
                    &format!("{}[{i}]", join(&jpath, "audiences")),
                    "`market:` audiences are the market's credentials: use `auth: subscribers`",
                ));
            }
            Ok(Some(AuthSpec::Jwt(JwtSpec {
                issuers: names(jwt.get("issuers"), &join(&jpath, "issuers"))?,
                audiences,
            })))
        }
        Some(other) => Err(invalid(
            path,
            format!(
                "expected `jwt`, `subscribers` or `{{jwt: {{issuers: [...], audiences: [...]}}}}`, got {}",
                other.scalar_text().map_or(other.type_name(), |s| s)
            ),
        )),
    }
}

fn rate_limit(v: Option<&Value>, path: &str) -> Result<Option<RateLimitSpec>, ComposeError> {
    let Some(v) = policy_object(v, path)? else {
        return Ok(None);
    };
    let per_second = bounded(
        Some(required(v, "per_second", path)?),
        &join(path, "per_second"),
        0,
        1,
        u32::MAX,
    )?;
    let burst = bounded(
        v.get("burst"),
        &join(path, "burst"),
        per_second,
        1,
        u32::MAX,
    )?;
    let kpath = join(path, "key");
    let key = match opt_string(v.get("key"), &kpath)?.as_deref() {
        None | Some("route") => RateLimitKey::Route,
        Some("consumer") => RateLimitKey::Consumer,
        Some("ip") => RateLimitKey::Ip,
        Some(other) => {
            return Err(invalid(
                &kpath,
                format!("unknown key {other:?} (route, consumer or ip)"),
            ))
        }
    };
    Ok(Some(RateLimitSpec {
        per_second,
        burst,
        key,
    }))
}

fn circuit_breaker(
    v: Option<&Value>,
    path: &str,
) -> Result<Option<CircuitBreakerSpec>, ComposeError> {
    let Some(v) = policy_object(v, path)? else {
        return Ok(None);
    };
    let d = CircuitBreakerSpec::default();
    let p = |k: &str| join(path, k);
    let slow_call = match policy_object(v.get("slow_call"), &p("slow_call"))? {
        None => None,
        Some(s) => {
            let sp = p("slow_call");
            let threshold = required(s, "threshold", &sp)?;
            let ratio_v = required(s, "ratio", &sp)?;
            Some(SlowCallSpec {
                threshold_ms: positive_duration(Some(threshold), &join(&sp, "threshold"))?
                    .unwrap_or_default(),
                ratio: ratio(ratio_v, &join(&sp, "ratio"))?,
            })
        }
    };
    Ok(Some(CircuitBreakerSpec {
        failure_ratio: match v.get("failure_ratio").filter(|r| **r != Value::Null) {
            Some(r) => ratio(r, &p("failure_ratio"))?,
            None => d.failure_ratio,
        },
        min_requests: bounded(
            v.get("min_requests"),
            &p("min_requests"),
            d.min_requests,
            1,
            u32::MAX,
        )?,
        window_ms: positive_duration(v.get("window"), &p("window"))?.unwrap_or(d.window_ms),
        open_for_ms: positive_duration(v.get("open_for"), &p("open_for"))?.unwrap_or(d.open_for_ms),
        half_open_probes: bounded(
            v.get("half_open_probes"),
            &p("half_open_probes"),
            d.half_open_probes,
            1,
            u32::MAX,
        )?,
        slow_call,
    }))
}

fn max_concurrency(v: Option<&Value>, path: &str) -> Result<Option<ConcurrencySpec>, ComposeError> {
    let Some(v) = policy_object(v, path)? else {
        return Ok(None);
    };
    let p = |k: &str| join(path, k);
    Ok(Some(ConcurrencySpec {
        limit: bounded(
            Some(required(v, "limit", path)?),
            &p("limit"),
            0,
            1,
            u32::MAX,
        )?,
        queue: bounded(v.get("queue"), &p("queue"), 0, 0, u32::MAX)?,
        queue_timeout_ms: positive_duration(v.get("queue_timeout"), &p("queue_timeout"))?
            .unwrap_or(1_000),
    }))
}

fn timeout(v: Option<&Value>, path: &str) -> Result<TimeoutSpec, ComposeError> {
    let Some(v) = policy_object(v, path)? else {
        return Ok(TimeoutSpec::default());
    };
    let p = |k: &str| join(path, k);
    let out = TimeoutSpec {
        connect_ms: positive_duration(v.get("connect"), &p("connect"))?,
        per_try_ms: positive_duration(v.get("per_try"), &p("per_try"))?,
        total_ms: positive_duration(v.get("total"), &p("total"))?,
    };
    if let (Some(per_try), Some(total)) = (out.per_try_ms, out.total_ms) {
        if per_try > total {
            return Err(invalid(
                &p("per_try"),
                format!("{per_try}ms is longer than `total` ({total}ms)"),
            ));
        }
    }
    Ok(out)
}

fn retries(v: Option<&Value>, path: &str) -> Result<Option<RetrySpec>, ComposeError> {
    let Some(v) = policy_object(v, path)? else {
        return Ok(None);
    };
    let d = RetrySpec::default();
    Ok(Some(RetrySpec {
        attempts: bounded(v.get("attempts"), &join(path, "attempts"), d.attempts, 0, 5)?,
        budget_percent: bounded(
            v.get("budget_percent"),
            &join(path, "budget_percent"),
            d.budget_percent,
            1,
            100,
        )?,
    }))
}
