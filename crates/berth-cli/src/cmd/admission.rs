//! `berth admission grant | revoke | ls` (docs/teams.md#admission): the administrator's grants
//! of host-reaching Compose keys to a team.

use super::Ctx;
use crate::commands::print_list;
use crate::AdmissionCommand;

pub(crate) async fn run(ctx: &Ctx, cmd: AdmissionCommand) -> anyhow::Result<i32> {
    let client = &ctx.client;
    match cmd {
        AdmissionCommand::Grant { team, key } => {
            let g = client.grant_admission(&team, &key).await?;
            outln!("team {} may use {}", g.team, g.key);
            Ok(0)
        }
        AdmissionCommand::Revoke { team, key } => {
            client.revoke_admission(&team, &key).await?;
            outln!("team {team} may no longer use {key}; running containers are not touched");
            Ok(0)
        }
        AdmissionCommand::Ls { team, out } => {
            let list = client.admission_grants(&team).await?;
            print_list(&out, &list, &["KEY", "GRANTED BY", "CREATED"], |g| {
                vec![g.key.clone(), g.granted_by.clone(), g.created_at.clone()]
            });
            Ok(0)
        }
    }
}
