//! Which team a call acts in, and whether the caller's role there allows it (docs/teams.md).
//! The team comes from the route (`/api/v1/teams/{team}/...`), else `?team=`, else the token's
//! team, else the caller's only team; a caller in several teams (or none) that names none gets
//! `team_required`. A team that does not exist and a team the caller is not a member of answer
//! alike (`team_not_found`), so team names do not leak. The platform administrator acts in
//! every team.

use crate::policy::{role_allows, Action};
use crate::{Access, AccessError, Principal};
use berth_core::team::{global_name, local_name, valid_team_name, Role};
use berth_core::ErrorCode;

/// The team a call acts in, and the caller's role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub team: String,
    /// None: the platform administrator, not a member of this team (it may do everything).
    pub role: Option<Role>,
    /// The caller is the platform administrator.
    pub administrator: bool,
}

impl Scope {
    /// The global name of this team's object `name` (`berth_core::team::global_name`).
    #[must_use]
    pub fn global(&self, name: &str) -> String {
        global_name(&self.team, name)
    }

    /// This team's name of `global`, if the object is this team's.
    #[must_use]
    pub fn local<'a>(&self, global: &'a str) -> Option<&'a str> {
        local_name(&self.team, global)
    }

    /// Is the object with this global name this team's?
    #[must_use]
    pub fn owns(&self, global: &str) -> bool {
        self.local(global).is_some()
    }

    /// May the caller do `action` here?
    #[must_use]
    pub fn may(&self, action: Action) -> bool {
        self.administrator || self.role.is_some_and(|r| role_allows(r, action))
    }
}

fn not_found(team: &str) -> AccessError {
    AccessError::new(
        ErrorCode::TeamNotFound,
        format!("team {team:?} does not exist or you are not a member of it"),
    )
}

impl Access {
    /// The team `p` acts in for `action`, given the team the call named (route or `?team=`),
    /// checked against `p`'s role there.
    pub fn team_scope(
        &self,
        p: &Principal,
        action: Action,
        named: Option<&str>,
    ) -> Result<Scope, AccessError> {
        let memberships = self.store().memberships(&p.user)?;
        let team = match named.or(p.team.as_deref()) {
            Some(t) => t.to_string(),
            None => {
                match memberships.as_slice() {
                    [only] => only.team.clone(),
                    [] => return Err(AccessError::new(
                        ErrorCode::TeamRequired,
                        "you are not a member of any team: name one with ?team= (berth --team T)",
                    )),
                    several => {
                        let names: Vec<&str> = several.iter().map(|m| m.team.as_str()).collect();
                        return Err(AccessError::new(
                        ErrorCode::TeamRequired,
                        format!(
                            "you are a member of several teams ({}): name one with ?team= (berth --team T, or berth team use T)",
                            names.join(", ")
                        ),
                    ));
                    }
                }
            }
        };
        if !valid_team_name(&team) {
            return Err(not_found(&team));
        }
        let role = memberships.iter().find(|m| m.team == team).map(|m| m.role);
        if role.is_none() && !(p.administrator && self.store().get_team(&team)?.is_some()) {
            return Err(not_found(&team));
        }
        let scope = Scope {
            team,
            role,
            administrator: p.administrator,
        };
        if !scope.may(action) {
            return Err(AccessError::forbidden(&format!(
                "{:?} is {} in team {:?} and may not do this ({} needs another role; see docs/permissions.md)",
                p.user,
                role.map_or("no member", Role::as_str),
                scope.team,
                action.as_str()
            )));
        }
        Ok(scope)
    }
}
