//! The `berth-testapp` image: built from the workspace's own test app, never pulled.
//!
//! Rules it keeps: cargo builds the static binary at most once per test process (and cargo
//! itself is incremental, so other processes pay only a no-op build); every image is built
//! `FROM scratch` with `--no-cache`, tagged and labelled with the run's id, so the run's cleanup
//! removes it with all its layers and concurrent runs never share or delete each other's images.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::run::{docker_cli, TestRun, LABEL_KEY};

const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";

static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cargo target directory the running test binary was built in: the nearest ancestor of
/// the executable holding cargo's `CACHEDIR.TAG`, else `CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_path_buf();
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Builds (once per process) the statically linked `berth-testapp` and returns its path.
///
/// # Panics
/// When cargo fails; the message carries cargo's output.
pub fn testapp_binary() -> PathBuf {
    let built = BINARY.get_or_init(|| {
        let target = target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "-p",
                "berth-testapp",
                "--target",
                TARGET_TRIPLE,
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let bin = target
            .join(TARGET_TRIPLE)
            .join("release")
            .join("berth-testapp");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The workspace can fail to load for reasons that have nothing to do with the test
            // app (a sibling crate's manifest mid-edit); a binary built earlier still serves.
            if bin.is_file() {
                eprintln!(
                    "berth-testkit: cargo could not rebuild berth-testapp, using the existing {}:\n{stderr}",
                    bin.display()
                );
                return Ok(bin);
            }
            return Err(format!("building berth-testapp failed:\n{stderr}"));
        }
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("cargo succeeded but {} is missing", bin.display()))
        }
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Builds the test-app image tagged `berth-testapp:<run id>`, labelled with the run, and
/// returns the tag. The run's drop removes it.
///
/// # Panics
/// When the binary or the image cannot be built.
#[must_use]
pub fn testapp_image(run: &TestRun) -> String {
    build_image(run, &format!("berth-testapp:{}", run.id), "")
}

/// Builds the test app as another image, with its own image ID (it carries the label
/// `berth.test.tag=<tag>`), so tests can have distinct "versions". `tag` is either a bare tag
/// (`v2` → `berth-testapp:<run id>-v2`) or, when it contains `:` or `/`, a full reference used
/// as is (`shop/web:v2`). Returns the reference; the run's drop removes the image.
///
/// # Panics
/// When the binary or the image cannot be built.
#[must_use]
pub fn testapp_image_tagged(run: &TestRun, tag: &str) -> String {
    let reference = if tag.contains(':') || tag.contains('/') {
        tag.to_string()
    } else {
        format!("berth-testapp:{}-{tag}", run.id)
    };
    build_image(run, &reference, tag)
}

fn build_image(run: &TestRun, reference: &str, tag: &str) -> String {
    let binary = testapp_binary();
    let ctx =
        std::env::temp_dir().join(format!("berth-testkit-{}-{}", run.id, sanitize(reference)));
    let result = (|| {
        std::fs::create_dir_all(&ctx).map_err(|e| format!("{}: {e}", ctx.display()))?;
        std::fs::copy(&binary, ctx.join("berth-testapp"))
            .map_err(|e| format!("copy {}: {e}", binary.display()))?;
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY berth-testapp /berth-testapp\nEXPOSE 8080\nENTRYPOINT [\"/berth-testapp\"]\n",
        )
        .map_err(|e| format!("write Dockerfile: {e}"))?;
        let run_label = format!("{LABEL_KEY}={}", run.id);
        let tag_label = format!("{LABEL_KEY}.tag={tag}");
        let ctx_str = ctx.to_string_lossy().into_owned();
        docker_cli(&[
            "build",
            "--quiet",
            "--no-cache",
            "--force-rm",
            "--label",
            &run_label,
            "--label",
            &tag_label,
            "-t",
            reference,
            &ctx_str,
        ])
    })();
    let _ = std::fs::remove_dir_all(&ctx);
    if let Err(e) = result {
        panic!("building image {reference}: {e}");
    }
    reference.to_string()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Imports `/bin/busybox` as an image with `/bin/sh`, labelled with the run. `None` (with a
/// note) when busybox is not installed.
pub fn busybox_image(run: &TestRun) -> Option<String> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        eprintln!("NOTE: /bin/busybox missing (apt-get install busybox-static): test skipped");
        return None;
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_path_with_name(busybox, "bin/busybox").unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for dir in ["tmp", "workspace"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_data(&mut h, dir, &[][..]).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let reference = format!("berth-busybox:{}", run.id);
    let mut child = Command::new("docker")
        .args([
            "import",
            "--change",
            &format!("LABEL {}", run.label_filter()),
            "-",
            &reference,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "docker import failed");
    Some(reference)
}
