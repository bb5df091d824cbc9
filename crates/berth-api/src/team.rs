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

/// The team of a team-scoped call, and, on the application routes, the environment
/// (`?env=`, default `dev`; docs/environments.md).
#[derive(Debug, Clone)]
pub struct Team {
    pub scope: Scope,
    /// The environment an application route acts in (`dev` on other routes).
    pub env: String,
}

impl std::ops::Deref for Team {
    type Target = Scope;
    fn deref(&self) -> &Scope {
        &self.scope
    }
}

/// The environment an application route names (`?env=`, taken off the query by the access
/// middleware; `dev` when absent).
#[derive(Debug, Clone)]
pub struct EnvParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Team {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let env = parts
            .extensions
            .get::<EnvParam>()
            .map_or_else(|| berth_core::team::DEV_ENV.to_string(), |e| e.0.clone());
        parts
            .extensions
            .get::<Scope>()
            .cloned()
            .map(|scope| Team { scope, env })
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

    /// The global name of the team's application `name` in the call's environment
    /// (`berth_core::team::app_global`). A `/` or `@` in it would reach outside the team or the
    /// environment: refused.
    pub fn app(&self, name: &str) -> Result<String, ApiError> {
        if !berth_core::team::valid_env_name(&self.env) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "invalid environment name {:?}: use 1-40 lowercase letters, digits and '-'",
                    self.env
                ),
            ));
        }
        if name.contains(['/', '@']) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("invalid application name {name:?}: a name cannot contain '/' or '@'"),
            ));
        }
        Ok(self.app_global(name))
    }

    /// [`Team::app`] without the check (a name already checked).
    pub fn app_global(&self, name: &str) -> String {
        berth_core::team::app_global(&self.team, &self.env, name)
    }

    /// The application name of the global application name `global`, if it is the team's and
    /// in the call's environment.
    pub fn app_local<'a>(&self, global: &'a str) -> Option<&'a str> {
        let (team, env, name) = berth_core::team::split_app(global);
        (team == self.team && env == self.env).then_some(name)
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
        let message = if self.team == berth_core::team::DEFAULT_TEAM {
            message.to_string()
        } else {
            message.replace(&format!("\"{}/", self.team), "\"")
        };
        // The environment's application names (`"web@staging"`) too.
        if self.env == berth_core::team::DEV_ENV {
            message
        } else {
            message.replace(&format!("@{}\"", self.env), "\"")
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
