//! Swarm mode calls (docs/swarm.md#the-engine-api-client): the Swarm, its nodes, services and
//! tasks, for the Swarm runtime and `berth nodes`.
//!
//! Rules it keeps:
//! - The request and answer bodies are the generated, maintained models of `bollard-stubs`
//!   (re-exported as [`crate::swarm::models`]), serialised over this crate's own transport: no
//!   second HTTP stack, and the status mapping of `client.rs` applies unchanged.
//! - An engine that is not a Swarm manager (a plain engine, or a worker) answers 503; callers
//!   tell it apart with [`DockerError::is_not_swarm_manager`] instead of matching on numbers.
//! - Tasks carry none of their service's labels (Docker 20.10 leaves a task's `Labels` empty), so
//!   tasks are listed by service; services are listed by label.
//! - Updating a service needs the version its spec was read at: an update from a stale read is
//!   refused by the engine (`update out of sequence`), never applied over someone else's.

use crate::client::{enc, parse, Docker};
use crate::error::DockerError;
use crate::transport::Body;
use hyper::Method;
use serde_json::json;

/// The Swarm models Berth uses, as generated from the Engine API's specification.
pub mod models {
    pub use bollard_stubs::models::{
        ContainerStatus, EndpointSpec, EndpointSpecModeEnum, HealthConfig, IdResponse, Limit,
        Mount, MountTmpfsOptions, MountType, MountVolumeOptions, Network, NetworkAttachmentConfig,
        Node, NodeDescription, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState,
        NodeStatus, ObjectVersion, ResourceObject, Secret, SecretSpec, Service,
        ServiceCreateResponse, ServiceEndpoint, ServiceServiceStatus, ServiceSpec, ServiceSpecMode,
        ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
        ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
        ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
        ServiceSpecUpdateConfigOrderEnum, ServiceUpdateResponse, ServiceUpdateStatus,
        ServiceUpdateStatusStateEnum, Swarm, Task, TaskSpec, TaskSpecContainerSpec,
        TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
        TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecPlacementPreferences,
        TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
        TaskSpecRestartPolicyConditionEnum, TaskState, TaskStatus,
    };
}

use models::{Node, Service, ServiceCreateResponse, ServiceSpec, Swarm, Task};
use std::collections::HashMap;

/// Which kind of Swarm object holds a file for a service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A secret (encrypted in the Swarm's store, `/run/secrets/...` in the task).
    Secret,
    /// A config.
    Config,
}

impl ObjectKind {
    fn path(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Config => "configs",
        }
    }
}

/// A Swarm secret or config, as listed (never its data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmObject {
    /// Its ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// A task with the networks it is attached to. The Engine API's specification (and so the
/// generated [`Task`]) leaves out `NetworksAttachments`, which the engine sends and which holds
/// a task's addresses on its overlay networks: those few fields are written here.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct SwarmTask {
    /// The task, as the specification describes it.
    #[serde(flatten)]
    pub task: Task,
    /// Its network attachments (none for a task not started yet).
    #[serde(
        rename = "NetworksAttachments",
        default,
        deserialize_with = "crate::types::nullable"
    )]
    pub networks: Vec<TaskNetwork>,
}

/// One network a task is attached to, and its addresses there.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct TaskNetwork {
    /// The network.
    #[serde(rename = "Network", default)]
    pub network: TaskNetworkRef,
    /// CIDR addresses (`10.0.1.36/24`).
    #[serde(
        rename = "Addresses",
        default,
        deserialize_with = "crate::types::nullable"
    )]
    pub addresses: Vec<String>,
}

/// Which network: its ID and name.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct TaskNetworkRef {
    /// Network ID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Its spec (the name).
    #[serde(rename = "Spec", default)]
    pub spec: TaskNetworkSpec,
}

/// The part of a network's spec a task's attachment is read for.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct TaskNetworkSpec {
    /// Network name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Its labels.
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "crate::types::nullable"
    )]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl DockerError {
    /// True when the engine is not a Swarm manager (HTTP 503 "This node is not a swarm
    /// manager"): a plain engine or a worker node.
    #[must_use]
    pub fn is_not_swarm_manager(&self) -> bool {
        matches!(self, DockerError::Api { status: 503, message } if message.contains("not a swarm manager"))
    }
}

