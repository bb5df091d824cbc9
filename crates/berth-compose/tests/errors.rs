//! Every error kind, each naming its path (or file), and the unsupported-key report.

use berth_compose::*;

fn bundle(compose: &str) -> Bundle {
    let mut b = Bundle {
        compose_files: vec!["compose.yaml".into()],
        project_dir: "/proj".into(),
        ..Bundle::default()
    };
    b.files.insert("compose.yaml".into(), compose.into());
    b
}

fn unsupported(compose: &str) -> Vec<String> {
    match load(&bundle(compose)) {
        Err(ComposeError::Unsupported { keys }) => keys,
        other => panic!("{compose:?}: expected Unsupported, got {other:?}"),
    }
}

#[test]
fn unsupported_keys_are_all_reported_by_path() {
    let cases: &[(&str, &[&str])] = &[
        ("services:\n  web:\n    image: a\n    sysctls: {a: 1}\n", &["services.web.sysctls"]),
        (
            "services:\n  web:\n    build:\n      context: .\n      cache_from: [a]\n      ssh: [default]\n      secrets: [s]\n      dockerfile_inline: FROM scratch\n      x-note: 1\n",
            &["services.web.build.cache_from", "services.web.build.ssh", "services.web.build.secrets", "services.web.build.dockerfile_inline"],
        ),
        (
            "services:\n  web:\n    image: a\n    network_mode: host\n    pid: host\n    devices: [/dev/x]\n    ulimits: {nofile: 1}\n    cgroup_parent: x\n",
            &["services.web.ulimits", "services.web.cgroup_parent"],
        ),
        (
            "services:\n  web:\n    image: a\n    deploy:\n      placement: {constraints: [], platforms: []}\n      labels: {a: b}\n      resources:\n        limits: {pids: 5}\n",
            &["services.web.deploy.placement.platforms", "services.web.deploy.labels", "services.web.deploy.resources.limits.pids"],
        ),
        (
            "services:\n  web:\n    image: a\n    deploy:\n      resources:\n        reservations: {cpus: '0.5', memory: 64M, devices: [{capabilities: [gpu]}], generic_resources: []}\n",
            &[
                "services.web.deploy.resources.reservations.devices",
                "services.web.deploy.resources.reservations.generic_resources",
            ],
        ),
        ("services:\n  web:\n    image: a\n    healthcheck: {test: x, foo: 1}\n", &["services.web.healthcheck.foo"]),
        ("services:\n  web:\n    image: a\n    ports: ['80', {target: 81, app_protocol: http}]\n", &["services.web.ports[1].app_protocol"]),
        (
            "volumes: {d: {}}\nservices:\n  web:\n    image: a\n    volumes:\n      - type: volume\n        source: d\n        target: /d\n        volume: {nocopy: true}\n",
            &["services.web.volumes[0].volume"],
        ),
        ("services:\n  web:\n    image: a\n    networks:\n      default: {ipv4_address: 10.0.0.2}\n", &["services.web.networks.default.ipv4_address"]),
        ("services:\n  web:\n    image: a\n    depends_on:\n      db: {condition: service_started, restart: true}\n  db: {image: b}\n", &["services.web.depends_on.db.restart"]),
        ("secrets: {s: {file: x}}\nservices:\n  web:\n    image: a\n    secrets: [{source: s, uid: '1'}]\n", &["services.web.secrets[0].uid"]),
        ("services:\n  web:\n    image: a\n    x-berth: {route: {path: /x}}\n", &["services.web.x-berth.route.path"]),
        ("services:\n  web:\n    image: a\n    x-berth: {route: [{}, {prefix: /x}], healthz: 1}\n", &["services.web.x-berth.route[1].prefix", "services.web.x-berth.healthz"]),
        ("services:\n  web:\n    image: a\n    x-berth: {health: {http: /, x-extra: 1}}\n", &["services.web.x-berth.health.x-extra"]),
        (
            "services:\n  web:\n    image: a\n    x-berth:\n      route: {auth: {jwt: {issuer: x}, basic: {}}, rate_limit: {rate: 1}, redirect: true}\n",
            &[
                "services.web.x-berth.route.auth.jwt.issuer",
                "services.web.x-berth.route.auth.basic",
                "services.web.x-berth.route.rate_limit.rate",
                "services.web.x-berth.route.redirect",
            ],
        ),
        (
            "services:\n  web:\n    image: a\n    x-berth:\n      route: [{}, {rate_limit: {per_second: 1, x-note: 1}}]\n",
            &["services.web.x-berth.route[1].rate_limit.x-note"],
        ),
        (
            "services:\n  web:\n    image: a\n    x-berth:\n      circuit_breaker: {threshold: 1, slow_call: {threshold: 1s, ratio: 1, max: 2}}\n      max_concurrency: {limit: 1, burst: 2}\n      timeout: {read: 1s}\n      retries: {attempts: 1, backoff: 1s}\n      rate_limit: {}\n",
            &[
                "services.web.x-berth.circuit_breaker.threshold",
                "services.web.x-berth.circuit_breaker.slow_call.max",
                "services.web.x-berth.max_concurrency.burst",
                "services.web.x-berth.timeout.read",
                "services.web.x-berth.retries.backoff",
                "services.web.x-berth.rate_limit",
            ],
        ),
        ("services:\n  web:\n    image: a\n    env_file: [{path: a.env, format: raw}]\n", &["services.web.env_file[0].format"]),
        ("include: [other.yaml]\nservices: {}\n", &["include"]),
        ("networks:\n  n: {driver: overlay}\nvolumes:\n  v: {driver_opts: {}}\n", &["networks.n.driver", "volumes.v.driver_opts"]),
        ("secrets:\n  s: {external: true}\nconfigs:\n  c: {name: x, file: c}\n", &["configs.c.name", "secrets.s.external"]),
        (
            "services:\n  a:\n    image: x\n    oom_score_adj: 1\n  b:\n    image: y\n    ipc: host\n    sysctls: {a: 1}\n",
            &["services.a.oom_score_adj", "services.b.sysctls"],
        ),
    ];
    for (compose, want) in cases {
        let mut got = unsupported(compose);
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{compose}");
    }
}

