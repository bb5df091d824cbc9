//! One table case per supported key: a service body, and what the loaded `Service` must hold.

use std::collections::BTreeMap;

use berth_compose::*;

/// Top-level declarations every case may refer to, and the service `db` to depend on.
const PRELUDE: &str = "\
volumes:
  data: {}
networks:
  front: {}
  back: {}
secrets:
  tok:
    file: ./secrets/tok.txt
configs:
  cfg:
    content: hello
services:
  db:
    image: postgres
  web:
";

fn load_web(body: &str) -> Result<Service, ComposeError> {
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    let mut b = Bundle {
        compose_files: vec!["compose.yaml".into()],
        project_dir: "/home/u/proj".into(),
        ..Bundle::default()
    };
    b.files
        .insert("compose.yaml".into(), format!("{PRELUDE}{indented}"));
    b.files.insert("secrets/tok.txt".into(), "s3cret".into());
    b.files.insert(
        "app.env".into(),
        "A=from_file\nB=file\n# c\nexport UMASK=0022\n".into(),
    );
    b.env.insert("SHELL_VAR".into(), "from_shell".into());
    load(&b).map(|mut p| p.services.remove("web").expect("web service"))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn tcp(published: Option<u16>, target: u16) -> PortSpec {
    PortSpec {
        host_ip: None,
        published,
        target,
        protocol: Protocol::Tcp,
        leased: false,
    }
}

type Check = fn(&Service);

#[test]
#[allow(clippy::too_many_lines)]
fn every_supported_key() {
    let cases: Vec<(&str, Check)> = vec![
        ("image: nginx:1.27", |s| assert_eq!(s.image, "nginx:1.27")),
        ("image: nginx\ncommand: echo 'a b' \"c d\"", |s| {
            assert_eq!(s.command, Some(vec!["echo".into(), "a b".into(), "c d".into()]));
        }),
        ("image: nginx\ncommand: [sleep, 10]", |s| {
            assert_eq!(s.command, Some(vec!["sleep".into(), "10".into()]));
        }),
        ("image: nginx\nentrypoint: /bin/sh -c", |s| {
            assert_eq!(s.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        }),
        ("image: nginx\nentrypoint: [tini, --]", |s| {
            assert_eq!(s.entrypoint, Some(vec!["tini".into(), "--".into()]));
        }),
        ("image: nginx\nenvironment:\n  A: 1\n  B: yes\n  C: 0022\n  D: 1_000\n  E: 1.0\n  F: true\n  G: ''\n  SHELL_VAR:\n  NOPE:", |s| {
            assert_eq!(
                s.environment,
                map(&[("A", "1"), ("B", "yes"), ("C", "0022"), ("D", "1_000"), ("E", "1.0"), ("F", "true"), ("G", ""), ("SHELL_VAR", "from_shell")])
            );
        }),
        ("image: nginx\nenvironment: [A=1, B=x=y, SHELL_VAR, NOPE, 'C=']", |s| {
            assert_eq!(s.environment, map(&[("A", "1"), ("B", "x=y"), ("SHELL_VAR", "from_shell"), ("C", "")]));
        }),
        ("image: nginx\nenv_file: ./app.env\nenvironment: {B: override}", |s| {
            assert_eq!(s.environment, map(&[("A", "from_file"), ("B", "override"), ("UMASK", "0022")]));
        }),
        ("image: nginx\nenv_file:\n  - app.env\n  - path: missing.env\n    required: false", |s| {
            assert_eq!(s.environment, map(&[("A", "from_file"), ("B", "file"), ("UMASK", "0022")]));
        }),
        ("image: nginx\nports: ['8000:80', '127.0.0.1:5353:53/udp', '9000', 443]", |s| {
            assert_eq!(
                s.ports,
                vec![
                    tcp(Some(8000), 80),
                    PortSpec { host_ip: Some("127.0.0.1".parse().unwrap()), published: Some(5353), target: 53, protocol: Protocol::Udp, leased: false },
                    tcp(None, 9000),
                    tcp(None, 443),
                ]
            );
        }),
        ("image: nginx\nports: ['8000-8001:80-81', '[::1]:7000:70']", |s| {
            assert_eq!(s.ports[..2], [tcp(Some(8000), 80), tcp(Some(8001), 81)]);
            assert_eq!(s.ports[2].host_ip, Some("::1".parse().unwrap()));
        }),
        ("image: nginx\nports:\n  - target: 80\n    published: '8080'\n    host_ip: 0.0.0.0\n    protocol: tcp\n    mode: host\n  - '9090:90'", |s| {
            assert_eq!(s.ports[0].published, Some(8080));
            assert_eq!(s.ports[0].target, 80);
            assert_eq!(s.ports[1], tcp(Some(9090), 90));
        }),
        ("image: nginx\nexpose: [3000, '4000', '5000-5001', '6000/udp']", |s| {
            assert_eq!(s.expose, vec![3000, 4000, 5000, 5001, 6000]);
        }),
        ("image: nginx\nhealthcheck:\n  test: curl -f http://localhost/\n  interval: 1m30s\n  timeout: 10s\n  retries: 3\n  start_period: 40s\n  start_interval: 5s", |s| {
            assert_eq!(
                s.healthcheck,
                Some(Healthcheck {
                    test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
                    interval_ms: Some(90_000),
                    timeout_ms: Some(10_000),
                    retries: Some(3),
                    start_period_ms: Some(40_000),
                    start_interval_ms: Some(5_000),
                    disable: false,
                })
            );
        }),
        ("image: nginx\nhealthcheck:\n  test: [CMD, pg_isready, -U, app]", |s| {
            assert_eq!(s.healthcheck.as_ref().unwrap().test, ["CMD", "pg_isready", "-U", "app"]);
        }),
        ("image: nginx\nhealthcheck:\n  disable: true", |s| {
            assert!(s.healthcheck.as_ref().unwrap().disable);
        }),
        ("image: nginx\nlabels:\n  com.example.a: '1'\n  b: 2", |s| {
            assert_eq!(s.labels, map(&[("com.example.a", "1"), ("b", "2")]));
        }),
        ("image: nginx\nlabels: [a=1, b]", |s| assert_eq!(s.labels, map(&[("a", "1"), ("b", "")]))),
        ("image: nginx\nvolumes:\n  - data:/var/lib/data\n  - ./conf:/etc/conf:ro\n  - /abs/path:/x\n  - /anon\n  - ../up:/up:rw", |s| {
            assert_eq!(
                s.mounts,
                vec![
                    Mount { kind: MountKind::Volume, source: Some("data".into()), target: "/var/lib/data".into(), read_only: false, index: Some(0) },
                    Mount { kind: MountKind::Bind, source: Some("/home/u/proj/conf".into()), target: "/etc/conf".into(), read_only: true, index: Some(1) },
                    Mount { kind: MountKind::Bind, source: Some("/abs/path".into()), target: "/x".into(), read_only: false, index: Some(2) },
                    Mount { kind: MountKind::Volume, source: None, target: "/anon".into(), read_only: false, index: Some(3) },
                    Mount { kind: MountKind::Bind, source: Some("/home/u/up".into()), target: "/up".into(), read_only: false, index: Some(4) },
                ]
            );
        }),
        ("image: nginx\nvolumes:\n  - type: volume\n    source: data\n    target: /d\n    read_only: true\n  - type: bind\n    source: ./src\n    target: /src\n  - type: tmpfs\n    target: /run", |s| {
            assert_eq!(
                s.mounts,
                vec![
                    Mount { kind: MountKind::Volume, source: Some("data".into()), target: "/d".into(), read_only: true, index: Some(0) },
                    Mount { kind: MountKind::Bind, source: Some("/home/u/proj/src".into()), target: "/src".into(), read_only: false, index: Some(1) },
                    Mount { kind: MountKind::Tmpfs, source: None, target: "/run".into(), read_only: false, index: Some(2) },
                ]
            );
        }),
        ("image: nginx\ntmpfs: /run", |s| assert_eq!(s.tmpfs, ["/run"])),
        ("image: nginx\ntmpfs: [/run, /tmp]", |s| assert_eq!(s.tmpfs, ["/run", "/tmp"])),
        ("image: nginx", |s| {
            assert_eq!(s.networks.keys().collect::<Vec<_>>(), ["default"]);
            assert_eq!(s.replicas, 1);
            assert_eq!(s.restart, RestartPolicy { condition: RestartCondition::Always, max_attempts: None, delay_ms: None, window_ms: None });
            assert_eq!(s.update_config, UpdateConfig::default());
            assert!(s.command.is_none() && s.healthcheck.is_none() && s.berth.routes.is_empty());
        }),
        ("image: nginx\nnetworks: [front, back]", |s| {
            assert_eq!(s.networks.keys().collect::<Vec<_>>(), ["back", "front"]);
        }),
        ("image: nginx\nnetworks:\n  front:\n    aliases: [www, site]\n  back:", |s| {
            assert_eq!(s.networks["front"].aliases, ["www", "site"]);
            assert!(s.networks["back"].aliases.is_empty());
        }),
        ("image: nginx\ndepends_on: [db]", |s| {
            assert_eq!(s.depends_on.get("db"), Some(&DependsCondition::ServiceStarted));
        }),
        ("image: nginx\ndepends_on:\n  db:\n    condition: service_healthy\n  ghost:\n    condition: service_started\n    required: false", |s| {
            assert_eq!(s.depends_on.len(), 1);
            assert_eq!(s.depends_on.get("db"), Some(&DependsCondition::ServiceHealthy));
        }),
        ("image: nginx\ndepends_on:\n  db:\n    condition: service_completed_successfully", |s| {
            assert_eq!(s.depends_on.get("db"), Some(&DependsCondition::ServiceCompletedSuccessfully));
        }),
        ("image: nginx\nrestart: unless-stopped", |s| assert_eq!(s.restart.condition, RestartCondition::UnlessStopped)),
        ("image: nginx\nrestart: 'no'", |s| assert_eq!(s.restart.condition, RestartCondition::No)),
        ("image: nginx\nrestart: on-failure:3", |s| {
            assert_eq!(s.restart, RestartPolicy { condition: RestartCondition::OnFailure, max_attempts: Some(3), delay_ms: None, window_ms: None });
        }),
        ("image: nginx\nrestart: always\ndeploy:\n  restart_policy:\n    condition: on-failure\n    delay: 5s\n    max_attempts: 2\n    window: 120s", |s| {
            assert_eq!(s.restart, RestartPolicy { condition: RestartCondition::OnFailure, max_attempts: Some(2), delay_ms: Some(5000), window_ms: Some(120_000) });
        }),
        ("image: nginx\ndeploy:\n  restart_policy:\n    condition: none", |s| assert_eq!(s.restart.condition, RestartCondition::No)),
        ("image: nginx\ncontainer_name: my-web", |s| assert_eq!(s.container_name.as_deref(), Some("my-web"))),
        ("image: nginx\nuser: '1000:1000'", |s| assert_eq!(s.user.as_deref(), Some("1000:1000"))),
        ("image: nginx\nworking_dir: /app", |s| assert_eq!(s.working_dir.as_deref(), Some("/app"))),
        ("image: nginx\nextra_hosts: ['db.local:10.0.0.2', 'v6=::1']", |s| {
            assert_eq!(s.extra_hosts, ["db.local:10.0.0.2", "v6:::1"]);
        }),
        ("image: nginx\nextra_hosts:\n  a.local: 10.0.0.3", |s| assert_eq!(s.extra_hosts, ["a.local:10.0.0.3"])),
        ("image: nginx\nprivileged: true\npid: host\nipc: host\nuserns_mode: host\nsecurity_opt: [no-new-privileges, 'seccomp:unconfined']", |s| {
            assert!(s.privileged);
            assert_eq!(s.pid.as_deref(), Some("host"));
            assert_eq!(s.ipc.as_deref(), Some("host"));
            assert_eq!(s.userns_mode.as_deref(), Some("host"));
            assert_eq!(s.security_opt, ["no-new-privileges", "seccomp:unconfined"]);
        }),
        ("image: nginx\nnetwork_mode: host\nexpose: [80]", |s| {
            assert_eq!(s.network_mode.as_deref(), Some("host"));
            assert!(s.networks.is_empty());
        }),
        ("image: nginx\ndevices: ['/dev/fuse', '/dev/net/tun:/dev/tun', '/dev/a/../b:/dev/b:r']", |s| {
            let d = |h: &str, c: &str, p: &str| DeviceSpec {
                host: h.into(),
                container: c.into(),
                permissions: p.into(),
            };
            assert_eq!(
                s.devices,
                [
                    d("/dev/fuse", "/dev/fuse", "rwm"),
                    d("/dev/net/tun", "/dev/tun", "rwm"),
                    d("/dev/b", "/dev/b", "r"),
                ]
            );
        }),
        ("image: nginx\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]", |s| {
            assert_eq!(s.cap_add, ["NET_ADMIN"]);
            assert_eq!(s.cap_drop, ["ALL"]);
        }),
        ("image: nginx\nstop_grace_period: 1m", |s| assert_eq!(s.stop_grace_period_ms, Some(60_000))),
        ("image: nginx\nstop_grace_period: 2us", |s| assert_eq!(s.stop_grace_period_ms, Some(0))),
        ("image: nginx\nsecrets: [tok, {source: tok, target: /run/token}]", |s| {
            assert_eq!(
                s.secrets,
                vec![FileRef { source: "tok".into(), target: None }, FileRef { source: "tok".into(), target: Some("/run/token".into()) }]
            );
        }),
        ("image: nginx\nconfigs:\n  - source: cfg\n    target: /etc/app.conf", |s| {
            assert_eq!(s.configs, vec![FileRef { source: "cfg".into(), target: Some("/etc/app.conf".into()) }]);
        }),
        ("image: nginx\ndeploy:\n  mode: replicated\n  replicas: 3", |s| assert_eq!(s.replicas, 3)),
        ("image: nginx\nscale: 2", |s| assert_eq!(s.replicas, 2)),
        ("image: nginx\nscale: 0", |s| assert_eq!(s.replicas, 0)),
        ("image: nginx\ndeploy:\n  update_config:\n    parallelism: 0\n    delay: 10s\n    order: start-first\n    failure_action: pause\n    monitor: 30s\n    max_failure_ratio: 0.1", |s| {
            assert_eq!(
                s.update_config,
                UpdateConfig { parallelism: 0, delay_ms: 10_000, order: Some(UpdateOrder::StartFirst), failure_action: FailureAction::Pause, monitor_ms: Some(30_000), max_failure_ratio: 0.1 }
            );
        }),
        ("image: nginx\ndeploy:\n  update_config:\n    order: stop-first\n    failure_action: continue", |s| {
            assert_eq!(s.update_config.order, Some(UpdateOrder::StopFirst));
            assert_eq!(s.update_config.failure_action, FailureAction::Continue);
        }),
        ("image: nginx\ndeploy:\n  resources:\n    limits:\n      cpus: '0.5'\n      memory: 512M\n    reservations:\n      memory: 128M", |s| {
            assert_eq!(s.resources, Resources { cpus: Some(0.5), memory_bytes: Some(512 << 20), memory_reservation_bytes: Some(128 << 20), cpus_reservation: None });
        }),
        ("image: nginx\ndeploy:\n  resources:\n    reservations: {memory: 64m}", |s| {
            assert_eq!(s.resources, Resources { cpus: None, memory_bytes: None, memory_reservation_bytes: Some(64 << 20), cpus_reservation: None });
        }),
        ("image: nginx\ndeploy:\n  resources:\n    limits:\n      cpus: 2\n      memory: 1073741824", |s| {
            assert_eq!(s.resources, Resources { cpus: Some(2.0), memory_bytes: Some(1 << 30), memory_reservation_bytes: None, cpus_reservation: None });
        }),
        ("image: nginx\ndeploy:\n  resources:\n    limits: {memory: 100mb}", |s| assert_eq!(s.resources.memory_bytes, Some(100 << 20))),
        ("image: nginx\ndeploy:\n  resources:\n    reservations: {cpus: '0.25'}", |s| assert_eq!(s.resources.cpus_reservation, Some(0.25))),
        ("image: nginx\ndeploy:\n  mode: global", |s| {
            assert!(s.global);
            assert_eq!(s.replicas, 1);
        }),
        ("image: nginx\ndeploy: {mode: replicated, replicas: 2}", |s| {
            assert!(!s.global);
            assert_eq!(s.replicas, 2);
        }),
        ("image: nginx\ndeploy:\n  placement:\n    constraints: ['node.role == manager', node.labels.zone!=b]\n    preferences: [{spread: node.labels.zone}]\n    max_replicas_per_node: 2", |s| {
            assert_eq!(s.placement.constraints, ["node.role == manager", "node.labels.zone!=b"]);
            assert_eq!(s.placement.spread, ["node.labels.zone"]);
            assert_eq!(s.placement.max_replicas_per_node, Some(2));
        }),
        ("image: nginx\ndeploy:\n  endpoint_mode: vip\n  rollback_config: {parallelism: 2, order: stop-first, failure_action: pause, delay: 1s, monitor: 5s, max_failure_ratio: 0.5}", |s| {
            assert_eq!(s.endpoint_mode, Some(EndpointMode::Vip));
            let r = s.rollback_config.as_ref().unwrap();
            assert_eq!((r.parallelism, r.order, r.failure_action, r.delay_ms, r.monitor_ms), (2, Some(UpdateOrder::StopFirst), FailureAction::Pause, 1000, Some(5000)));
            assert!((r.max_failure_ratio - 0.5).abs() < f64::EPSILON);
        }),
        ("image: nginx", |s| {
            assert!(!s.global && s.placement.is_empty() && s.rollback_config.is_none() && s.endpoint_mode.is_none());
        }),
        ("image: nginx\nx-other: {anything: [1]}\nx-berth:\n  route:\n    path_prefix: /api\n    host: example.com\n    port: 8080\n    strip_prefix: true\n  health:\n    http: /healthz\n    port: 8080\n    interval: 5s\n    timeout: 500ms", |s| {
            assert_eq!(
                s.berth,
                BerthExt {
                    routes: vec![RouteSpec { path_prefix: "/api".into(), host: Some("example.com".into()), port: Some(8080), strip_prefix: true, ..RouteSpec::default() }],
                    health: Some(HttpHealth { http: "/healthz".into(), port: Some(8080), interval_ms: 5000, timeout_ms: 500 }),
                    ..BerthExt::default()
                }
            );
        }),
        ("image: nginx\nx-berth:\n  route:\n    - {}\n    - {path_prefix: /b}\n  health: {http: /}", |s| {
            assert_eq!(s.berth.routes.len(), 2);
            assert_eq!(s.berth.routes[0], RouteSpec { path_prefix: "/".into(), host: None, port: None, strip_prefix: false, auth: None, rate_limit: None, redirect_https: false, protocol: RouteProtocol::Http1, plans: Default::default() });
            assert_eq!(s.berth.routes[1].path_prefix, "/b");
            assert_eq!(s.berth.health, Some(HttpHealth { http: "/".into(), port: None, interval_ms: 2000, timeout_ms: 1000 }));
        }),
        // The market: a subscribers-only route with plans, what a service uses, an installed copy.
        ("image: nginx\nx-berth:\n  route: {auth: subscribers, plans: {gold: {per_second: 5, burst: 9}, free: {per_second: 1}}}\n  uses: [shop/orders, default/stock]", |s| {
            let r = &s.berth.routes[0];
            assert_eq!(r.auth, Some(berth_compose::AuthSpec::Subscribers));
            assert_eq!(r.plans["gold"], berth_compose::PlanSpec { per_second: 5, burst: 9 });
            assert_eq!(r.plans["free"], berth_compose::PlanSpec { per_second: 1, burst: 1 });
            assert_eq!(s.berth.uses, ["shop/orders", "default/stock"]);
        }),
        ("x-berth:\n  from_market: shop/orders:v2", |s| {
            assert_eq!(s.berth.from_market.as_deref(), Some("shop/orders:v2"));
            assert!(s.image.is_empty());
        }),
        // A login to the MQTT broker (docs/messaging.md#services).
        ("image: nginx\nx-berth:\n  mqtt: true", |s| assert!(s.berth.mqtt)),
        ("image: nginx\nx-berth:\n  mqtt: false", |s| assert!(!s.berth.mqtt)),
        // build: the short form is the context; `image` becomes optional.
        ("build: ./app", |s| {
            assert_eq!(s.image, "");
            assert_eq!(
                s.build,
                Some(BuildSpec { context: "app".into(), dockerfile: "Dockerfile".into(), args: BTreeMap::new(), target: None, labels: BTreeMap::new() })
            );
        }),
        ("build: .", |s| assert_eq!(s.build.as_ref().unwrap().context, ".")),
        ("build: ../libs/api", |s| assert_eq!(s.build.as_ref().unwrap().context, "../libs/api")),
        ("image: shop/api:1
build:
  context: .
  dockerfile: docker/Dockerfile.prod
  args:
    VERSION: v1
    EMPTY: ''
    SHELL_VAR:
    UNSET:
  target: runtime
  labels: [team=core]", |s| {
            assert_eq!(s.image, "shop/api:1");
            assert_eq!(
                s.build,
                Some(BuildSpec {
                    context: ".".into(),
                    dockerfile: "docker/Dockerfile.prod".into(),
                    // A bare arg takes the client's value and is left out when unset.
                    args: map(&[("VERSION", "v1"), ("EMPTY", ""), ("SHELL_VAR", "from_shell")]),
                    target: Some("runtime".into()),
                    labels: map(&[("team", "core")]),
                })
            );
        }),
        ("build:
  args: [VERSION=2, 'X=a=b', SHELL_VAR, UNSET]
  dockerfile: ./Dockerfile", |s| {
            let b = s.build.as_ref().unwrap();
            assert_eq!(b.context, ".");
            assert_eq!(b.dockerfile, "Dockerfile");
            assert_eq!(b.args, map(&[("VERSION", "2"), ("X", "a=b"), ("SHELL_VAR", "from_shell")]));
        }),
        ("build: {context: '${SHELL_VAR:-x}', args: {V: '${SHELL_VAR}'}}", |s| {
            let b = s.build.as_ref().unwrap();
            assert_eq!(b.context, "from_shell");
            assert_eq!(b.args, map(&[("V", "from_shell")]));
        }),
    ];
    for (body, check) in cases {
        match load_web(body) {
            Ok(s) => check(&s),
            Err(e) => panic!("case {body:?}: {e}"),
        }
    }
}

