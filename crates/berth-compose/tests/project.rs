//! Whole-project cases: anchors and `<<`, override files, interpolation, profiles, a realistic
//! multi-service file, serde round trip, hostile input, and the CLI helpers.

use std::collections::BTreeMap;

use berth_compose::*;

fn bundle(files: &[(&str, &str)]) -> Bundle {
    let mut b = Bundle {
        compose_files: vec!["compose.yaml".into()],
        project_dir: "/srv/app".into(),
        ..Bundle::default()
    };
    for (k, v) in files {
        b.files.insert((*k).into(), (*v).into());
    }
    b
}

#[test]
fn anchors_and_merge_keys() {
    let compose = r"
x-defaults: &defaults
  image: app:1
  restart: on-failure
  environment: &env
    LOG: info
    MODE: prod
  labels: [team=core]
services:
  api:
    <<: *defaults
    environment:
      <<: *env
      MODE: dev
  worker:
    <<: *defaults
    image: app:2
    command: [work]
";
    let p = load(&bundle(&[("compose.yaml", compose)])).unwrap();
    let api = &p.services["api"];
    assert_eq!(api.image, "app:1");
    assert_eq!(api.restart.condition, RestartCondition::OnFailure);
    assert_eq!(api.environment["LOG"], "info");
    assert_eq!(api.environment["MODE"], "dev");
    assert_eq!(api.labels["team"], "core");
    let worker = &p.services["worker"];
    assert_eq!(worker.image, "app:2");
    assert_eq!(worker.environment["MODE"], "prod");
    assert_eq!(worker.command, Some(vec!["work".into()]));
}

#[test]
fn override_files_merge_like_compose() {
    let base = r"
services:
  web:
    image: web:1
    command: [serve, --port, '80']
    environment: [A=1, B=2]
    labels: {x: '1'}
    ports: ['8000:80']
    expose: ['3000']
    extra_hosts: ['a:10.0.0.1']
    volumes: ['./data:/data', 'cache:/cache']
    healthcheck:
      test: [CMD, a]
      interval: 10s
    deploy:
      replicas: 2
      resources: {limits: {cpus: '1'}}
volumes:
  cache: {}
";
    let over = r"
services:
  web:
    image: web:2
    command: serve
    environment: {B: '3', C: '4'}
    labels: [y=2]
    ports: ['8000:80', '9000:90']
    expose: [3000, 3001]
    extra_hosts: {b: 10.0.0.2}
    volumes: ['./other:/data:ro']
    healthcheck:
      test: [CMD-SHELL, b]
    deploy:
      resources: {limits: {memory: 1g}}
  extra:
    image: extra
";
    let mut b = bundle(&[("compose.yaml", base), ("compose.override.yaml", over)]);
    b.compose_files.push("compose.override.yaml".into());
    let p = load(&b).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image, "web:2");
    assert_eq!(web.command, Some(vec!["serve".into()]));
    let env: BTreeMap<String, String> = [("A", "1"), ("B", "3"), ("C", "4")]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    assert_eq!(web.environment, env);
    assert_eq!(web.labels.len(), 2);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.expose, [3000, 3001]);
    assert_eq!(web.extra_hosts, ["a:10.0.0.1", "b:10.0.0.2"]);
    // Same target: the override's mount replaces the base's.
    assert_eq!(web.mounts.len(), 2);
    let data = web.mounts.iter().find(|m| m.target == "/data").unwrap();
    assert_eq!(data.source.as_deref(), Some("/srv/app/other"));
    assert!(data.read_only);
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "b"]);
    assert_eq!(hc.interval_ms, Some(10_000));
    assert_eq!(web.replicas, 2);
    assert_eq!(web.resources.cpus, Some(1.0));
    assert_eq!(web.resources.memory_bytes, Some(1 << 30));
    assert!(p.services.contains_key("extra"));
}

