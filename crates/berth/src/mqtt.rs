//! `berth server --mqtt-listen` (docs/messaging.md): the `berth-mqtt` broker wired to the
//! control plane — the routing table's issuers for logins, the store's market subscribers for
//! the ACL, its users and teams for whether a user's token still logs in, and the event feed
//! published on `berth/events/...`.

use anyhow::{anyhow, bail};
use berth_cli::ServerArgs;
use berth_controlplane::ControlPlane;
use berth_core::policy::Issuer;
use berth_core::RoutingTable;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct CpDirectory {
    cp: ControlPlane,
    table: watch::Receiver<Arc<RoutingTable>>,
    /// Users, teams and memberships (berth-access's records).
    store: berth_store::Store,
}

impl CpDirectory {
    /// [`berth_mqtt::Directory::user_refusal`], with the store's errors.
    fn refusal(
        &self,
        team: &str,
        subject: &str,
    ) -> Result<Option<&'static str>, berth_store::StoreError> {
        let Some(user) = self.store.get_user(subject)? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(Some("its user is disabled"));
        }
        if self.store.get_team(team)?.is_none() {
            return Ok(Some("its team no longer exists"));
        }
        // As the API's team scope: a member, or an administrator (any team that exists).
        if user.administrator
            || self
                .store
                .memberships(subject)?
                .iter()
                .any(|m| m.team == team)
        {
            return Ok(None);
        }
        Ok(Some("its user is no longer a member of the token's team"))
    }
}

impl berth_mqtt::Directory for CpDirectory {
    fn issuers(&self) -> Vec<Issuer> {
        self.table.borrow().issuers.clone()
    }

    fn subscribers(&self, service: &str) -> Vec<String> {
        self.cp.market_subscribers(service).unwrap_or_else(|e| {
            tracing::warn!(service, error = %e, "mqtt: cannot read the market's subscribers");
            Vec::new()
        })
    }

    fn user_refusal(&self, team: &str, subject: &str) -> Option<&'static str> {
        self.refusal(team, subject).unwrap_or_else(|e| {
            tracing::warn!(team, subject, error = %e, "mqtt: cannot read the user's rights");
            None
        })
    }
}

fn addr(flag: &str, value: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    value
        .map(|v| {
            v.parse::<SocketAddr>()
                .map_err(|_| anyhow!("--{flag} {v:?}: expected IP:PORT, e.g. 0.0.0.0:1883"))
        })
        .transpose()
}

/// The broker's settings from the command line; `None` when no MQTT listener is asked for.
pub(crate) fn settings(
    args: &ServerArgs,
    data_dir: &Path,
) -> anyhow::Result<Option<berth_mqtt::Settings>> {
    let listen = addr("mqtt-listen", args.mqtt_listen.as_deref())?;
    let tls_listen = addr("mqtt-tls-listen", args.mqtt_tls_listen.as_deref())?;
    let ws_listen = addr("mqtt-ws-listen", args.mqtt_ws_listen.as_deref())?;
    if listen.is_none() && tls_listen.is_none() && ws_listen.is_none() {
        return Ok(None);
    }
    let tls = match tls_listen {
        None => None,
        Some(a) => {
            // The gateway's first certificate (its default for unknown names).
            let Some(first) = args.gateway_tls_certs.first() else {
                bail!("--mqtt-tls-listen serves the gateway's certificate: give --gateway-tls-cert HOST=CERT.pem:KEY.pem");
            };
            let files = first.split_once('=').map_or(first.as_str(), |(_, f)| f);
            let Some((cert, key)) = files.split_once(':') else {
                bail!("--gateway-tls-cert {first:?}: expected HOST=CERT.pem:KEY.pem");
            };
            Some((a, cert.into(), key.into()))
        }
    };
    let packet = usize::try_from(args.mqtt_max_packet_size).unwrap_or(usize::MAX);
    if !(64..=(256 << 20)).contains(&packet) {
        bail!("--mqtt-max-packet-size: between 64 bytes and 256 MiB");
    }
    Ok(Some(berth_mqtt::Settings {
        listen,
        tls,
        ws_listen,
        storage_dir: data_dir.join("mqtt"),
        limits: berth_mqtt::Limits {
            max_packet_size: packet,
            max_inflight: args.mqtt_max_inflight,
            max_connections_per_subject: args.mqtt_max_connections_per_subject as usize,
            max_connections_per_address: args.mqtt_max_connections_per_address as usize,
            max_session_expiry: args.mqtt_max_session_expiry,
            queue: args.mqtt_queue as usize,
            max_login_failures: args.mqtt_max_login_failures as usize,
            login_lockout: args.mqtt_login_lockout,
        },
    }))
}

/// Start the broker and the task that publishes the control plane's events on it until
/// `shutdown`.
pub(crate) async fn start(
    settings: berth_mqtt::Settings,
    cp: &ControlPlane,
    store: berth_store::Store,
    table: watch::Receiver<Arc<RoutingTable>>,
    verifier: Arc<dyn berth_core::auth::TokenVerifier>,
    shutdown: CancellationToken,
) -> anyhow::Result<berth_mqtt::Broker> {
    let directory = Arc::new(CpDirectory {
        cp: cp.clone(),
        table,
        store,
    });
    let broker = berth_mqtt::Broker::start(settings, verifier, directory)
        .await
        .map_err(|e| anyhow!(e))?;
    let publisher = broker.publisher();
    let mut feed = cp.event_feed();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let next = tokio::select! {
                r = feed.recv() => r,
                () = shutdown.cancelled() => return,
            };
            match next {
                Ok((team, mut event)) => {
                    // As `GET /api/v1/events` shows it to the team: its own names.
                    if let Some(t) = team.as_deref() {
                        if !event.subject.starts_with("berth/") {
                            if let Some(local) = berth_core::team::local_name(t, &event.subject) {
                                event.subject = local.to_string();
                            }
                        }
                    }
                    publisher.publish_event(team.as_deref(), &event).await;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "mqtt: events were not published (the broker fell behind)"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(broker)
}
