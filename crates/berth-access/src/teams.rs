//! Which team a call acts in, and whether the caller's role there allows it (docs/teams.md).
//! The team comes from the route (`/api/v1/teams/{team}/...`), else `?team=`, else the token's
//! team, else the caller's only team; a caller in several teams (or none) that names none gets
//! `team_required`. A team that does not exist and a team the caller is not a member of answer
//! alike (`team_not_found`), so team names do not leak. The platform administrator acts in
//! every team.

use crate::policy::{role_allows, Action};
use crate::{user_not_found, Access, AccessError, Principal};
use berth_core::api::{MemberView, TeamRole, TeamView, Whoami};
use berth_core::team::{global_name, local_name, valid_team_name, Role, DEFAULT_TEAM};
use berth_core::ErrorCode;
use berth_store::{MemberRecord, TeamRecord};

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

impl AccessError {
    /// `team_not_found`: no such team, or the caller is not a member (they answer alike).
    #[must_use]
    pub fn team_not_found(team: &str) -> AccessError {
        team_not_found(team)
    }
}

pub(crate) fn team_not_found(team: &str) -> AccessError {
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
            return Err(team_not_found(&team));
        }
        // A token bound to a team (`berth api-token create --team`) acts in that team only: a
        // CI token of one team carries none of its owner's rights in the others.
        if p.team.as_deref().is_some_and(|bound| bound != team) {
            return Err(team_not_found(&team));
        }
        let role = memberships.iter().find(|m| m.team == team).map(|m| m.role);
        if role.is_none() && !(p.administrator && self.store().get_team(&team)?.is_some()) {
            return Err(team_not_found(&team));
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

fn team_view(t: TeamRecord, role: Option<Role>) -> TeamView {
    TeamView {
        name: t.name,
        created_at: t.created_at,
        role,
        members: t.members,
    }
}

fn member_view(m: MemberRecord) -> MemberView {
    MemberView {
        user: m.user,
        role: m.role,
        added_at: m.added_at,
    }
}

fn last_owner(team: &str, user: &str) -> AccessError {
    AccessError::invalid(format!(
        "{user:?} is the last owner of team {team:?}; make another member owner first"
    ))
}

impl Access {
    /// `GET /api/v1/whoami`: the principal, with the user's teams.
    pub fn whoami(&self, p: &Principal) -> Result<Whoami, AccessError> {
        let mut w = p.whoami();
        w.teams = self
            .store()
            .memberships(&p.user)?
            .into_iter()
            .map(|m| TeamRole {
                team: m.team,
                role: m.role,
            })
            .collect();
        Ok(w)
    }

    /// The team an API token of `p` may be bound to: one `p` is a member of (any existing one
    /// for the administrator); otherwise `team_not_found`, as for a call naming it.
    pub(crate) fn token_team(&self, p: &Principal, team: &str) -> Result<String, AccessError> {
        if !valid_team_name(team) {
            return Err(team_not_found(team));
        }
        let member = self
            .store()
            .memberships(&p.user)?
            .iter()
            .any(|m| m.team == team);
        if member || (p.administrator && self.store().get_team(team)?.is_some()) {
            Ok(team.to_string())
        } else {
            Err(team_not_found(team))
        }
    }

    /// The teams `p` sees: every team for the administrator, else those it is a member of; each
    /// with `p`'s role.
    pub fn list_teams(&self, p: &Principal) -> Result<Vec<TeamView>, AccessError> {
        let mine = self.store().memberships(&p.user)?;
        let role = |t: &str| mine.iter().find(|m| m.team == t).map(|m| m.role);
        Ok(self
            .store()
            .list_teams()?
            .into_iter()
            .filter(|t| p.administrator || role(&t.name).is_some())
            .map(|t| {
                let r = role(&t.name);
                team_view(t, r)
            })
            .collect())
    }

    /// Does `name` exist?
    pub fn team_exists(&self, name: &str) -> Result<bool, AccessError> {
        Ok(valid_team_name(name) && self.store().get_team(name)?.is_some())
    }

    /// Add a team (administrator). Its creator is not made a member: the administrator acts in
    /// every team.
    pub fn create_team(&self, name: &str) -> Result<TeamView, AccessError> {
        if !valid_team_name(name) {
            return Err(AccessError::invalid(format!(
                "team name {name:?}: lowercase letters, digits and -, not starting with -, at most 30 characters"
            )));
        }
        if !self.store().create_team(name)? {
            return Err(AccessError::new(
                ErrorCode::TeamExists,
                format!("a team named {name:?} exists"),
            ));
        }
        let t = self
            .store()
            .get_team(name)?
            .ok_or_else(|| team_not_found(name))?;
        Ok(team_view(t, None))
    }

    /// Remove a team with its members and grants (administrator), if it holds no applications,
    /// services or issuers: checked and removed in one store transaction, so an apply that
    /// commits meanwhile is either counted or refused (`team_not_found`), never left in a removed
    /// team. `default` stays.
    pub fn delete_team(&self, name: &str) -> Result<(), AccessError> {
        if name == DEFAULT_TEAM {
            return Err(AccessError::new(
                ErrorCode::TeamNotEmpty,
                format!("team {DEFAULT_TEAM:?} holds everything deployed before teams and cannot be removed"),
            ));
        }
        if !valid_team_name(name) {
            return Err(team_not_found(name));
        }
        match self.store().delete_empty_team(name)? {
            berth_store::TeamDeletion::Deleted => Ok(()),
            berth_store::TeamDeletion::NotFound => Err(team_not_found(name)),
            berth_store::TeamDeletion::Holds(h) => {
                let held: Vec<String> = [
                    (h.applications, "applications"),
                    (h.services, "services"),
                    (h.issuers, "issuers"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
                Err(AccessError::new(
                    ErrorCode::TeamNotEmpty,
                    format!(
                        "team {name:?} still has {}; remove them first",
                        held.join(", ")
                    ),
                ))
            }
        }
    }

    /// The members of `team` (the middleware checked the caller may read it).
    pub fn members(&self, team: &str) -> Result<Vec<MemberView>, AccessError> {
        Ok(self
            .store()
            .team_members(team)?
            .into_iter()
            .map(member_view)
            .collect())
    }

    /// Add `user` to `team` with `role`, or change its role. The last owner is not demoted.
    pub async fn set_member(
        &self,
        team: &str,
        user: &str,
        role: Role,
    ) -> Result<MemberView, AccessError> {
        if !crate::valid_name(user) || self.store().get_user(user)?.is_none() {
            return Err(user_not_found(user));
        }
        let _g = self.inner.users.lock().await;
        let members = self.store().team_members(team)?;
        if role != Role::Owner && is_last_owner(&members, user) {
            return Err(last_owner(team, user));
        }
        if !self.store().set_member(team, user, role)? {
            return Err(team_not_found(team));
        }
        self.store()
            .team_members(team)?
            .into_iter()
            .find(|m| m.user == user)
            .map(member_view)
            .ok_or_else(|| team_not_found(team))
    }

    /// Remove `user` from `team`. The last owner stays.
    pub async fn remove_member(&self, team: &str, user: &str) -> Result<(), AccessError> {
        let _g = self.inner.users.lock().await;
        let members = self.store().team_members(team)?;
        if is_last_owner(&members, user) {
            return Err(last_owner(team, user));
        }
        if !self.store().remove_member(team, user)? {
            return Err(AccessError::new(
                ErrorCode::MemberNotFound,
                format!("{user:?} is not a member of team {team:?}"),
            ));
        }
        Ok(())
    }
}

/// Is `user` an owner of the team and no one else is?
fn is_last_owner(members: &[MemberRecord], user: &str) -> bool {
    let owners: Vec<&str> = members
        .iter()
        .filter(|m| m.role == Role::Owner)
        .map(|m| m.user.as_str())
        .collect();
    owners == [user]
}
