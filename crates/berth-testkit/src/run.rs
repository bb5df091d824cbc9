//! [`TestRun`]: one test's unique label and the cleanup of everything carrying it.
//!
//! Rules it keeps: the run id is unique across processes and time (pid, clock, counter) and
//! safe in a label value, an object name and an image tag; cleanup removes containers first
//! (they pin networks, volumes and images), then networks, volumes, images, and only ever
//! objects filtered by this run's label.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The label key every test object carries.
pub const LABEL_KEY: &str = "berth.test";

/// One test's identity on the Docker host. Label everything the test creates with
/// [`TestRun::label`]; dropping the run removes every container, network, volume and image
/// carrying it, also when the test panics.
#[derive(Debug)]
pub struct TestRun {
    /// The unique run id: lowercase letters, digits and `-`, e.g. `engine-3f2a-1c9e0b7d-0`.
    pub id: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestRun {
    /// A new run; `name` (the test's name) is kept, sanitized, as a readable prefix.
    #[must_use]
    pub fn new(name: &str) -> TestRun {
        let prefix: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(24)
            .collect();
        let prefix = prefix.trim_matches('-');
        let prefix = if prefix.is_empty() { "t" } else { prefix };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{prefix}-{:x}-{:x}-{n}",
            std::process::id(),
            // The low 32 bits of the clock are plenty to tell runs of one pid apart.
            nanos & 0xffff_ffff
        );
        TestRun { id }
    }

    /// The label to put on every object: `("berth.test", id)`.
    #[must_use]
    pub fn label(&self) -> (String, String) {
        (LABEL_KEY.to_string(), self.id.clone())
    }

    /// The label as a filter: `berth.test=<id>`.
    #[must_use]
    pub fn label_filter(&self) -> String {
        format!("{LABEL_KEY}={}", self.id)
    }

    /// A name unique to this run for a Docker object, e.g. `name("net")` → `<id>-net`.
    #[must_use]
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.id)
    }

    /// Removes every object labelled with this run now (also done on drop). Returns a
    /// description of each step that failed; empty when everything went.
    pub fn cleanup(&self) -> Vec<String> {
        let filter = format!("label={}", self.label_filter());
        let mut failures = Vec::new();
        // Images twice: top-level images first (removing one also removes its untagged build
        // layers, which the legacy builder labels too and which cannot be removed while their
        // child exists), then whatever labelled layer is left.
        let steps: [(&[&str], &[&str]); 5] = [
            (
                &["ps", "-aq", "--no-trunc", "--filter"],
                &["rm", "-f", "-v"],
            ),
            (
                &["network", "ls", "-q", "--no-trunc", "--filter"],
                &["network", "rm"],
            ),
            (&["volume", "ls", "-q", "--filter"], &["volume", "rm", "-f"]),
            (&["images", "-q", "--no-trunc", "--filter"], &["rmi", "-f"]),
            (&["images", "-aq", "--no-trunc", "--filter"], &["rmi", "-f"]),
        ];
        for (list, remove) in steps {
            let mut list_args: Vec<&str> = list.to_vec();
            list_args.push(&filter);
            let ids = match docker_cli(&list_args) {
                Ok(out) => out,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let mut ids: Vec<&str> = ids.split_whitespace().collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            let mut args: Vec<&str> = remove.to_vec();
            args.extend(ids);
            if let Err(e) = docker_cli(&args) {
                failures.push(e);
            }
        }
        failures
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        for failure in self.cleanup() {
            eprintln!(
                "berth-testkit: cleanup of run {} incomplete: {failure}",
                self.id
            );
        }
    }
}

/// Runs the `docker` CLI and returns its stdout; `Err` carries the command and its stderr.
/// BuildKit is switched off (`DOCKER_BUILDKIT=0`): the host has no buildx and no registry.
pub fn docker_cli(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .map_err(|e| format!("cannot run docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_tag_safe() {
        let a = TestRun::new("My Test::case_1");
        let b = TestRun::new("My Test::case_1");
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with("my-test--case-1-"), "{}", a.id);
        assert!(a
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_eq!(a.label_filter(), format!("berth.test={}", a.id));
        assert_eq!(a.label(), ("berth.test".to_string(), a.id.clone()));
        // Dropping these runs only lists (nothing carries their labels).
    }
}