/// `?filters={"label": [...], "service": [...]}`, or nothing when there is no filter.
fn filters(labels: &[String], services: &[String]) -> String {
    let mut f = serde_json::Map::new();
    if !labels.is_empty() {
        f.insert("label".into(), json!(labels));
    }
    if !services.is_empty() {
        f.insert("service".into(), json!(services));
    }
    if f.is_empty() {
        String::new()
    } else {
        format!(
            "?filters={}",
            enc(&serde_json::Value::Object(f).to_string())
        )
    }
}

impl Docker {
    async fn swarm_get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path_and_query: &str,
    ) -> Result<T, DockerError> {
        let body = self.call_raw(Method::GET, path_and_query, None).await?;
        parse(what, &body)
    }

    /// `GET /swarm`: the Swarm this engine manages. [`DockerError::is_not_swarm_manager`] when
    /// it is not a manager.
    pub async fn swarm_inspect(&self) -> Result<Swarm, DockerError> {
        self.swarm_get("GET /swarm", "/swarm").await
    }

    /// `GET /info`'s `Swarm.NodeID`: the node this engine is, `None` outside a Swarm.
    pub async fn local_node_id(&self) -> Result<Option<String>, DockerError> {
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(rename = "Swarm", default)]
            swarm: Option<SwarmInfo>,
        }
        #[derive(serde::Deserialize)]
        struct SwarmInfo {
            #[serde(rename = "NodeID", default)]
            node_id: String,
        }
        let info: Info = self.swarm_get("GET /info", "/info").await?;
        Ok(info.swarm.map(|s| s.node_id).filter(|id| !id.is_empty()))
    }

    /// `GET /nodes`: every node of the Swarm (a manager only).
    pub async fn list_nodes(&self) -> Result<Vec<Node>, DockerError> {
        self.swarm_get("GET /nodes", "/nodes").await
    }

    /// `GET /services`: services with all the given labels (`k=v` or `k`).
    pub async fn list_services(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<Service>, DockerError> {
        // `status=true` (API 1.41+): each service's running and desired task counts, which
        // is how many tasks a `global` service should have.
        let q = filters(label_filters, &[]);
        let q = if q.is_empty() {
            "?status=true".to_string()
        } else {
            format!("{q}&status=true")
        };
        self.swarm_get("GET /services", &format!("/services{q}"))
            .await
    }

    /// `GET /services/{id}`: a service by ID or name; `None` when there is none.
    pub async fn inspect_service(&self, id: &str) -> Result<Option<Service>, DockerError> {
        match self
            .swarm_get("GET /services/{id}", &format!("/services/{}", enc(id)))
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /services/create`: creates a service and returns its ID.
    /// [`DockerError::Conflict`] when the name is taken.
    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<String, DockerError> {
        let answer = self
            .call_raw(Method::POST, "/services/create", Some(Body::json(spec)))
            .await?;
        let created: ServiceCreateResponse = parse("POST /services/create", &answer)?;
        created.id.ok_or_else(|| DockerError::Api {
            status: 201,
            message: "the engine created a service but returned no ID".into(),
        })
    }

    /// `POST /services/{id}/update?version=N`: replaces the service's spec; `version` is the
    /// `Version.Index` the spec was read at. Returns the engine's warnings.
    pub async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<Vec<String>, DockerError> {
        let answer = self
            .call_raw(
                Method::POST,
                &format!("/services/{}/update?version={version}", enc(id)),
                Some(Body::json(spec)),
            )
            .await?;
        let updated: models::ServiceUpdateResponse = parse("POST /services/{id}/update", &answer)?;
        Ok(updated.warnings.unwrap_or_default())
    }

    /// `DELETE /services/{id}`: removes a service (its tasks are stopped by the Swarm). Gone
    /// already is fine.
    pub async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        match self
            .call_raw(Method::DELETE, &format!("/services/{}", enc(id)), None)
            .await
        {
            Ok(_) | Err(DockerError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /networks/create`: an attachable overlay network (a Swarm manager only; Swarm
    /// picks its subnet); returns its ID. [`DockerError::Conflict`] when the name is taken —
    /// also when the engine says so with a 500: two creates of one name at once (two services
    /// of an application ensured together) pass the engine's duplicate check both, and the
    /// Swarm store refuses the second with "name conflicts with an existing object" as an
    /// internal error.
    pub async fn create_overlay_network(
        &self,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        let body = json!({
            "Name": name,
            "CheckDuplicate": true,
            "Driver": "overlay",
            "Attachable": true,
            "Labels": labels,
        });
        let answer = self
            .call_raw(Method::POST, "/networks/create", Some(Body::json(&body)))
            .await
            .map_err(name_conflict)?;
        let created: Created = parse("POST /networks/create", &answer)?;
        Ok(created.id)
    }

    /// `GET /secrets` or `GET /configs`: the objects with all the given labels.
    pub async fn list_swarm_objects(
        &self,
        kind: ObjectKind,
        label_filters: &[String],
    ) -> Result<Vec<SwarmObject>, DockerError> {
        let q = filters(label_filters, &[]);
        let what = kind.path();
        let list: Vec<models::Secret> = self
            .swarm_get(&format!("GET /{what}"), &format!("/{what}{q}"))
            .await?;
        Ok(list
            .into_iter()
            .map(|o| {
                let spec = o.spec.unwrap_or_default();
                SwarmObject {
                    id: o.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// `POST /secrets/create` or `POST /configs/create`: an object holding `data`; returns its
    /// ID. [`DockerError::Conflict`] when the name is taken (objects are immutable: a new
    /// content is a new name).
    pub async fn create_swarm_object(
        &self,
        kind: ObjectKind,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<String, DockerError> {
        use base64::Engine as _;
        let body = json!({
            "Name": name,
            "Labels": labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let what = kind.path();
        let answer = self
            .call_raw(
                Method::POST,
                &format!("/{what}/create"),
                Some(Body::json(&body)),
            )
            .await?;
        let created: models::IdResponse = parse(&format!("POST /{what}/create"), &answer)?;
        Ok(created.id)
    }

    /// `DELETE /secrets/{id}` or `DELETE /configs/{id}`. Gone already is fine; one a service
    /// still uses is refused by the manager (an error).
    pub async fn remove_swarm_object(&self, kind: ObjectKind, id: &str) -> Result<(), DockerError> {
        match self
            .call_raw(
                Method::DELETE,
                &format!("/{}/{}", kind.path(), enc(id)),
                None,
            )
            .await
        {
            Ok(_) | Err(DockerError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /tasks`: the tasks of the given services (IDs or names), every task when `services`
    /// is empty. Includes tasks Swarm has shut down (see `DesiredState`).
    pub async fn list_tasks(&self, services: &[String]) -> Result<Vec<SwarmTask>, DockerError> {
        let q = filters(&[], services);
        self.swarm_get("GET /tasks", &format!("/tasks{q}")).await
    }

    /// Whether a task's container has a TTY (`GET /tasks/{id}`): its logs are then raw, not
    /// multiplexed. [`DockerError::NotFound`] for a task the Swarm does not know; a 501
    /// [`DockerError::Api`] for a task whose log driver is `none`, as the engine answers for
    /// such a container: a manager (20.10) answers that task's logs with an empty 200 (its
    /// node only writes "logs call failed" to its own log).
    pub(crate) async fn task_log_tty(&self, id: &str) -> Result<bool, DockerError> {
        let task: Task = self
            .swarm_get("GET /tasks/{id}", &format!("/tasks/{}", enc(id)))
            .await?;
        let spec = task.spec.unwrap_or_default();
        if let Some(driver) = spec.log_driver.and_then(|d| d.name).filter(|n| n == "none") {
            return Err(DockerError::Api {
                status: 501,
                message: format!("task {id}'s logging driver {driver:?} does not support reading"),
            });
        }
        Ok(spec.container_spec.and_then(|c| c.tty).unwrap_or(false))
    }
}

/// The Swarm store's "name conflicts with an existing object" (sent as a 500) as the
/// [`DockerError::Conflict`] it is.
fn name_conflict(e: DockerError) -> DockerError {
    match e {
        DockerError::Api { message, .. }
            if message.contains("name conflicts with an existing object") =>
        {
            DockerError::Conflict(message)
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    //! The models against answers captured from Docker 20.10 (API 1.41) on a 3-node lab Swarm
    //! (`tests/fixtures/swarm/`, captured with `curl --unix-socket` on the lab manager's
    //! socket; see that folder's README).
    use super::models::*;
    use super::*;

    #[test]
    fn a_network_name_taken_in_a_race_is_a_conflict() {
        // What Docker 20.10 answered on the lab when two services' ensures created one
        // network at once.
        let raced = DockerError::Api {
            status: 500,
            message: "rpc error: code = Unknown desc = name conflicts with an existing object"
                .into(),
        };
        assert!(name_conflict(raced).is_conflict());
        let other = DockerError::Api {
            status: 500,
            message: "rpc error: code = Unknown desc = something else".into(),
        };
        assert!(!name_conflict(other).is_conflict());
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/swarm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn swarm_inspect_answer() {
        let s: Swarm = parse("GET /swarm", &fixture("swarm.json")).unwrap();
        assert!(s.id.is_some_and(|id| !id.is_empty()));
        assert!(s.join_tokens.is_some());
    }

    #[test]
    fn nodes_answer_has_role_state_availability_engine_and_address() {
        let nodes: Vec<Node> = parse("GET /nodes", &fixture("nodes.json")).unwrap();
        assert_eq!(nodes.len(), 3);
        let mut hostnames: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.description.as_ref()?.hostname.clone())
            .collect();
        hostnames.sort();
        assert_eq!(hostnames, ["node1", "node2", "node3"]);
        let managers: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.role) == Some(NodeSpecRoleEnum::MANAGER))
            .collect();
        assert_eq!(managers.len(), 1);
        let m = managers[0];
        assert!(m.manager_status.as_ref().and_then(|s| s.leader) == Some(true));
        for n in &nodes {
            let status = n.status.as_ref().unwrap();
            assert_eq!(status.state, Some(NodeState::READY));
            assert!(status.addr.as_deref().unwrap().starts_with("192.168.77."));
            assert_eq!(
                n.spec.as_ref().unwrap().availability,
                Some(NodeSpecAvailabilityEnum::ACTIVE)
            );
            let engine = n.description.as_ref().unwrap().engine.as_ref().unwrap();
            assert!(engine
                .engine_version
                .as_deref()
                .unwrap()
                .starts_with("20.10"));
        }
    }

    #[test]
    fn service_answer_keeps_labels_mode_endpoint_and_update_config() {
        let s: Service = parse("GET /services/{id}", &fixture("service.json")).unwrap();
        let spec = s.spec.as_ref().unwrap();
        let labels = spec.labels.as_ref().unwrap();
        assert_eq!(labels["berth.service"], "web");
        assert_eq!(labels["berth.hash"], "h1");
        assert_eq!(
            spec.mode
                .as_ref()
                .unwrap()
                .replicated
                .as_ref()
                .unwrap()
                .replicas,
            Some(3)
        );
        assert_eq!(
            spec.endpoint_spec.as_ref().unwrap().mode,
            Some(EndpointSpecModeEnum::DNSRR)
        );
        let update = spec.update_config.as_ref().unwrap();
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(
            update.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        // A gap of the generated models: the specification names the healthcheck
        // `HealthCheck`, the engine writes `Healthcheck`. Sending works (the engine reads JSON
        // keys case-insensitively); reading it back does not, so the Swarm runtime never reads
        // a spec back to compare: the `berth.hash` label says which spec a service runs.
        let container = spec
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap();
        assert!(container.health_check.is_none());
        assert_eq!(container.image.as_deref(), Some("berth-cap-s:1"));
        assert!(s.version.as_ref().unwrap().index.unwrap() > 0);
        // A service never updated has no UpdateStatus.
        assert!(s.update_status.is_none());
    }

    #[test]
    fn update_status_states_as_the_engine_reports_them() {
        let done: Service = parse("svc", &fixture("service_updated.json")).unwrap();
        assert_eq!(
            done.update_status.unwrap().state,
            Some(ServiceUpdateStatusStateEnum::COMPLETED)
        );
        // An update whose new tasks failed their health check, with failure_action rollback,
        // whose rollback failed too (the image has no shell for the `CMD-SHELL` check).
        let failed: Service = parse("svc", &fixture("service_rollback_paused.json")).unwrap();
        let status = failed.update_status.unwrap();
        assert_eq!(
            status.state,
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED)
        );
        assert!(status
            .message
            .unwrap()
            .contains("update paused due to failure"));
        assert!(failed.spec.is_some());
    }

    #[test]
    fn services_list_answer() {
        let list: Vec<Service> = parse("GET /services", &fixture("services.json")).unwrap();
        assert!(!list.is_empty());
        assert!(list.iter().all(|s| s
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .is_some_and(|l| l.get("berth.app").map(String::as_str) == Some("shop"))));
    }

    #[test]
    fn tasks_answer_has_slot_node_state_and_overlay_address() {
        let tasks: Vec<SwarmTask> = parse("GET /tasks", &fixture("tasks.json")).unwrap();
        let running: Vec<&SwarmTask> = tasks
            .iter()
            .filter(|t| t.task.desired_state == Some(TaskState::RUNNING))
            .collect();
        assert_eq!(running.len(), 2);
        let mut slots: Vec<i64> = running.iter().filter_map(|t| t.task.slot).collect();
        slots.sort_unstable();
        assert_eq!(slots, [1, 2]);
        for SwarmTask { task: t, networks } in running {
            let status = t.status.as_ref().unwrap();
            assert_eq!(status.state, Some(TaskState::RUNNING));
            assert!(status
                .container_status
                .as_ref()
                .and_then(|c| c.container_id.as_ref())
                .is_some());
            assert!(t.node_id.as_ref().is_some_and(|n| !n.is_empty()));
            assert_eq!(networks.len(), 1);
            assert_eq!(networks[0].network.spec.name, "capnet");
            assert_eq!(networks[0].network.spec.labels["berth.app"], "shop");
            assert!(!networks[0].network.id.is_empty());
            assert!(networks[0].addresses[0].starts_with("10.0.1."));
        }
        assert!(tasks
            .iter()
            .any(|t| t.task.desired_state == Some(TaskState::SHUTDOWN)));
        // Tasks carry none of the service's labels: they are listed by service.
        assert!(tasks.iter().all(|t| t
            .task
            .labels
            .as_ref()
            .is_none_or(std::collections::HashMap::is_empty)));
    }

    #[test]
    fn a_service_spec_serialises_as_the_engine_expects() {
        let spec = ServiceSpec {
            name: Some("b1_shop_web".into()),
            labels: Some([("berth.app".to_string(), "shop".to_string())].into()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(2) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("berth-testapp:1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v,
            json!({
                "Name": "b1_shop_web",
                "Labels": {"berth.app": "shop"},
                "Mode": {"Replicated": {"Replicas": 2}},
                "EndpointSpec": {"Mode": "dnsrr"},
                "TaskTemplate": {"ContainerSpec": {"Image": "berth-testapp:1"}},
            })
        );
    }

    #[test]
    fn not_a_manager_is_told_apart() {
        let body = fixture("not_a_manager.json");
        let e = crate::client::failure(http::StatusCode::SERVICE_UNAVAILABLE, &body);
        assert!(e.is_not_swarm_manager(), "{e}");
        assert!(!DockerError::NotFound("x".into()).is_not_swarm_manager());
    }

    #[test]
    fn filters_are_encoded() {
        assert_eq!(filters(&[], &[]), "");
        assert_eq!(
            filters(&["berth.app=shop".into()], &["web".into()]),
            "?filters=%7B%22label%22%3A%5B%22berth.app%3Dshop%22%5D%2C%22service%22%3A%5B%22web%22%5D%7D"
        );
    }
}
