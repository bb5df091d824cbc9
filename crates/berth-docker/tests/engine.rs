//! `berth-docker` against the real engine at `DOCKER_HOST` / `/var/run/docker.sock`.
//!
//! Every object is labelled `berth.test=<run id>` through a `TestRun`, whose drop removes them
//! even when an assertion fails; nothing else on the host is touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_docker::{ContainerSpec, Docker, DockerError, HostSpec, LogSource};
use berth_testkit::{testapp_image, TestRun};

async fn docker() -> Docker {
    Docker::connect()
        .await
        .expect("a Docker engine (set DOCKER_HOST)")
}

fn labels(run: &TestRun) -> BTreeMap<String, String> {
    [run.label()].into()
}

fn app_spec(run: &TestRun, image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_string(),
        env: vec!["VERSION=engine-test".into()],
        labels: labels(run),
        exposed_ports: vec!["8080/tcp".into()],
        host: HostSpec {
            init: Some(false),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Polls an async condition every 50 ms until it yields a value or the timeout passes.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn negotiates_a_supported_version() {
    let d = docker().await;
    let (major, minor) = d.api_version().split_once('.').unwrap();
    let v = (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap());
    assert!(((1, 41)..=(1, 45)).contains(&v), "{}", d.api_version());
    assert!(d.endpoint().starts_with("unix://") || d.endpoint().starts_with("tcp://"));
    d.ping().await.unwrap();
}

#[tokio::test]
async fn unreachable_engine_names_the_socket_and_docker_host() {
    let err = Docker::connect_to("unix:///nonexistent/berth/docker.sock")
        .await
        .unwrap_err();
    assert!(err.is_unreachable());
    assert_eq!(
        err.to_string(),
        "cannot reach the Docker engine at unix:///nonexistent/berth/docker.sock (set DOCKER_HOST to use another): No such file or directory"
    );
    let err = Docker::connect_to("tcp://127.0.0.1:1").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the Docker engine at tcp://127.0.0.1:1 (set DOCKER_HOST"),
        "{err}"
    );
    assert!(matches!(
        Docker::connect_to("ssh://x").await,
        Err(DockerError::InvalidHost(_))
    ));
}

#[tokio::test]
async fn container_lifecycle() {
    let run = TestRun::new("docker-lifecycle");
    let image = testapp_image(&run);
    let d = docker().await;

    let net_a = run.name("a");
    let net_b = run.name("b");
    let net_a_id = d
        .create_network(&net_a, &labels(&run), false)
        .await
        .unwrap();
    d.create_network(&net_b, &labels(&run), true).await.unwrap();
    assert!(d
        .create_network(&net_a, &labels(&run), false)
        .await
        .unwrap_err()
        .is_conflict());

    let mut spec = app_spec(&run, &image);
    spec.networks = [
        (net_a.clone(), vec!["web".to_string()]),
        (net_b.clone(), vec!["web-b".to_string()]),
    ]
    .into();
    spec.stop_timeout_secs = Some(2);
    let name = run.name("web-1");
    let id = d.create_container(&name, &spec).await.unwrap();
    let again = d.create_container(&name, &spec).await.unwrap_err();
    assert!(again.is_conflict(), "{again}");

    // Files go in before start (secrets, configs); scratch has no shell, so only the call is checked.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let secret = b"s3cret\n";
    header.set_size(secret.len() as u64);
    header.set_mode(0o400);
    header.set_cksum();
    tar.append_data(&mut header, "secret.txt", &secret[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    d.put_archive(&id, "/", tar.clone()).await.unwrap();
    assert!(d
        .put_archive(&id, "/no/such/dir", tar)
        .await
        .unwrap_err()
        .is_not_found());

    d.start_container(&id).await.unwrap();
    d.start_container(&id).await.unwrap(); // already started: 304 is Ok

    let c = d.inspect_container(&name).await.unwrap();
    assert_eq!(c.id, id);
    assert_eq!(c.name, name);
    assert!(c.state.running, "{:?}", c.state);
    assert_eq!(c.state.status, "running");
    assert_eq!(c.state.health, None);
    assert!(c.image.starts_with("sha256:"));
    assert_eq!(c.image_ref, image);
    assert_eq!(c.labels.get("berth.test"), Some(&run.id));
    assert!(!c.tty);
    let ep = &c.networks[&net_a];
    assert_eq!(ep.network_id, net_a_id);
    assert!(!ep.ip_address.is_empty(), "{ep:?}");
    assert!(ep.aliases.contains(&"web".to_string()), "{ep:?}");
    assert!(c.networks[&net_b].aliases.contains(&"web-b".to_string()));
    assert!(!c.networks[&net_b].ip_address.is_empty());

    // Latency of the call reconcilers make most.
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        d.inspect_container(&id).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "inspect_container latency over {} calls: median {:?}, p90 {:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10],
        samples[samples.len() - 1]
    );

    let text = eventually(
        Duration::from_secs(10),
        "the startup line in the logs",
        || async {
            let text = d
                .logs(&id, false, None, false)
                .await
                .unwrap()
                .collect_text()
                .await
                .unwrap();
            text.contains("berth-testapp engine-test listening on port 8080")
                .then_some(text)
        },
    )
    .await;
    assert!(text.ends_with('\n'));
    let mut tail = d.logs(&id, false, Some(1), true).await.unwrap();
    let chunk = tail.recv().await.unwrap().unwrap();
    assert_eq!(chunk.stream, LogSource::Stdout);
    assert!(
        chunk.data.starts_with(b"20"),
        "timestamps requested: {chunk:?}"
    );

    d.restart_container(&id, 2).await.unwrap();
    assert!(d.inspect_container(&id).await.unwrap().state.running);

    // A die event follows a kill.
    let mut events = d.events(&[run.label_filter()]).await.unwrap();
    d.kill_container(&id, "SIGKILL").await.unwrap();
    let die = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events
                .recv()
                .await
                .expect("event stream ended")
                .expect("event");
            if e.typ == "container" && e.action == "die" && e.id == id {
                return e;
            }
        }
    })
    .await
    .expect("a die event within 10 s");
    assert_eq!(die.exit_code(), Some(137));
    assert_eq!(die.attributes.get("berth.test"), Some(&run.id));
    assert!(die.time_nano > 0);
    drop(events);

    let c = d.inspect_container(&id).await.unwrap();
    assert!(!c.state.running);
    assert_eq!(c.state.exit_code, 137);
    assert!(d
        .kill_container(&id, "SIGKILL")
        .await
        .unwrap_err()
        .is_conflict());
    d.stop_container(&id, 1).await.unwrap(); // already stopped: 304 is Ok

    d.remove_container(&id, true, true).await.unwrap();
    assert!(d.inspect_container(&id).await.unwrap_err().is_not_found());
    assert!(d
        .remove_container(&id, true, true)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(d.stop_container(&id, 1).await.unwrap_err().is_not_found());
    d.remove_network(&net_a).await.unwrap();
    d.remove_network(&net_b).await.unwrap();
    assert!(d.remove_network(&net_a).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn follow_logs_end_when_the_container_stops() {
    let run = TestRun::new("docker-follow");
    let image = testapp_image(&run);
    let d = docker().await;
    let mut spec = app_spec(&run, &image);
    spec.env = vec!["EXIT_CODE=3".into(), "RUN_MS=300".into()];
    let id = d.create_container(&run.name("job"), &spec).await.unwrap();
    d.start_container(&id).await.unwrap();
    let logs = d.logs(&id, true, None, false).await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), logs.collect_text())
        .await
        .expect("follow ends when the job exits")
        .unwrap();
    assert!(text.contains("job running for 300 ms"), "{text}");
    assert!(text.contains("job done"), "{text}");
    let c = d.inspect_container(&id).await.unwrap();
    assert_eq!((c.state.running, c.state.exit_code), (false, 3));
}