#[test]
fn build_merges_across_files() {
    let base = "services:\n  web:\n    build: ./app\n    x-berth: {route: {}}\n  api:\n    build:\n      context: api\n      args: [A=1, B=2]\n";
    let over = "services:\n  web:\n    build: {target: prod}\n  api:\n    image: shop/api:2\n    build:\n      args: {B: '3'}\n      dockerfile: Dockerfile.prod\n";
    let mut b = bundle(&[("compose.yaml", base), ("prod.yaml", over)]);
    b.compose_files.push("prod.yaml".into());
    let p = load(&b).unwrap();
    let web = p.services["web"].build.as_ref().unwrap();
    assert_eq!(
        (web.context.as_str(), web.target.as_deref()),
        ("app", Some("prod"))
    );
    let api = &p.services["api"];
    assert_eq!(api.image, "shop/api:2");
    let ab = api.build.as_ref().unwrap();
    assert_eq!(ab.context, "api");
    assert_eq!(ab.dockerfile, "Dockerfile.prod");
    assert_eq!(ab.args["A"], "1");
    assert_eq!(ab.args["B"], "3");
    // Revisions stored before `build:` existed still load.
    let mut v = serde_json::to_value(&p.services["api"]).unwrap();
    v.as_object_mut().unwrap().remove("build");
    let old: Service = serde_json::from_value(v).unwrap();
    assert_eq!(old.build, None);
}

#[test]
fn interpolation_forms_and_sources() {
    let compose = r#"
services:
  web:
    image: "${REGISTRY:-docker.io}/app:${TAG}"
    environment:
      SHELL_WINS: $WHO
      FROM_DOTENV: ${ONLY_DOTENV}
      ALT: ${TAG:+tagged}
      EMPTY_DEFAULT: ${EMPTY-unused}
      UNSET: ${NOT_SET_AT_ALL}
      LITERAL: "$$HOME and $${X}"
      NESTED: ${MISSING:-${TAG}-fallback}
      PASSED_THROUGH:
    ports: ["${PORT:-8000}:80"]
    deploy:
      replicas: ${REPLICAS}
"#;
    let mut b = bundle(&[
        ("compose.yaml", compose),
        (
            ".env",
            "WHO=dotenv\nONLY_DOTENV=yes\nREPLICAS=3\nEMPTY=\nexport PASSED_THROUGH='from .env'\n",
        ),
    ]);
    b.env.insert("WHO".into(), "shell".into());
    b.env.insert("TAG".into(), "1.2".into());
    b.env.insert("PORT".into(), "8081".into());
    let p = load(&b).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image, "docker.io/app:1.2");
    let e = &web.environment;
    assert_eq!(e["SHELL_WINS"], "shell");
    assert_eq!(e["FROM_DOTENV"], "yes");
    assert_eq!(e["ALT"], "tagged");
    assert_eq!(e["EMPTY_DEFAULT"], "");
    assert_eq!(e["UNSET"], "");
    assert_eq!(e["LITERAL"], "$HOME and ${X}");
    assert_eq!(e["NESTED"], "1.2-fallback");
    assert_eq!(e["PASSED_THROUGH"], "from .env");
    assert_eq!(web.ports[0].published, Some(8081));
    assert_eq!(web.replicas, 3);
}

#[test]
fn env_file_values_are_not_interpolated() {
    let mut b = bundle(&[
        (
            "compose.yaml",
            "services:\n  web: {image: a, env_file: web.env}\n",
        ),
        ("web.env", "RAW=${TAG}\nKEEP=$HOME\n"),
    ]);
    b.env.insert("TAG".into(), "x".into());
    let p = load(&b).unwrap();
    assert_eq!(p.services["web"].environment["RAW"], "${TAG}");
    assert_eq!(p.services["web"].environment["KEEP"], "$HOME");
}

#[test]
fn profiles_select_services() {
    let compose = r"
services:
  web: {image: a}
  debug: {image: b, profiles: [debug, dev]}
  tools: {image: c, profiles: [tools]}
";
    let names = |profiles: &[&str]| {
        let mut b = bundle(&[("compose.yaml", compose)]);
        b.profiles = profiles.iter().map(|s| (*s).into()).collect();
        load(&b).unwrap().services.into_keys().collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), ["web"]);
    assert_eq!(names(&["dev"]), ["debug", "web"]);
    assert_eq!(names(&["debug", "tools"]), ["debug", "tools", "web"]);
    assert_eq!(names(&["other"]), ["web"]);
}

