//! The testkit against the real engine: images build, containers of the image serve HTTP, and a
//! dropped run leaves nothing carrying its label behind.

use std::time::Duration;

use berth_testkit::{docker_cli, http_get, testapp_image, testapp_image_tagged, wait_for, TestRun};

fn labelled(kind: &[&str], filter: &str) -> Vec<String> {
    let mut args = kind.to_vec();
    let f = format!("label={filter}");
    args.extend(["-q", "--filter", &f]);
    docker_cli(&args)
        .expect("docker list")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn image_builds_serves_and_everything_is_removed_on_drop() {
    let run = TestRun::new("testkit-drop");
    let filter = run.label_filter();
    let label_arg = format!("--label={filter}");

    let image = testapp_image(&run);
    assert_eq!(image, format!("berth-testapp:{}", run.id));
    let v2 = testapp_image_tagged(&run, "v2");
    let id1 = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).unwrap();
    let id2 = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &v2]).unwrap();
    assert_ne!(id1, id2, "tagged images must have distinct IDs");
    let labels =
        docker_cli(&["image", "inspect", "-f", "{{json .Config.Labels}}", &image]).unwrap();
    assert!(labels.contains(&run.id), "{labels}");

    // A network, a volume and a container that publishes the app on a loopback port.
    let net = run.name("net");
    docker_cli(&["network", "create", &label_arg, &net]).unwrap();
    docker_cli(&["volume", "create", &label_arg, &run.name("vol")]).unwrap();
    let cid = docker_cli(&[
        "run",
        "-d",
        &label_arg,
        "--network",
        &net,
        "-e",
        "VERSION=kit",
        "-p",
        "127.0.0.1::8080",
        &image,
    ])
    .unwrap();
    let cid = cid.trim();
    let port = docker_cli(&["port", cid, "8080/tcp"]).unwrap();
    let addr = port.lines().next().unwrap().trim().to_string();
    let (status, body) = wait_for(Duration::from_secs(10), "the test app to answer", || {
        http_get(&addr, "/healthz", None, Duration::from_secs(2)).ok()
    });
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, body) = http_get(&addr, "/", Some("example.test"), Duration::from_secs(2)).unwrap();
    assert!(body.starts_with("kit "), "{body}");

    assert_eq!(labelled(&["ps", "-a"], &filter).len(), 1);
    assert_eq!(labelled(&["network", "ls"], &filter).len(), 1);
    assert_eq!(labelled(&["volume", "ls"], &filter).len(), 1);
    assert_eq!(labelled(&["images"], &filter).len(), 2);

    drop(run);

    assert!(labelled(&["ps", "-a"], &filter).is_empty());
    assert!(labelled(&["network", "ls"], &filter).is_empty());
    assert!(labelled(&["volume", "ls"], &filter).is_empty());
    assert!(labelled(&["images", "-a"], &filter).is_empty());
    assert!(docker_cli(&["image", "inspect", &image]).is_err());
    assert!(docker_cli(&["image", "inspect", &v2]).is_err());
}

#[test]
fn cleanup_runs_when_a_test_panics() {
    let filter = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let run = TestRun::new("testkit-panic");
        *filter.lock().unwrap() = run.label_filter();
        docker_cli(&[
            "volume",
            "create",
            &format!("--label={}", run.label_filter()),
            &run.name("v"),
        ])
        .unwrap();
        panic!("test failure");
    });
    assert!(result.is_err());
    let filter = filter.into_inner().unwrap();
    assert!(labelled(&["volume", "ls"], &filter).is_empty());
}

#[test]
#[should_panic(expected = "timed out after")]
fn wait_for_panics_on_timeout() {
    wait_for(Duration::from_millis(120), "never", || None::<()>);
}

#[test]
fn http_get_reports_refused_connections() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = http_get(&addr, "/", None, Duration::from_secs(1)).unwrap_err();
    assert!(err.contains(&addr), "{err}");
}