fn jwt(issuers: &[&str], audiences: &[&str]) -> Option<AuthSpec> {
    Some(AuthSpec::Jwt(JwtSpec {
        issuers: issuers.iter().map(|s| (*s).to_owned()).collect(),
        audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
    }))
}

/// One case per `x-berth` traffic-policy key and default (route level, then service level).
#[test]
#[allow(clippy::too_many_lines)]
fn every_policy_key() {
    let cases: Vec<(&str, Check)> = vec![
        // No policy at all: everything off.
        ("image: nginx\nx-berth:\n  route: {}", |s| {
            let r = &s.berth.routes[0];
            assert_eq!((&r.auth, &r.rate_limit, r.redirect_https), (&None, &None, false));
            assert_eq!(s.berth, BerthExt { routes: vec![RouteSpec::default()], ..BerthExt::default() });
        }),
        // auth
        ("image: nginx\nx-berth:\n  route: {auth: jwt}", |s| assert_eq!(s.berth.routes[0].auth, jwt(&[], &[]))),
        ("image: nginx\nx-berth:\n  route: {auth: {jwt: {}}}", |s| assert_eq!(s.berth.routes[0].auth, jwt(&[], &[]))),
        ("image: nginx\nx-berth:\n  route: {auth: {jwt: ~}}", |s| assert_eq!(s.berth.routes[0].auth, jwt(&[], &[]))),
        ("image: nginx\nx-berth:\n  route: {auth: ~}", |s| assert_eq!(s.berth.routes[0].auth, None)),
        ("image: nginx\nx-berth:\n  route:\n    auth:\n      jwt:\n        issuers: [berth, corp]\n        audiences: [shop, mobile]", |s| {
            assert_eq!(s.berth.routes[0].auth, jwt(&["berth", "corp"], &["shop", "mobile"]));
        }),
        ("image: nginx\nx-berth:\n  route: {auth: {jwt: {issuers: corp}}}", |s| assert_eq!(s.berth.routes[0].auth, jwt(&["corp"], &[]))),
        ("image: nginx\nx-berth:\n  route: {auth: {jwt: {audiences: [a]}}}", |s| assert_eq!(s.berth.routes[0].auth, jwt(&[], &["a"]))),
        // rate_limit
        ("image: nginx\nx-berth:\n  route: {rate_limit: {per_second: 10}}", |s| {
            assert_eq!(s.berth.routes[0].rate_limit, Some(RateLimitSpec { per_second: 10, burst: 10, key: RateLimitKey::Route }));
        }),
        ("image: nginx\nx-berth:\n  route: {rate_limit: {per_second: '5', burst: 20, key: route}}", |s| {
            assert_eq!(s.berth.routes[0].rate_limit, Some(RateLimitSpec { per_second: 5, burst: 20, key: RateLimitKey::Route }));
        }),
        ("image: nginx\nx-berth:\n  route: {rate_limit: {per_second: 100, burst: 1, key: ip}}", |s| {
            assert_eq!(s.berth.routes[0].rate_limit, Some(RateLimitSpec { per_second: 100, burst: 1, key: RateLimitKey::Ip }));
        }),
        ("image: nginx\nx-berth:\n  route: {auth: jwt, rate_limit: {per_second: 1, key: consumer}}", |s| {
            assert_eq!(s.berth.routes[0].rate_limit, Some(RateLimitSpec { per_second: 1, burst: 1, key: RateLimitKey::Consumer }));
        }),
        ("image: nginx\nx-berth:\n  route: {rate_limit: ~}", |s| assert_eq!(s.berth.routes[0].rate_limit, None)),
        // redirect_https
        ("image: nginx\nx-berth:\n  route: {redirect_https: true}", |s| assert!(s.berth.routes[0].redirect_https)),
        ("image: nginx\nx-berth:\n  route: {redirect_https: 'false'}", |s| assert!(!s.berth.routes[0].redirect_https)),
        // protocol
        ("image: nginx\nx-berth:\n  route: {protocol: h2c}", |s| assert_eq!(s.berth.routes[0].protocol, RouteProtocol::H2c)),
        ("image: nginx\nx-berth:\n  route: {protocol: http1}", |s| assert_eq!(s.berth.routes[0].protocol, RouteProtocol::Http1)),
        ("image: nginx\nx-berth:\n  route: {protocol: ~}", |s| assert_eq!(s.berth.routes[0].protocol, RouteProtocol::Http1)),
        ("image: nginx\nx-berth:\n  route:\n    - {path_prefix: /grpc, protocol: h2c}\n    - {path_prefix: /}", |s| {
            assert_eq!(s.berth.routes[0].protocol, RouteProtocol::H2c);
            assert_eq!(s.berth.routes[1].protocol, RouteProtocol::Http1);
        }),
        // Route-level settings belong to their route.
        ("image: nginx\nx-berth:\n  route:\n    - {path_prefix: /api, auth: jwt, redirect_https: true}\n    - {path_prefix: /}", |s| {
            assert_eq!(s.berth.routes[0].auth, jwt(&[], &[]));
            assert!(s.berth.routes[0].redirect_https);
            assert_eq!(s.berth.routes[1], RouteSpec::default());
        }),
        // circuit_breaker
        ("image: nginx\nx-berth:\n  route: {}\n  circuit_breaker: {}", |s| {
            assert_eq!(
                s.berth.circuit_breaker,
                Some(CircuitBreakerSpec { failure_ratio: 0.5, min_requests: 20, window_ms: 10_000, open_for_ms: 5_000, half_open_probes: 3, slow_call: None })
            );
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  circuit_breaker:\n    failure_ratio: 0.25\n    min_requests: 5\n    window: 1m\n    open_for: 30s\n    half_open_probes: 1\n    slow_call: {threshold: 500ms, ratio: 0.8}", |s| {
            assert_eq!(
                s.berth.circuit_breaker,
                Some(CircuitBreakerSpec {
                    failure_ratio: 0.25,
                    min_requests: 5,
                    window_ms: 60_000,
                    open_for_ms: 30_000,
                    half_open_probes: 1,
                    slow_call: Some(SlowCallSpec { threshold_ms: 500, ratio: 0.8 }),
                })
            );
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  circuit_breaker: {failure_ratio: 1, slow_call: ~}", |s| {
            let cb = s.berth.circuit_breaker.unwrap();
            assert!((cb.failure_ratio - 1.0).abs() < f64::EPSILON);
            assert_eq!(cb.slow_call, None);
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  circuit_breaker: ~", |s| assert_eq!(s.berth.circuit_breaker, None)),
        // max_concurrency
        ("image: nginx\nx-berth:\n  route: {}\n  max_concurrency: {limit: 8}", |s| {
            assert_eq!(s.berth.max_concurrency, Some(ConcurrencySpec { limit: 8, queue: 0, queue_timeout_ms: 1_000 }));
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  max_concurrency: {limit: 1, queue: 100, queue_timeout: 250ms}", |s| {
            assert_eq!(s.berth.max_concurrency, Some(ConcurrencySpec { limit: 1, queue: 100, queue_timeout_ms: 250 }));
        }),
        // timeout
        ("image: nginx\nx-berth:\n  route: {}\n  timeout: {connect: 500ms, per_try: 2s, total: 5s}", |s| {
            assert_eq!(s.berth.timeout, TimeoutSpec { connect_ms: Some(500), per_try_ms: Some(2_000), total_ms: Some(5_000) });
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  timeout: {per_try: 5s, total: 5s}", |s| {
            assert_eq!(s.berth.timeout, TimeoutSpec { connect_ms: None, per_try_ms: Some(5_000), total_ms: Some(5_000) });
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  timeout: {per_try: 1m}", |s| {
            assert_eq!(s.berth.timeout, TimeoutSpec { per_try_ms: Some(60_000), ..TimeoutSpec::default() });
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  timeout: {connect: 1s}", |s| {
            assert_eq!(s.berth.timeout, TimeoutSpec { connect_ms: Some(1_000), ..TimeoutSpec::default() });
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  timeout: {}", |s| assert!(s.berth.timeout.is_unset())),
        // retries
        ("image: nginx\nx-berth:\n  route: {}\n  retries: {}", |s| {
            assert_eq!(s.berth.retries, Some(RetrySpec { attempts: 2, budget_percent: 20 }));
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  retries: {attempts: 0, budget_percent: 100}", |s| {
            assert_eq!(s.berth.retries, Some(RetrySpec { attempts: 0, budget_percent: 100 }));
        }),
        ("image: nginx\nx-berth:\n  route: {}\n  retries: {attempts: 5, budget_percent: 1}", |s| {
            assert_eq!(s.berth.retries, Some(RetrySpec { attempts: 5, budget_percent: 1 }));
        }),
        // Service-level policy set to null counts as not set (no route needed).
        ("image: nginx\nx-berth:\n  circuit_breaker: ~\n  max_concurrency: ~\n  timeout: ~\n  retries: ~", |s| {
            assert_eq!(s.berth, BerthExt::default());
        }),
    ];
    for (body, check) in cases {
        match load_web(body) {
            Ok(s) => check(&s),
            Err(e) => panic!("case {body:?}: {e}"),
        }
    }
}

/// Revisions are stored as JSON: one written before the policies existed still loads, and a
/// service without policy serializes as before (so its spec hash does not change).
#[test]
fn policies_are_absent_from_stored_json_while_off() {
    let old = r#"{"routes":[{"path_prefix":"/","host":null,"port":null,"strip_prefix":false}],"health":null}"#;
    let ext: BerthExt = serde_json::from_str(old).unwrap();
    assert_eq!(
        ext,
        BerthExt {
            routes: vec![RouteSpec::default()],
            ..BerthExt::default()
        }
    );
    assert_eq!(serde_json::to_string(&ext).unwrap(), old);

    let s = load_web("image: nginx\nx-berth:\n  route: {auth: jwt, rate_limit: {per_second: 2}}\n  circuit_breaker: {}\n  timeout: {total: 1s}").unwrap();
    let back: BerthExt = serde_json::from_str(&serde_json::to_string(&s.berth).unwrap()).unwrap();
    assert_eq!(back, s.berth);
}