#[test]
fn top_level_objects() {
    let compose = r"
networks:
  front: {}
  ext: {external: true, name: shared_net}
  back: {internal: true, labels: {a: b}}
  default: {name: app_default}
volumes:
  data:
  old: {external: true, name: legacy}
secrets:
  db_pw: {file: ./secrets/db_pw}
  token: {environment: API_TOKEN}
configs:
  nginx: {file: conf/nginx.conf}
  inline: {content: 'port=${PORT:-80}'}
services: {}
";
    let mut b = bundle(&[
        ("compose.yaml", compose),
        ("secrets/db_pw", "hunter2\n"),
        ("conf/nginx.conf", "server {}"),
    ]);
    b.env.insert("API_TOKEN".into(), "t0k".into());
    let p = load(&b).unwrap();
    assert_eq!(p.networks.len(), 4);
    assert!(p.networks["ext"].external);
    assert_eq!(p.networks["ext"].name.as_deref(), Some("shared_net"));
    assert!(p.networks["back"].internal);
    assert_eq!(p.networks["back"].labels["a"], "b");
    assert_eq!(p.networks["default"].name.as_deref(), Some("app_default"));
    assert_eq!(p.volumes["data"], Volume::default());
    assert!(p.volumes["old"].external);
    assert_eq!(p.secrets["db_pw"].content, "hunter2\n");
    assert_eq!(p.secrets["token"].content, "t0k");
    assert_eq!(p.configs["nginx"].content, "server {}");
    assert_eq!(p.configs["inline"].content, "port=80");

    // With nothing declared, `default` still exists.
    let p = load(&bundle(&[("compose.yaml", "services:\n  a: {image: x}\n")])).unwrap();
    assert_eq!(p.networks.keys().collect::<Vec<_>>(), ["default"]);
    let p = load(&bundle(&[("compose.yaml", "")])).unwrap();
    assert!(p.services.is_empty());
}

const REALISTIC: &str = r#"
name: shop
x-logging: &app
  restart: unless-stopped
  env_file: [.env.app]
  networks: [backend]

services:
  proxy:
    image: traefik:v3.1
    command: --providers.docker=true --entrypoints.web.address=:80
    ports:
      - "80:80"
      - target: 443
        published: 443
        protocol: tcp
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock:ro
    networks: [frontend, backend]
    depends_on:
      api:
        condition: service_healthy

  api:
    <<: *app
    image: registry.example.com/shop/api:${API_TAG:-latest}
    environment:
      DATABASE_URL: postgres://shop:${DB_PASSWORD}@db:5432/shop
      UMASK: 0022
      WORKERS: 4
      DEBUG: "false"
    expose: [8000]
    healthcheck:
      test: ["CMD", "curl", "-fsS", "http://localhost:8000/health"]
      interval: 10s
      timeout: 3s
      retries: 5
      start_period: 20s
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
    secrets:
      - db_password
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        delay: 5s
        order: start-first
        failure_action: rollback
      resources:
        limits: {cpus: "1.5", memory: 768M}
        reservations: {memory: 256M}
    x-berth:
      route:
        - {path_prefix: /api, host: shop.example.com, port: 8000, strip_prefix: true}
      health: {http: /health, port: 8000}

  worker:
    <<: *app
    image: registry.example.com/shop/api:${API_TAG:-latest}
    command: ["celery", "-A", "shop", "worker"]
    stop_grace_period: 1m30s
    depends_on: [db, cache]

  db:
    image: postgres:16
    environment:
      POSTGRES_USER: shop
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    volumes:
      - pgdata:/var/lib/postgresql/data
      - ./initdb:/docker-entrypoint-initdb.d:ro
    healthcheck:
      test: pg_isready -U shop
      interval: 5s
    secrets: [db_password]
    networks:
      backend:
        aliases: [postgres]

  cache:
    image: redis:7-alpine
    command: redis-server --save "" --appendonly no
    tmpfs: [/data]
    networks: [backend]

  adminer:
    image: adminer
    profiles: [debug]
    ports: ["8080:8080"]

networks:
  frontend:
  backend:
    internal: true

volumes:
  pgdata:

secrets:
  db_password:
    file: ./secrets/db_password.txt
"#;

fn realistic_bundle() -> Bundle {
    let mut b = bundle(&[
        ("compose.yaml", REALISTIC),
        (".env", "API_TAG=2.4.1\n"),
        (".env.app", "LOG_LEVEL=info\nWORKERS=2\n"),
        ("secrets/db_password.txt", "pw"),
    ]);
    b.env.insert("DB_PASSWORD".into(), "s3cr3t".into());
    b
}

