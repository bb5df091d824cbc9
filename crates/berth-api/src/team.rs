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

impl Team {
    /// The global name of the team's object `name` from a path or a body. A `/` in it (a
    /// percent-encoded one in a path) would reach outside the team: refused.
    pub fn name(&self, name: &str) -> Result<String, ApiError> {
        if name.contains('/') {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("invalid name {name:?}: a name cannot contain '/'"),
            ));
        }
        Ok(self.global(name))
    }

    /// The team's name of `global` for an answer (the global name if it is not the team's,
    /// which a handler never answers with).
    pub fn show(&self, global: &str) -> String {
        self.local(global).unwrap_or(global).to_string()
    }

    /// An error from the control plane, with the team's global names (`"shop/web"`, quoted,
    /// as every message quotes names) written as the team's names (`"web"`).
    pub fn localize(&self, e: impl Into<ApiError>) -> ApiError {
        let mut e = e.into();
        e.message = self.text(&e.message);
        e
    }

    /// A message for humans (an error, an application's problem) with the team's quoted global
    /// names written as the team's names.
    pub fn text(&self, message: &str) -> String {
        if self.team == berth_core::team::DEFAULT_TEAM {
            message.to_string()
        } else {
            message.replace(&format!("\"{}/", self.team), "\"")
        }
    }
}

/// `result.in_team(&team)?`: [`Team::localize`] on the error.
pub(crate) trait InTeam<T> {
    fn in_team(self, team: &Team) -> Result<T, ApiError>;
}

impl<T, E: Into<ApiError>> InTeam<T> for Result<T, E> {
    fn in_team(self, team: &Team) -> Result<T, ApiError> {
        self.map_err(|e| team.localize(e))
    }
}
