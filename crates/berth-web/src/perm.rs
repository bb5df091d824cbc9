//! One permission table for the API and the dashboard: a page or form is allowed exactly when
//! the REST call doing the same thing would be (docs/dashboard.md#one-permission-table).

use berth_access::{Access, AccessError, Decision, Principal};
use berth_api::error::ApiError;
use berth_api::team::Team;
use berth_core::ErrorCode;

/// The team in which `p` may do what `method route` (an `/api/v1` route template) does, with
/// the team named by the page (`?team=` or a form's `team`): `berth_access::authorize` on the
/// route, then `Access::team_scope` with the route's action, as the API's middleware does.
pub fn scope(
    access: &Access,
    p: &Principal,
    method: &str,
    route: &str,
    team: Option<&str>,
) -> Result<Team, ApiError> {
    match berth_access::authorize(p, method, route) {
        Decision::Allow => {}
        Decision::Forbidden => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("user {:?} may not do this ({method} {route})", p.user),
            ))
        }
        Decision::PasswordChangeRequired => {
            return Err(ApiError::new(
                ErrorCode::PasswordChangeRequired,
                format!(
                "the password of {:?} was generated and must be changed first (berth user passwd)",
                p.user
            ),
            ))
        }
    }
    let action = berth_access::action(method, route).ok_or_else(|| {
        // Every route the dashboard asks about is in policy::ROUTES; a typo here is a bug.
        tracing::error!(
            method,
            route,
            "dashboard asked about a route not in policy::ROUTES"
        );
        ApiError::new(ErrorCode::Internal, "internal error; see the server log")
    })?;
    access
        .team_scope(p, action, team.filter(|t| !t.is_empty()))
        // The dashboard shows environment `dev` (docs/dashboard.md: other environments later).
        .map(|scope| Team {
            scope,
            env: berth_core::team::DEV_ENV.to_string(),
        })
        .map_err(from_access)
}

/// An access refusal as the API's error.
#[must_use]
pub fn from_access(e: AccessError) -> ApiError {
    ApiError::new(e.code, e.message)
}