#[test]
fn realistic_multi_service_file() {
    let p = load(&realistic_bundle()).unwrap();
    assert_eq!(
        p.services.keys().collect::<Vec<_>>(),
        ["api", "cache", "db", "proxy", "worker"]
    );
    let api = &p.services["api"];
    assert_eq!(api.image, "registry.example.com/shop/api:2.4.1");
    assert_eq!(
        api.environment["DATABASE_URL"],
        "postgres://shop:s3cr3t@db:5432/shop"
    );
    assert_eq!(api.environment["UMASK"], "0022");
    assert_eq!(api.environment["WORKERS"], "4");
    assert_eq!(api.environment["LOG_LEVEL"], "info");
    assert_eq!(api.environment["DEBUG"], "false");
    assert_eq!(api.restart.condition, RestartCondition::UnlessStopped);
    assert_eq!(api.replicas, 3);
    assert_eq!(api.update_config.order, Some(UpdateOrder::StartFirst));
    assert_eq!(api.update_config.delay_ms, 5000);
    assert_eq!(api.resources.cpus, Some(1.5));
    assert_eq!(api.resources.memory_bytes, Some(768 << 20));
    assert_eq!(api.networks.keys().collect::<Vec<_>>(), ["backend"]);
    assert_eq!(
        api.berth.routes[0].host.as_deref(),
        Some("shop.example.com")
    );
    assert_eq!(api.berth.health.as_ref().unwrap().http, "/health");
    assert_eq!(api.depends_on["db"], DependsCondition::ServiceHealthy);
    let proxy = &p.services["proxy"];
    assert_eq!(proxy.command.as_ref().unwrap().len(), 2);
    assert_eq!(proxy.ports.len(), 2);
    assert_eq!(proxy.mounts[0].kind, MountKind::Bind);
    let db = &p.services["db"];
    assert_eq!(db.mounts[0].source.as_deref(), Some("pgdata"));
    assert_eq!(db.mounts[1].source.as_deref(), Some("/srv/app/initdb"));
    assert_eq!(db.networks["backend"].aliases, ["postgres"]);
    assert_eq!(
        db.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "pg_isready -U shop"]
    );
    assert_eq!(
        p.services["cache"].command.as_ref().unwrap(),
        &["redis-server", "--save", "", "--appendonly", "no"]
    );
    assert_eq!(p.services["worker"].stop_grace_period_ms, Some(90_000));
    assert_eq!(p.secrets["db_password"].content, "pw");
    assert!(p.networks["backend"].internal);

    let mut with_debug = realistic_bundle();
    with_debug.profiles = vec!["debug".into()];
    assert!(load(&with_debug).unwrap().services.contains_key("adminer"));
}

#[test]
fn project_round_trips_through_json() {
    let p = load(&realistic_bundle()).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let back: Project = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert!(json.contains("\"service_healthy\""));
    assert!(json.contains("\"unless_stopped\""));
    assert!(json.contains("\"start_first\""));
    // Deterministic: the same input serializes the same (the control plane hashes it).
    assert_eq!(
        serde_json::to_string(&load(&realistic_bundle()).unwrap()).unwrap(),
        json
    );
    let b = realistic_bundle();
    let b2: Bundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
    assert_eq!(load(&b2).unwrap(), p);
}

#[test]
fn referenced_files_lists_env_files_secrets_and_configs() {
    let other = "services:\n  w: {image: x, env_file: [./web.env, {path: opt.env, required: false}]}\nconfigs:\n  c: {file: conf/../conf/a.conf}\n";
    let sources = vec![
        ("compose.yaml".to_owned(), REALISTIC.to_owned()),
        ("other.yaml".to_owned(), other.to_owned()),
    ];
    assert_eq!(
        referenced_files(&sources).unwrap(),
        [
            ".env.app",
            "secrets/db_password.txt",
            "web.env",
            "opt.env",
            "conf/a.conf"
        ]
    );
    let bad = vec![("bad.yaml".to_owned(), "a: [".to_owned())];
    assert!(
        matches!(referenced_files(&bad), Err(ComposeError::Syntax { file, .. }) if file == "bad.yaml")
    );
}

