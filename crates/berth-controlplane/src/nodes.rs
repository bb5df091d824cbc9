//! The Swarm's nodes, for `berth nodes` (docs/swarm.md): read from the server's Docker engine
//! when it is a Swarm manager.
//!
//! Rules it keeps:
//! - Read only: nothing here changes the Swarm.
//! - An engine that is not a manager (not in a Swarm, or a worker) is
//!   [`CpError::NotASwarmManager`] (409 `not_a_swarm_manager`), never a Docker failure.
//! - A node's task count is the tasks the Swarm wants running there (`DesiredState` running),
//!   of every service: what `docker node ps` would list as current.

use crate::error::CpError;
use crate::ControlPlane;
use berth_core::api::NodeView;
use berth_docker::swarm::models::{Node, TaskState};
use berth_docker::swarm::SwarmTask;
use std::collections::BTreeMap;

impl ControlPlane {
    /// Every node of the Swarm the server's engine manages, by hostname.
    ///
    /// # Errors
    /// [`CpError::NotASwarmManager`] when the engine is not a Swarm manager; [`CpError::Docker`]
    /// when it fails.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, CpError> {
        let docker = self.docker();
        let not_manager = |e: berth_docker::DockerError| {
            if e.is_not_swarm_manager() {
                CpError::NotASwarmManager(docker.endpoint().to_string())
            } else {
                CpError::Docker(e)
            }
        };
        let nodes = docker.list_nodes().await.map_err(not_manager)?;
        let tasks = docker.list_tasks(&[]).await.map_err(not_manager)?;
        Ok(views(&nodes, &tasks))
    }
}

/// The nodes as `berth nodes` shows them, sorted by hostname (then ID).
pub(crate) fn views(nodes: &[Node], tasks: &[SwarmTask]) -> Vec<NodeView> {
    let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
    for SwarmTask { task: t, .. } in tasks {
        if t.desired_state == Some(TaskState::RUNNING) {
            if let Some(node) = t.node_id.as_deref() {
                *per_node.entry(node).or_default() += 1;
            }
        }
    }
    let text = |v: Option<String>| v.unwrap_or_default();
    let mut out: Vec<NodeView> = nodes
        .iter()
        .map(|n| {
            let id = n.id.clone().unwrap_or_default();
            let spec = n.spec.as_ref();
            let description = n.description.as_ref();
            let status = n.status.as_ref();
            NodeView {
                tasks: per_node.get(id.as_str()).copied().unwrap_or(0),
                hostname: text(description.and_then(|d| d.hostname.clone())),
                state: text(status.and_then(|s| s.state).map(|s| s.to_string())),
                availability: text(spec.and_then(|s| s.availability).map(|a| a.to_string())),
                role: text(spec.and_then(|s| s.role).map(|r| r.to_string())),
                leader: n
                    .manager_status
                    .as_ref()
                    .and_then(|m| m.leader)
                    .unwrap_or(false),
                engine_version: text(
                    description
                        .and_then(|d| d.engine.as_ref())
                        .and_then(|e| e.engine_version.clone()),
                ),
                address: text(status.and_then(|s| s.addr.clone())),
                id,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tasks_wanted_running_per_node() {
        let node = |id: &str, host: &str, role: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "ID": id,
                "Spec": {"Role": role, "Availability": "active"},
                "Description": {"Hostname": host, "Engine": {"EngineVersion": "20.10.24"}},
                "Status": {"State": "ready", "Addr": "192.168.77.1"},
                "ManagerStatus": if role == "manager" { serde_json::json!({"Leader": true}) } else { serde_json::json!(null) },
            }))
            .unwrap()
        };
        let task = |node: &str, desired: &str| -> SwarmTask {
            serde_json::from_value(serde_json::json!({"NodeID": node, "DesiredState": desired}))
                .unwrap()
        };
        let v = views(
            &[node("b", "node2", "worker"), node("a", "node1", "manager")],
            &[
                task("a", "running"),
                task("a", "shutdown"),
                task("b", "running"),
                task("b", "running"),
            ],
        );
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[0].hostname.as_str(),
                v[0].role.as_str(),
                v[0].leader,
                v[0].tasks
            ),
            ("node1", "manager", true, 1)
        );
        assert_eq!(
            (
                v[1].hostname.as_str(),
                v[1].role.as_str(),
                v[1].leader,
                v[1].tasks
            ),
            ("node2", "worker", false, 2)
        );
        assert_eq!(v[0].state, "ready");
        assert_eq!(v[0].availability, "active");
        assert_eq!(v[0].engine_version, "20.10.24");
    }
}