#[tokio::test]
async fn label_filters_return_only_the_runs_objects() {
    let mine = TestRun::new("docker-list-mine");
    let other = TestRun::new("docker-list-other");
    let image = testapp_image(&mine);
    let d = docker().await;

    for run in [&mine, &other] {
        d.create_network(&run.name("net"), &labels(run), false)
            .await
            .unwrap();
        d.create_volume(&run.name("vol"), &labels(run))
            .await
            .unwrap();
        d.create_container(&run.name("c"), &app_spec(run, &image))
            .await
            .unwrap();
    }
    // Creating an existing volume is not an error.
    d.create_volume(&mine.name("vol"), &labels(&mine))
        .await
        .unwrap();

    let f = [mine.label_filter()];
    let containers = d.list_containers(&f, true).await.unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].names, vec![mine.name("c")]);
    assert_eq!(containers[0].state, "created");
    assert_eq!(containers[0].image, image);
    assert!(containers[0].image_id.starts_with("sha256:"));
    assert!(
        d.list_containers(&f, false).await.unwrap().is_empty(),
        "not running"
    );

    let nets = d.list_networks(&f).await.unwrap();
    assert_eq!(
        nets.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        vec![mine.name("net")]
    );
    assert_eq!(nets[0].labels.get("berth.test"), Some(&mine.id));
    let vols = d.list_volumes(&f).await.unwrap();
    assert_eq!(
        vols.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
        vec![mine.name("vol")]
    );

    // A bare key filter matches both runs (and possibly other tests running now): at least ours.
    let all = d
        .list_containers(&["berth.test".to_string()], true)
        .await
        .unwrap();
    for run in [&mine, &other] {
        assert!(all.iter().any(|c| c.names == vec![run.name("c")]));
    }
    // Two filters must both hold.
    let both = d
        .list_containers(&[mine.label_filter(), other.label_filter()], true)
        .await
        .unwrap();
    assert!(both.is_empty(), "{both:?}");

    d.remove_volume(&other.name("vol")).await.unwrap();
    assert!(d
        .remove_volume(&other.name("vol"))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn images() {
    let run = TestRun::new("docker-images");
    let image = testapp_image(&run);
    let d = docker().await;
    let img = d
        .inspect_image(&image)
        .await
        .unwrap()
        .expect("the test image");
    assert!(img.id.starts_with("sha256:"));
    assert_eq!(img.exposed_ports, vec!["8080/tcp"]);
    assert!(img.repo_tags.contains(&image));
    assert!(img.size > 0);
    assert_eq!(img.labels.get("berth.test"), Some(&run.id));

    let missing = format!("berth-missing:{}", run.id);
    assert_eq!(d.inspect_image(&missing).await.unwrap(), None);
    let err = d
        .create_container(
            &run.name("nope"),
            &ContainerSpec {
                image: missing,
                labels: labels(&run),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// Images listed by label (what retention acts on), removal refused while a container uses the
/// image (retention's "keep"), and the engine's image disk use (the disk alert's measure).
#[tokio::test]
async fn images_by_label_in_use_refusal_and_disk_use() {
    let run = TestRun::new("engine-images");
    let image = testapp_image(&run);
    let d = docker().await;
    let listed = d.list_images(&[run.label_filter()]).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].repo_tags.contains(&image), "{listed:?}");
    assert!(listed[0].size > 0 && listed[0].created > 0);
    assert_eq!(listed[0].labels.get("berth.test"), Some(&run.id));
    assert!(d
        .list_images(&["berth.test=no-such-run-label".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(d.image_disk_use().await.unwrap() >= u64::try_from(listed[0].size).unwrap());

    let id = d
        .create_container(&run.name("holder"), &app_spec(&run, &image))
        .await
        .unwrap();
    assert!(matches!(
        d.remove_image(&image, false, false).await,
        Err(DockerError::Conflict(_))
    ));
    d.remove_container(&id, true, true).await.unwrap();
    d.remove_image(&image, false, false).await.unwrap();
    assert!(d.inspect_image(&image).await.unwrap().is_none());
}

#[tokio::test]
async fn network_on_a_chosen_subnet_and_an_overlap_refused() {
    let run = TestRun::new("docker-subnet");
    let d = docker().await;
    // A /24 in a range nothing else here uses, different per test process.
    let third = std::process::id() % 256;
    let subnet = format!("10.251.{third}.0/24");
    let name = run.name("net");
    let id = d
        .create_network_in(&name, &labels(&run), false, Some(&subnet))
        .await
        .unwrap();
    let listed = d.list_networks(&[run.label_filter()]).await.unwrap();
    let net = listed.iter().find(|n| n.id == id).expect("listed");
    assert_eq!(net.subnets().collect::<Vec<_>>(), vec![subnet.as_str()]);
    let err = d
        .create_network_in(
            &run.name("other"),
            &labels(&run),
            false,
            Some(&format!("10.251.{third}.128/25")),
        )
        .await
        .unwrap_err();
    assert!(err.is_address_overlap(), "{err}");
    assert!(!err.is_conflict());
    d.remove_network(&id).await.unwrap();
}

#[tokio::test]
async fn exec_runs_a_command_and_reports_its_exit_code() {
    let run = TestRun::new("docker-exec");
    let image = testapp_image(&run);
    let d = docker().await;
    let id = d
        .create_container(&run.name("exec"), &app_spec(&run, &image))
        .await
        .unwrap();
    let cmd = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let t = Duration::from_secs(5);
    // Not running yet: the engine refuses an exec with a conflict.
    let err = d
        .exec_run(&id, &cmd(&["/berth-testapp", "probe"]), t)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    d.start_container(&id).await.unwrap();
    let ok = eventually(Duration::from_secs(10), "the probe to pass", || async {
        (d.exec_run(&id, &cmd(&["/berth-testapp", "probe"]), t)
            .await
            .unwrap()
            == berth_docker::ExecOutcome::Exited(0))
        .then_some(())
    });
    ok.await;
    // A probe of a closed port fails with exit code 1.
    assert_eq!(
        d.exec_run(&id, &cmd(&["/berth-testapp", "probe", "1"]), t)
            .await
            .unwrap(),
        berth_docker::ExecOutcome::Exited(1)
    );
    // A command that does not exist fails at start, with neither a conflict nor a not-found.
    let err = d
        .exec_run(&id, &cmd(&["/no/such/check"]), t)
        .await
        .unwrap_err();
    assert!(!err.is_conflict() && !err.is_not_found(), "{err}");
    // A check that outlives its timeout: `/sleep` answers after 3 s.
    let slow = cmd(&["/berth-testapp", "probe", "8080", "/sleep?ms=3000"]);
    let t0 = Instant::now();
    assert_eq!(
        d.exec_run(&id, &slow, Duration::from_millis(300))
            .await
            .unwrap(),
        berth_docker::ExecOutcome::TimedOut
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    d.remove_container(&id, true, false).await.unwrap();
    let err = d
        .exec_run(&id, &cmd(&["/berth-testapp", "probe"]), t)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