#[test]
fn referenced_variables_lists_every_name() {
    let extra = "services:\n  b:\n    build: {args: [BUILD_ARG, C=1]}\n  w:\n    image: x\n    environment: [PASS_ME, A=1]\n    labels: {l: $$NOT_A_VAR}\n  v:\n    image: y\n    environment: {ALSO_ME: }\nsecrets:\n  s: {environment: SECRET_VAR}\n";
    let sources = vec![
        ("compose.yaml".to_owned(), REALISTIC.to_owned()),
        ("x.yaml".to_owned(), extra.to_owned()),
        ("broken.yaml".to_owned(), "a: [ ${FROM_BROKEN}".to_owned()),
    ];
    assert_eq!(
        referenced_variables(&sources),
        [
            "ALSO_ME",
            "API_TAG",
            "BUILD_ARG",
            "DB_PASSWORD",
            "FROM_BROKEN",
            "PASS_ME",
            "SECRET_VAR"
        ]
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let snippets: &[&str] = &[
        "",
        "~",
        "---\n...\n",
        "a: 1\n---\nb: 2\n",
        "\u{0}\u{1}\u{2}",
        "services:\n  web:\n",
        "services:\n  web: ~\n",
        "services:\n  ~: {image: a}\n",
        "services:\n  '': {image: a}\n",
        "services:\n  web: {image: ~}\n",
        "services:\n  web: [1, 2]\n",
        "services: 5\n",
        "services: {web: {image: a, ports: [~, [], {}]}}\n",
        "services: {web: {image: a, ports: ['::::', ':', '/', '-', '1-', '-1', '65536', '0', '[::1', '1:2:3:4:5']}}\n",
        "services: {web: {image: a, volumes: [':', '::', '', '/:/', {}]}}\n",
        "services: {web: {image: a, environment: {'': x}}}\n",
        "services: {web: {image: a, environment: ['=', '==', '']}}\n",
        "services: {web: {image: a, healthcheck: ~}}\n",
        "services: {web: {image: a, healthcheck: []}}\n",
        "services: {web: {image: a, healthcheck: {test: []}}}\n",
        "services: {web: {image: a, deploy: ~}}\n",
        "services: {web: {image: a, deploy: []}}\n",
        "services: {web: {image: a, deploy: {resources: {limits: ~}}}}\n",
        "services: {web: {image: a, deploy: {resources: {limits: {memory: '99999999999999999999999999p'}}}}}\n",
        "services: {web: {image: a, stop_grace_period: '99999999999999999999999999h'}}\n",
        "services: {web: {image: a, stop_grace_period: '1.s'}}\n",
        "services: {web: {image: a, stop_grace_period: '.5s'}}\n",
        "services: {web: {image: a, command: '\\\\'}}\n",
        "services: {web: {image: a, command: '\"\\\\'}}\n",
        "services: {web: {image: a, x-berth: ~}}\n",
        "services: {web: {image: a, x-berth: {route: ~, health: ~}}}\n",
        "services: {web: {image: a, x-berth: []}}\n",
        "services: {web: {image: a, depends_on: {db: ~}}}\n",
        "services: {web: {image: a, networks: {default: []}}}\n",
        "services: {web: {image: a, secrets: [{}]}}\n",
        "services: {web: {image: a, env_file: {}}}\n",
        "services: {web: {image: a, env_file: [{}]}}\n",
        "services: {web: {image: a, extra_hosts: {h: [1, 2]}}}\n",
        "services: {web: {image: '${${${${${${${${${${${${${${${${${${${${A}}}}}}}}}}}}}}}}}}}}'}}\n",
        "services: {web: {image: '${A:-${B:-${C:-${D:-${E:-${F:-${G:-${H:-${I:-${J:-${K:-${L:-${M:-${N:-${O:-${P:-${Q:-${R:-x}}}}}}}}}}}}}}}}}}'}}\n",
        "services: {web: {image: '${é}'}}\n",
        "services: {web: {image: '$é'}}\n",
        "services: {web: {image: 'ü${A:-ß}€'}}\n",
        "a: &a [*a]\n",
        "a: &a\n  b: *a\n",
        "x: &x [1]\ny: &y [*x, *x, *x, *x, *x, *x, *x, *x]\nz: [*y, *y, *y, *y, *y, *y, *y, *y]\n",
        "<<: 5\n",
        "services:\n  web:\n    <<: [1, 2]\n",
        "services:\n  web:\n    <<: *undefined\n",
        "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]",
        "!!binary aGVsbG8=\n",
        "services: !!str 5\n",
        "a: !custom x\n",
        "\t- tab\n",
        "'unterminated\n",
        "key: \"bad \\q escape\"\n",
        "? [complex]\n: key\n",
        "%YAML 1.2\n---\nservices: {}\n",
        "\u{feff}services: {}\n",
    ];
    let mut b = bundle(&[(".env", "A=1\n")]);
    b.profiles = vec!["p".into()];
    for s in snippets {
        b.files.insert("compose.yaml".into(), (*s).into());
        let r = std::panic::catch_unwind(|| load(&b));
        assert!(r.is_ok(), "load panicked on {s:?}");
        let sources = vec![("compose.yaml".to_owned(), (*s).to_owned())];
        assert!(
            std::panic::catch_unwind(|| referenced_files(&sources)).is_ok(),
            "{s:?}"
        );
        assert!(
            std::panic::catch_unwind(|| referenced_variables(&sources)).is_ok(),
            "{s:?}"
        );
    }
}