#[test]
fn unsupported_display_lists_all() {
    let e = load(&bundle(
        "services:\n  web:\n    image: a\n    sysctls: {a: 1}\n    ulimits: {nofile: 1}\n",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported keys: services.web.sysctls, services.web.ulimits"
    );
}

#[test]
fn extensions_and_ignored_top_level_keys_are_accepted() {
    let p = load(&bundle(
        "version: '3.9'\nname: demo\nx-common: &c {image: a}\nservices:\n  web:\n    <<: *c\n    x-note: hi\nnetworks:\n  n:\n    x-any: 1\n",
    ))
    .unwrap();
    assert_eq!(p.services["web"].image, "a");
}

#[test]
fn unsupported_keys_of_disabled_services_are_not_reported() {
    let p = load(&bundle(
        "services:\n  web: {image: a}\n  debug:\n    image: b\n    sysctls: {a: 1}\n    profiles: [debug]\n",
    ))
    .unwrap();
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["web"]);
}

fn invalid(compose: &str) -> (String, String) {
    match load(&bundle(compose)) {
        Err(ComposeError::Invalid { path, message }) => (path, message),
        other => panic!("{compose:?}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_values_name_their_path() {
    let cases: &[(&str, &str)] = &[
        ("services:\n  web: {}\n", "services.web.image"),
        ("services:\n  web: {build: ''}\n", "services.web.build"),
        ("services:\n  web: {build: [a]}\n", "services.web.build"),
        ("services:\n  web: {build: {context: ''}}\n", "services.web.build.context"),
        ("services:\n  web: {build: 'https://github.com/a/b.git'}\n", "services.web.build"),
        ("services:\n  web: {build: '~/src'}\n", "services.web.build"),
        ("services:\n  web: {build: {dockerfile: /etc/Dockerfile}}\n", "services.web.build.dockerfile"),
        ("services:\n  web: {build: {dockerfile: ../Dockerfile}}\n", "services.web.build.dockerfile"),
        ("services:\n  web: {build: {args: 'A=1'}}\n", "services.web.build.args"),
        ("services:\n  web: {build: {args: {A: [1]}}}\n", "services.web.build.args.A"),
        ("services:\n  web: {image: ''}\n", "services.web.image"),
        ("services:\n  web: {image: [a]}\n", "services.web.image"),
        ("services:\n  web: nginx\n", "services.web"),
        ("services: [a]\n", "services"),
        ("services:\n  _bad: {image: a}\n", "services._bad"),
        ("services:\n  'a b': {image: a}\n", "services.a b"),
        ("services:\n  web: {image: a, ports: ['99999:80']}\n", "services.web.ports[0]"),
        ("services:\n  web: {image: a, ports: ['80', '8000-8002:80-81']}\n", "services.web.ports[1]"),
        ("services:\n  web: {image: a, ports: ['80/sctp']}\n", "services.web.ports[0]"),
        ("services:\n  web: {image: a, ports: ['x.y:80:80']}\n", "services.web.ports[0]"),
        ("services:\n  web: {image: a, ports: [{published: 80}]}\n", "services.web.ports[0]"),
        ("services:\n  web: {image: a, ports: [{target: http}]}\n", "services.web.ports[0].target"),
        ("services:\n  web: {image: a, ports: '80'}\n", "services.web.ports"),
        ("services:\n  web: {image: a, expose: [abc]}\n", "services.web.expose[0]"),
        ("services:\n  web: {image: a, container_name: x, deploy: {replicas: 2}}\n", "services.web.container_name"),
        ("services:\n  web: {image: a, container_name: x, scale: 3}\n", "services.web.container_name"),
        ("services:\n  web: {image: a, scale: 2, deploy: {replicas: 3}}\n", "services.web.scale"),
        ("services:\n  web: {image: a, deploy: {replicas: -1}}\n", "services.web.deploy.replicas"),
        ("services:\n  web: {image: a, deploy: {replicas: many}}\n", "services.web.deploy.replicas"),
        ("services:\n  web: {image: a, depends_on: [db]}\n", "services.web.depends_on[0]"),
        ("services:\n  web: {image: a, depends_on: {db: {condition: service_healthy}}}\n", "services.web.depends_on.db"),
        ("services:\n  web: {image: a, depends_on: {db: {condition: whenever}}}\n  db: {image: b}\n", "services.web.depends_on.db.condition"),
        ("services:\n  web: {image: a, depends_on: [web]}\n", "services.web.depends_on[0]"),
        ("services:\n  web: {image: a, depends_on: [dbg]}\n  dbg: {image: b, profiles: [debug]}\n", "services.web.depends_on[0]"),
        ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n", "services.b.depends_on"),
        ("services:\n  web: {image: a, restart: sometimes}\n", "services.web.restart"),
        ("services:\n  web: {image: a, restart: 'always:3'}\n", "services.web.restart"),
        ("services:\n  web: {image: a, deploy: {restart_policy: {condition: always}}}\n", "services.web.deploy.restart_policy.condition"),
        ("services:\n  web: {image: a, deploy: {restart_policy: {delay: 5}}}\n", "services.web.deploy.restart_policy.delay"),
        ("services:\n  web: {image: a, stop_grace_period: 10}\n", "services.web.stop_grace_period"),
        ("services:\n  web: {image: a, stop_grace_period: soon}\n", "services.web.stop_grace_period"),
        ("services:\n  web: {image: a, healthcheck: {test: x, interval: 5x}}\n", "services.web.healthcheck.interval"),
        ("services:\n  web: {image: a, healthcheck: {test: [RUN, x]}}\n", "services.web.healthcheck.test"),
        ("services:\n  web: {image: a, healthcheck: {test: x, retries: lots}}\n", "services.web.healthcheck.retries"),
        ("services:\n  web: {image: a, healthcheck: {disable: yes}}\n", "services.web.healthcheck.disable"),
        ("services:\n  web: {image: a, command: \"echo 'open\"}\n", "services.web.command"),
        ("services:\n  web: {image: a, entrypoint: {a: b}}\n", "services.web.entrypoint"),
        ("services:\n  web: {image: a, environment: {A: [1]}}\n", "services.web.environment.A"),
        ("services:\n  web: {image: a, environment: 'A=1'}\n", "services.web.environment"),
        ("services:\n  web: {image: a, labels: [[x]]}\n", "services.web.labels[0]"),
        ("services:\n  web: {image: a, volumes: [data:/d]}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: ['~/x:/d']}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: ['./x:relative']}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: ['./x:/d:z']}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: ['a:b:c:d']}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: [{type: npipe, target: /x}]}\n", "services.web.volumes[0].type"),
        ("services:\n  web: {image: a, volumes: [{type: bind, target: /x}]}\n", "services.web.volumes[0]"),
        ("services:\n  web: {image: a, volumes: [{type: volume, source: nope, target: /x}]}\n", "services.web.volumes[0].source"),
        ("services:\n  web: {image: a, volumes: [{type: tmpfs, source: x, target: /x}]}\n", "services.web.volumes[0].source"),
        ("services:\n  web: {image: a, volumes: [{type: bind, source: ~/x, target: /x}]}\n", "services.web.volumes[0].source"),
        ("services:\n  web: {image: a, volumes: [{type: bind, source: ., target: /x, read_only: sure}]}\n", "services.web.volumes[0].read_only"),
        ("services:\n  web: {image: a, networks: [nope]}\n", "services.web.networks[0]"),
        ("services:\n  web: {image: a, networks: {nope: {}}}\n", "services.web.networks.nope"),
        ("services:\n  web: {image: a, networks: {default: {aliases: x}}}\n", "services.web.networks.default.aliases"),
        ("services:\n  web: {image: a, secrets: [nope]}\n", "services.web.secrets[0]"),
        ("services:\n  web: {image: a, configs: [{target: /x}]}\n", "services.web.configs[0]"),
        ("services:\n  web: {image: a, extra_hosts: [nocolon]}\n", "services.web.extra_hosts[0]"),
        ("services:\n  web: {image: a, cap_add: NET_ADMIN}\n", "services.web.cap_add"),
        ("services:\n  web: {image: a, deploy: {update_config: {order: random}}}\n", "services.web.deploy.update_config.order"),
        ("services:\n  web: {image: a, deploy: {update_config: {failure_action: explode}}}\n", "services.web.deploy.update_config.failure_action"),
        ("services:\n  web: {image: a, deploy: {update_config: {parallelism: -2}}}\n", "services.web.deploy.update_config.parallelism"),
        ("services:\n  web: {image: a, deploy: {update_config: {monitor: 1}}}\n", "services.web.deploy.update_config.monitor"),
        ("services:\n  web: {image: a, deploy: {update_config: {max_failure_ratio: 2}}}\n", "services.web.deploy.update_config.max_failure_ratio"),
        ("services:\n  web: {image: a, deploy: {resources: {limits: {cpus: zero}}}}\n", "services.web.deploy.resources.limits.cpus"),
        ("services:\n  web: {image: a, deploy: {resources: {limits: {cpus: 0}}}}\n", "services.web.deploy.resources.limits.cpus"),
        ("services:\n  web: {image: a, deploy: {resources: {limits: {memory: 12q}}}}\n", "services.web.deploy.resources.limits.memory"),
        ("services:\n  web: {image: a, deploy: {resources: {reservations: {memory: 12q}}}}\n", "services.web.deploy.resources.reservations.memory"),
        ("services:\n  web: {image: a, deploy: {resources: {limits: {memory: 64M}, reservations: {memory: 65M}}}}\n", "services.web.deploy.resources.reservations.memory"),
        ("services:\n  web: {image: a, deploy: {resources: {reservations: {cpus: 0}}}}\n", "services.web.deploy.resources.reservations.cpus"),
        ("services:\n  web: {image: a, deploy: {mode: spread}}\n", "services.web.deploy.mode"),
        ("services:\n  web: {image: a, deploy: {mode: global, replicas: 2}}\n", "services.web.deploy.replicas"),
        ("services:\n  web: {image: a, deploy: {placement: {constraints: [node.role]}}}\n", "services.web.deploy.placement.constraints[0]"),
        ("services:\n  web: {image: a, deploy: {placement: {constraints: ['== manager']}}}\n", "services.web.deploy.placement.constraints[0]"),
        ("services:\n  web: {image: a, deploy: {placement: {preferences: [{spread: ''}]}}}\n", "services.web.deploy.placement.preferences[0]"),
        ("services:\n  web: {image: a, deploy: {placement: {max_replicas_per_node: 0}}}\n", "services.web.deploy.placement.max_replicas_per_node"),
        ("services:\n  web: {image: a, deploy: {endpoint_mode: ipvs}}\n", "services.web.deploy.endpoint_mode"),
        ("services:\n  web: {image: a, deploy: {rollback_config: {order: sideways}}}\n", "services.web.deploy.rollback_config.order"),
        ("services:\n  web: {image: a, deploy: {rollback_config: {failure_action: rollback}}}\n", "services.web.deploy.rollback_config.failure_action"),
        ("services:\n  web: {image: a, x-berth: {route: {path_prefix: api}}}\n", "services.web.x-berth.route.path_prefix"),
        ("services:\n  web: {image: a, x-berth: {route: {plans: {gold: {per_second: 1}}}}}\n", "services.web.x-berth.route.plans"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: subscribers, plans: {Gold: {per_second: 1}}}}}\n", "services.web.x-berth.route.plans.Gold"),
        ("services:\n  web: {image: a, x-berth: {uses: [orders]}}\n", "services.web.x-berth.uses[0]"),
        ("services:\n  web: {image: a, x-berth: {route: {host: Berth-Gateway}}}\n", "services.web.x-berth.route.host"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: {audiences: [x, 'market:a/b']}}}}}\n", "services.web.x-berth.route.auth.jwt.audiences[1]"),
        ("services:\n  web: {image: a, x-berth: {uses: [a/orders, a/orders]}}\n", "services.web.x-berth.uses[1]"),
        ("services:\n  web: {x-berth: {from_market: a/orders}}\n", "services.web.x-berth.from_market"),
        ("services:\n  web: {image: a, x-berth: {mqtt: yes please}}\n", "services.web.x-berth.mqtt"),
        ("services:\n  web: {image: a, x-berth: {from_market: a/orders:v1}}\n", "services.web.image"),
        ("services:\n  web: {image: a, x-berth: {route: [{}, {path_prefix: api}]}}\n", "services.web.x-berth.route[1].path_prefix"),
        ("services:\n  web: {image: a, x-berth: {route: {port: 0}}}\n", "services.web.x-berth.route.port"),
        ("services:\n  web: {image: a, x-berth: {route: {strip_prefix: 1}}}\n", "services.web.x-berth.route.strip_prefix"),
        ("services:\n  web: {image: a, x-berth: {route: /api}}\n", "services.web.x-berth.route"),
        ("services:\n  web: {image: a, x-berth: {health: {port: 80}}}\n", "services.web.x-berth.health"),
        ("services:\n  web: {image: a, x-berth: {health: {http: healthz}}}\n", "services.web.x-berth.health.http"),
        ("services:\n  web: {image: a, x-berth: {health: {http: /, interval: 2}}}\n", "services.web.x-berth.health.interval"),
        // x-berth.route.auth
        ("services:\n  web: {image: a, x-berth: {route: {auth: basic}}}\n", "services.web.x-berth.route.auth"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: true}}}\n", "services.web.x-berth.route.auth"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: [jwt]}}}\n", "services.web.x-berth.route.auth"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {}}}}\n", "services.web.x-berth.route.auth"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: yes}}}}\n", "services.web.x-berth.route.auth.jwt"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: {issuers: {a: b}}}}}}\n", "services.web.x-berth.route.auth.jwt.issuers"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: {issuers: [berth, '']}}}}}\n", "services.web.x-berth.route.auth.jwt.issuers[1]"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: {audiences: ' '}}}}}\n", "services.web.x-berth.route.auth.jwt.audiences"),
        ("services:\n  web: {image: a, x-berth: {route: {auth: {jwt: {audiences: [[a]]}}}}}\n", "services.web.x-berth.route.auth.jwt.audiences[0]"),
        // x-berth.route.rate_limit
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: 10}}}\n", "services.web.x-berth.route.rate_limit"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {burst: 5}}}}\n", "services.web.x-berth.route.rate_limit"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 0}}}}\n", "services.web.x-berth.route.rate_limit.per_second"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: -1}}}}\n", "services.web.x-berth.route.rate_limit.per_second"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 1.5}}}}\n", "services.web.x-berth.route.rate_limit.per_second"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 5000000000}}}}\n", "services.web.x-berth.route.rate_limit.per_second"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 1, burst: 0}}}}\n", "services.web.x-berth.route.rate_limit.burst"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 1, burst: many}}}}\n", "services.web.x-berth.route.rate_limit.burst"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 1, key: user}}}}\n", "services.web.x-berth.route.rate_limit.key"),
        ("services:\n  web: {image: a, x-berth: {route: {rate_limit: {per_second: 1, key: consumer}}}}\n", "services.web.x-berth.route.rate_limit.key"),
        ("services:\n  web: {image: a, x-berth: {route: [{auth: jwt}, {rate_limit: {per_second: 1, key: consumer}}]}}\n", "services.web.x-berth.route[1].rate_limit.key"),
        // x-berth.route.redirect_https
        ("services:\n  web: {image: a, x-berth: {route: {redirect_https: 1}}}\n", "services.web.x-berth.route.redirect_https"),
        ("services:\n  web: {image: a, x-berth: {route: {redirect_https: yes}}}\n", "services.web.x-berth.route.redirect_https"),
        // x-berth.route.protocol
        ("services:\n  web: {image: a, x-berth: {route: {protocol: http2}}}\n", "services.web.x-berth.route.protocol"),
        ("services:\n  web: {image: a, x-berth: {route: {protocol: H2C}}}\n", "services.web.x-berth.route.protocol"),
        ("services:\n  web: {image: a, x-berth: {route: {protocol: [h2c]}}}\n", "services.web.x-berth.route.protocol"),
        ("services:\n  web: {image: a, x-berth: {route: [{}, {protocol: grpc}]}}\n", "services.web.x-berth.route[1].protocol"),
        // x-berth.circuit_breaker
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: true}}\n", "services.web.x-berth.circuit_breaker"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {failure_ratio: 0}}}\n", "services.web.x-berth.circuit_breaker.failure_ratio"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {failure_ratio: 1.5}}}\n", "services.web.x-berth.circuit_breaker.failure_ratio"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {failure_ratio: -0.5}}}\n", "services.web.x-berth.circuit_breaker.failure_ratio"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {failure_ratio: half}}}\n", "services.web.x-berth.circuit_breaker.failure_ratio"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {min_requests: 0}}}\n", "services.web.x-berth.circuit_breaker.min_requests"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {min_requests: ten}}}\n", "services.web.x-berth.circuit_breaker.min_requests"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {window: 10}}}\n", "services.web.x-berth.circuit_breaker.window"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {window: 0s}}}\n", "services.web.x-berth.circuit_breaker.window"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {open_for: soon}}}\n", "services.web.x-berth.circuit_breaker.open_for"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {open_for: 0}}}\n", "services.web.x-berth.circuit_breaker.open_for"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {half_open_probes: 0}}}\n", "services.web.x-berth.circuit_breaker.half_open_probes"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: 1s}}}\n", "services.web.x-berth.circuit_breaker.slow_call"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {ratio: 0.5}}}}\n", "services.web.x-berth.circuit_breaker.slow_call"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {threshold: 1s}}}}\n", "services.web.x-berth.circuit_breaker.slow_call"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {threshold: 1, ratio: 0.5}}}}\n", "services.web.x-berth.circuit_breaker.slow_call.threshold"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {threshold: 0s, ratio: 0.5}}}}\n", "services.web.x-berth.circuit_breaker.slow_call.threshold"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {threshold: 1s, ratio: 0}}}}\n", "services.web.x-berth.circuit_breaker.slow_call.ratio"),
        ("services:\n  web: {image: a, x-berth: {route: {}, circuit_breaker: {slow_call: {threshold: 1s, ratio: 2}}}}\n", "services.web.x-berth.circuit_breaker.slow_call.ratio"),
        // x-berth.max_concurrency
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: 10}}\n", "services.web.x-berth.max_concurrency"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {}}}\n", "services.web.x-berth.max_concurrency"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {queue: 5}}}\n", "services.web.x-berth.max_concurrency"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {limit: 0}}}\n", "services.web.x-berth.max_concurrency.limit"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {limit: lots}}}\n", "services.web.x-berth.max_concurrency.limit"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {limit: 1, queue: -1}}}\n", "services.web.x-berth.max_concurrency.queue"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {limit: 1, queue_timeout: 1}}}\n", "services.web.x-berth.max_concurrency.queue_timeout"),
        ("services:\n  web: {image: a, x-berth: {route: {}, max_concurrency: {limit: 1, queue_timeout: 0}}}\n", "services.web.x-berth.max_concurrency.queue_timeout"),
        // x-berth.timeout
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: 5s}}\n", "services.web.x-berth.timeout"),
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: {connect: 5}}}\n", "services.web.x-berth.timeout.connect"),
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: {connect: 0}}}\n", "services.web.x-berth.timeout.connect"),
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: {per_try: fast}}}\n", "services.web.x-berth.timeout.per_try"),
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: {total: 0ms}}}\n", "services.web.x-berth.timeout.total"),
        ("services:\n  web: {image: a, x-berth: {route: {}, timeout: {per_try: 6s, total: 5s}}}\n", "services.web.x-berth.timeout.per_try"),
        // x-berth.retries
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: 3}}\n", "services.web.x-berth.retries"),
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: {attempts: 6}}}\n", "services.web.x-berth.retries.attempts"),
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: {attempts: -1}}}\n", "services.web.x-berth.retries.attempts"),
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: {budget_percent: 0}}}\n", "services.web.x-berth.retries.budget_percent"),
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: {budget_percent: 101}}}\n", "services.web.x-berth.retries.budget_percent"),
        ("services:\n  web: {image: a, x-berth: {route: {}, retries: {budget_percent: 12.5}}}\n", "services.web.x-berth.retries.budget_percent"),
        // Service-level policy needs a route to apply to.
        ("services:\n  web: {image: a, x-berth: {circuit_breaker: {}}}\n", "services.web.x-berth.circuit_breaker"),
        ("services:\n  web: {image: a, x-berth: {max_concurrency: {limit: 1}}}\n", "services.web.x-berth.max_concurrency"),
        ("services:\n  web: {image: a, x-berth: {timeout: {total: 1s}}}\n", "services.web.x-berth.timeout"),
        ("services:\n  web: {image: a, x-berth: {retries: {}, health: {http: /}}}\n", "services.web.x-berth.retries"),
        ("services:\n  web: {image: a, profiles: debug}\n", "services.web.profiles"),
        ("services:\n  web: {image: '${TAG:?set TAG first}'}\n", "services.web.image"),
        ("services:\n  web: {image: 'a$'}\n", "services.web.image"),
        ("services:\n  web: {image: a, environment: ['X=${Y']}\n", "services.web.environment[0]"),
        ("networks: {n: {external: maybe}}\n", "networks.n.external"),
        ("networks: {n: {external: {name: x}}}\n", "networks.n.external"),
        ("networks: {n: [a]}\n", "networks.n"),
        ("volumes: {v: {labels: [[1]]}}\n", "volumes.v.labels[0]"),
        ("secrets: {s: {}}\n", "secrets.s"),
        ("secrets: {s: {environment: NOT_SET_ANYWHERE}}\n", "secrets.s.environment"),
        ("configs: {c: {content: [x]}}\n", "configs.c.content"),
    ];
    for (compose, want) in cases {
        let (path, message) = invalid(compose);
        assert_eq!(path, *want, "{compose} -> {message}");
        assert!(!message.is_empty());
    }
}

