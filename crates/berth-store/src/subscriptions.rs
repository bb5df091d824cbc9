//! Subscriptions (docs/market.md#subscribe): which application calls which market entry's
//! provider instance. One row per (consumer application, market entry); it goes with the
//! application.

use crate::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// A consumer application's subscription to a market entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The consumer application's global name.
    pub app: String,
    /// The market entry: the provider service's global name.
    pub service: String,
    /// The provider's plan it subscribed to, if any.
    pub plan: Option<String>,
    /// `cli` (berth subscribe) or `uses` (`x-berth.uses` in the application's file).
    pub origin: String,
    pub created_by: String,
    pub created_at: String,
}

/// [`SubscriptionRecord::origin`] of `berth subscribe`.
pub const ORIGIN_CLI: &str = "cli";
/// [`SubscriptionRecord::origin`] of `x-berth.uses`.
pub const ORIGIN_USES: &str = "uses";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        app: r.get(0)?,
        service: r.get(1)?,
        plan: r.get(2)?,
        origin: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const COLS: &str = "app, service, plan, origin, created_by, created_at";

impl Store {
    /// Record a subscription; an existing one keeps its origin `cli` (the stronger: it stays
    /// when the file stops naming it) and takes the new plan. Returns whether it is new.
    pub fn subscribe(
        &self,
        app: &str,
        service: &str,
        plan: Option<&str>,
        origin: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT origin FROM subscriptions WHERE app = ?1 AND service = ?2",
                params![app, service],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            None => {
                conn.execute(
                    &format!("INSERT INTO subscriptions({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![app, service, plan, origin, by, now()],
                )?;
                Ok(true)
            }
            Some(old) => {
                let origin = if old == ORIGIN_CLI {
                    ORIGIN_CLI
                } else {
                    origin
                };
                conn.execute(
                    "UPDATE subscriptions SET plan = ?3, origin = ?4 WHERE app = ?1 AND service = ?2",
                    params![app, service, plan, origin],
                )?;
                Ok(false)
            }
        }
    }

    /// Remove a subscription; whether there was one.
    pub fn unsubscribe(&self, app: &str, service: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM subscriptions WHERE app = ?1 AND service = ?2",
            params![app, service],
        )?;
        Ok(n > 0)
    }

    /// One subscription.
    pub fn subscription(
        &self,
        app: &str,
        service: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM subscriptions WHERE app = ?1 AND service = ?2"),
                params![app, service],
                row,
            )
            .optional()?)
    }

    /// An application's subscriptions, by market entry.
    pub fn subscriptions_of(&self, app: &str) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.subscription_rows("WHERE app = ?1 ORDER BY service", app)
    }

    /// A market entry's subscribers, by application.
    pub fn subscribers_of(&self, service: &str) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.subscription_rows("WHERE service = ?1 ORDER BY app", service)
    }

    /// Every subscription, by market entry then application.
    pub fn all_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM subscriptions ORDER BY service, app"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn subscription_rows(
        &self,
        clause: &str,
        arg: &str,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLS} FROM subscriptions {clause}"))?;
        let rows = stmt.query_map(params![arg], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_keeps_cli_origin_and_lists_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store
            .subscribe("b/shop", "a/orders", None, ORIGIN_USES, "bob")
            .unwrap());
        assert!(!store
            .subscribe("b/shop", "a/orders", Some("gold"), ORIGIN_CLI, "bob")
            .unwrap());
        assert!(!store
            .subscribe("b/shop", "a/orders", None, ORIGIN_USES, "bob")
            .unwrap());
        let s = store.subscription("b/shop", "a/orders").unwrap().unwrap();
        assert_eq!(s.origin, ORIGIN_CLI, "cli wins over uses");
        store
            .subscribe("c/web", "a/orders", None, ORIGIN_CLI, "carol")
            .unwrap();
        let subs: Vec<String> = store
            .subscribers_of("a/orders")
            .unwrap()
            .into_iter()
            .map(|s| s.app)
            .collect();
        assert_eq!(subs, ["b/shop", "c/web"]);
        assert_eq!(store.subscriptions_of("b/shop").unwrap().len(), 1);
        assert!(store.unsubscribe("b/shop", "a/orders").unwrap());
        assert!(!store.unsubscribe("b/shop", "a/orders").unwrap());
        assert_eq!(store.all_subscriptions().unwrap().len(), 1);
    }
}
