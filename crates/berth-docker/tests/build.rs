//! Image builds (`build_image`), `wait_container` and `remove_image` against the real engine.
//!
//! Everything is labelled `berth.test=<run id>` through a `TestRun`, whose drop removes it even
//! when an assertion fails. Builds are `FROM scratch`: nothing is pulled.

use std::collections::BTreeMap;

use berth_docker::{BuildMessage, BuildParams, ContainerSpec, Docker};
use berth_testkit::{testapp_image, TestRun};

fn context(files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap()
}

async fn run_build(
    d: &Docker,
    tar: Vec<u8>,
    params: &BuildParams,
) -> (Vec<String>, Option<String>, Option<String>) {
    let mut stream = d.build_image(tar, params).await.unwrap();
    let (mut out, mut id, mut error) = (Vec::new(), None, None);
    while let Some(m) = stream.recv().await {
        match m.unwrap() {
            BuildMessage::Output(t) => out.push(t),
            BuildMessage::ImageId(i) => id = Some(i),
            BuildMessage::Error(e) => error = Some(e),
        }
    }
    (out, id, error)
}

#[tokio::test]
async fn builds_tags_labels_and_removes_an_image() {
    let run = TestRun::new("docker-build");
    let d = Docker::connect().await.unwrap();
    let tag = format!("berth-docker-build:{}", run.id);
    let params = BuildParams {
        tag: tag.clone(),
        dockerfile: "docker/Dockerfile".into(),
        buildargs: [("NAME".to_string(), "x.txt".to_string())].into(),
        target: Some("final".into()),
        labels: [run.label()].into(),
    };
    let tar = context(&[
        (
            "docker/Dockerfile",
            "FROM scratch AS final\nARG NAME\nCOPY ${NAME} /\n",
        ),
        ("x.txt", "hello"),
    ]);
    let (out, id, error) = run_build(&d, tar, &params).await;
    assert_eq!(error, None, "{out:?}");
    let id = id.expect("aux ID");
    assert!(out.iter().any(|l| l.contains("COPY ${NAME} /")), "{out:?}");
    let image = d.inspect_image(&tag).await.unwrap().unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.labels.get("berth.test"), Some(&run.id));

    d.remove_image(&tag, false, false).await.unwrap();
    assert!(d.inspect_image(&tag).await.unwrap().is_none());
    assert!(d
        .remove_image(&tag, false, false)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn a_failing_build_reports_its_error() {
    let run = TestRun::new("docker-build-fail");
    let d = Docker::connect().await.unwrap();
    let params = BuildParams {
        tag: format!("berth-docker-build:{}", run.id),
        labels: [run.label()].into(),
        ..BuildParams::default()
    };
    let tar = context(&[("Dockerfile", "FROM scratch\nCOPY missing /\n")]);
    let (_, id, error) = run_build(&d, tar, &params).await;
    assert_eq!(id, None);
    assert!(error.unwrap().contains("missing"));
    assert!(d.inspect_image(&params.tag).await.unwrap().is_none());
}

#[tokio::test]
async fn wait_returns_the_exit_code() {
    let run = TestRun::new("docker-wait");
    let image = testapp_image(&run);
    let d = Docker::connect().await.unwrap();
    let spec = ContainerSpec {
        image,
        env: vec!["EXIT_CODE=7".into(), "RUN_MS=200".into()],
        labels: BTreeMap::from([run.label()]),
        ..ContainerSpec::default()
    };
    let id = d.create_container(&run.name("job"), &spec).await.unwrap();
    d.start_container(&id).await.unwrap();
    assert_eq!(d.wait_container(&id).await.unwrap(), 7);
    // Waiting on an exited container answers at once.
    assert_eq!(d.wait_container(&id).await.unwrap(), 7);
    d.remove_container(&id, true, true).await.unwrap();
    assert!(d.wait_container(&id).await.unwrap_err().is_not_found());
}