#[test]
fn required_variable_message_names_the_variable() {
    let (_, message) = invalid("services:\n  web: {image: '${TAG:?set TAG first}'}\n");
    assert!(
        message.contains("TAG") && message.contains("set TAG first"),
        "{message}"
    );
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let mut b = bundle("services:\n  web:\n    image: a\n  - broken\n");
    b.compose_files = vec!["compose.yaml".into()];
    match load(&b) {
        Err(ComposeError::Syntax { file, message }) => {
            assert_eq!(file, "compose.yaml");
            assert!(message.contains("line"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "[1, 2]\n",
        "just a string\n",
        "a: 1\na: 2\n",
        "{[1]: x}\n",
        "a: *nope\n",
    ] {
        assert!(
            matches!(load(&bundle(bad)), Err(ComposeError::Syntax { .. })),
            "{bad}"
        );
    }
    // A broken .env is a syntax error in `.env`.
    let mut b = bundle("services: {}\n");
    b.files.insert(".env".into(), "1X=2\n".into());
    assert!(matches!(load(&b), Err(ComposeError::Syntax { file, .. }) if file == ".env"));
}

#[test]
fn missing_files() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web: {image: a, env_file: ./web.env}\n",
            "web.env",
        ),
        (
            "services:\n  web: {image: a, env_file: [{path: x/../w.env, required: true}]}\n",
            "w.env",
        ),
        ("secrets: {s: {file: ./secret.txt}}\n", "secret.txt"),
        ("configs: {c: {file: conf/app.conf}}\n", "conf/app.conf"),
    ];
    for (compose, want) in cases {
        match load(&bundle(compose)) {
            Err(ComposeError::MissingFile(f)) => assert_eq!(f, *want, "{compose}"),
            other => panic!("{compose}: {other:?}"),
        }
    }
    let mut b = bundle("services: {}\n");
    b.compose_files.push("override.yaml".into());
    assert!(matches!(load(&b), Err(ComposeError::MissingFile(f)) if f == "override.yaml"));
    b.compose_files.clear();
    assert!(matches!(load(&b), Err(ComposeError::Invalid { path, .. }) if path == "compose_files"));
}

