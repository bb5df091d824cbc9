//! The team a handler acts in: [`Team`] extracts the [`Scope`] that the access middleware
//! resolved for a team-scoped route (`berth_access::policy::ROUTES`). Handlers turn a team's
//! names into global ones with [`Scope::global`] before they reach the control plane, and
//! global names back with [`Scope::local`] in what they answer; an object of another team is
//! answered as not found.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use berth_access::Scope;
use berth_core::ErrorCode;
use http::request::Parts;

/// The team of a team-scoped call.
#[derive(Debug, Clone)]
pub struct Team(pub Scope);

impl std::ops::Deref for Team {
    type Target = Scope;
    fn deref(&self) -> &Scope {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Team {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Scope>()
            .cloned()
            .map(Team)
            .ok_or_else(|| {
                // A handler asked for a team on a route the permission table does not mark as
                // team-scoped: a bug, caught by the permission walk test.
                tracing::error!("a team-scoped handler on a route without a team (policy::ROUTES)");
                ApiError::new(ErrorCode::Internal, "internal error; see the server log")
            })
    }
}
