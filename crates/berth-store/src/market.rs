//! The market's provider instances (docs/market.md): which application serves a published
//! service to its subscribers. One binding per service; it goes with its application.

use crate::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// A published service bound to the application that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    /// The service's global name.
    pub service: String,
    /// The application's global name.
    pub app: String,
    /// The application's service that runs the version.
    pub app_service: String,
    /// The version published with `--app`.
    pub version: String,
    pub bound_by: String,
    pub bound_at: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BindingRecord> {
    Ok(BindingRecord {
        service: r.get(0)?,
        app: r.get(1)?,
        app_service: r.get(2)?,
        version: r.get(3)?,
        bound_by: r.get(4)?,
        bound_at: r.get(5)?,
    })
}

const COLS: &str = "service, app, app_service, version, bound_by, bound_at";

impl Store {
    /// Bind a service's market entry to an application (replacing an earlier binding).
    pub fn bind_market(
        &self,
        service: &str,
        app: &str,
        app_service: &str,
        version: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO market_bindings(service, app, app_service, version, bound_by, bound_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(service) DO UPDATE SET app = ?2, app_service = ?3, version = ?4,
               bound_by = ?5, bound_at = ?6",
            params![service, app, app_service, version, by, now()],
        )?;
        Ok(())
    }

    /// A service's binding.
    pub fn market_binding(&self, service: &str) -> Result<Option<BindingRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLS} FROM market_bindings WHERE service = ?1"),
                params![service],
                row,
            )
            .optional()?)
    }

    /// Every binding.
    pub fn market_bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM market_bindings ORDER BY service"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
