//! The dashboard in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver, fantoccini) against the real server and the real Docker engine.
//! A person logs in, finds the deployed application on the overview, scales it with the Scale
//! form and logs out; screenshots of each page at 1280 and 390 px wide are written to
//! `$CARGO_TARGET_TMPDIR/screenshots/`. Skips (passing, with a note on stderr) where chromium or
//! chromedriver is not installed (`apt-get install chromium chromium-driver`; `.ci/run` does).

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use fantoccini::{ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The browser and its driver, if both are installed.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.is_file());
    Some((
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])?,
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?,
    ))
}

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_person_logs_in_scales_and_logs_out_in_chromium() {
    let Some((chromium, chromedriver)) = browser() else {
        eprintln!(
            "skipped: no chromium and chromedriver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let run = TestRun::new("dashboard-browser");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let dora = team_member(&server, "shop", "dora", "developer");
    let file = compose(
        dir.path(),
        "store.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n"),
    );
    ok_as(
        &server,
        &dora,
        &["apply", "-f", file.to_str().unwrap(), "--app", "store"],
    );

    let port = free_port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let driver_addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), "chromedriver answers", || {
        berth_testkit::http_get(&driver_addr, "/status", None, Duration::from_secs(1))
            .ok()
            .filter(|(c, _)| *c == 200)
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://{}", server.api);
    let shots = screenshots_dir();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{driver_addr}"))
            .await
            .expect("a chromium session");
        let shot = |name: &'static str| {
            let c = c.clone();
            let shots = shots.clone();
            async move {
                for (w, h) in [(1280, 900), (390, 844)] {
                    c.set_window_size(w, h).await.unwrap();
                    let png = c.screenshot().await.unwrap();
                    std::fs::write(shots.join(format!("{name}-{w}.png")), png).unwrap();
                }
                c.set_window_size(1280, 900).await.unwrap();
            }
        };

        // Not logged in: the overview sends the browser to the login form.
        c.goto(&format!("{base}/")).await.unwrap();
        let user = c
            .wait()
            .for_element(Locator::Css("input[name='username']"))
            .await
            .unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        shot("login").await;
        user.send_keys("dora").await.unwrap();
        c.find(Locator::Css("input[name='password']"))
            .await
            .unwrap()
            .send_keys("dora-password-for-tests")
            .await
            .unwrap();
        c.find(Locator::XPath("//button[normalize-space()='Log in']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // The overview lists the application; its link leads to its page.
        let link = c
            .wait()
            .for_element(Locator::LinkText("store"))
            .await
            .unwrap();
        shot("overview").await;
        link.click().await.unwrap();
        let field = c
            .wait()
            .for_element(Locator::Css("input[name='replicas.web']"))
            .await
            .unwrap();
        shot("app").await;
        field.clear().await.unwrap();
        field.send_keys("2").await.unwrap();
        c.find(Locator::XPath("//button[normalize-space()='Scale']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // Back on the application's page, now with a second revision to roll back to.
        c.wait()
            .for_element(Locator::XPath("//button[normalize-space()='Roll back']"))
            .await
            .unwrap();
        let (status, _, body) = call(
            &server.api,
            "GET",
            "/api/v1/apps/store/revisions?team=shop",
            Some(&server.token()),
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.as_array().unwrap().len(), 2, "{body}");
        assert!(
            body[0]["change"].as_str().unwrap_or("").contains("web"),
            "{body}"
        );
        shot("app-scaled").await;

        // Log out: back at the login form; the overview is no longer reachable.
        c.find(Locator::XPath("//button[normalize-space()='Log out']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("input[name='username']"))
            .await
            .unwrap();
        c.goto(&format!("{base}/")).await.unwrap();
        c.wait()
            .for_element(Locator::Css("input[name='username']"))
            .await
            .unwrap();
        c.close().await.unwrap();
    });
}