#[test]
fn host_keys_refuse_what_berth_cannot_run() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "network_mode: bridge",
            "services.web.network_mode",
            "not supported",
        ),
        (
            "network_mode: 'service:db'",
            "services.web.network_mode",
            "not supported",
        ),
        (
            "network_mode: host\n    ports: ['80:80']",
            "services.web.ports",
            "network_mode: host",
        ),
        (
            "network_mode: none\n    networks: [default]",
            "services.web.networks",
            "network_mode: none",
        ),
        (
            "network_mode: host\n    x-berth: {route: {}}",
            "services.web.x-berth.route",
            "network_mode: host",
        ),
        (
            "network_mode: host\n    x-berth: {health: {http: /}}",
            "services.web.x-berth.health",
            "network_mode: host",
        ),
        ("pid: 'container:x'", "services.web.pid", "not supported"),
        (
            "userns_mode: private",
            "services.web.userns_mode",
            "not supported",
        ),
        ("ipc: 'service:db'", "services.web.ipc", "not supported"),
        ("devices: ['dev/x']", "services.web.devices[0]", "absolute"),
        (
            "devices: ['/dev/x:/dev/y:rwx']",
            "services.web.devices[0]",
            "permissions",
        ),
        (
            "devices: ['/a:/b:r:w']",
            "services.web.devices[0]",
            "HOST[:CONTAINER[:PERMS]]",
        ),
        ("privileged: maybe", "services.web.privileged", ""),
    ];
    for (extra, want_path, want_msg) in cases {
        let (path, message) = invalid(&format!("services:\n  web:\n    image: a\n    {extra}\n"));
        assert_eq!(path, *want_path, "{extra}");
        assert!(message.contains(want_msg), "{extra}: {message}");
    }
}
