//! Org membership that follows from who a user is: invitations to their verified email, and the
//! team (Stack's `selected_team_id`, or an OIDC org claim) their provider says they belong to.

use uuid::Uuid;

use crate::db::sql::{query, query_scalar};
use crate::db::{DbError, TenantContext, TenantDb};
use crate::orgs::{self, members};

/// Turns every invitation addressed to the user's verified email into a membership.
pub async fn accept_invitations(db: &TenantDb, user_id: Uuid) -> Result<(), DbError> {
    let mut tx = db.begin(TenantContext::none().with_user(user_id)).await?;
    let invited = members::invitations_for_user(tx.conn()).await?;
    tx.commit().await?;
    for (org_id, role) in invited {
        let mut tx = db
            .begin(TenantContext::org(org_id).with_user(user_id))
            .await?;
        members::accept_invitation(tx.conn(), org_id, user_id).await?;
        crate::orgs::audit::record(
            tx.conn(),
            org_id,
            &format!("user:{user_id}"),
            "invitation.accepted",
            Some(&format!("user:{user_id}")),
            serde_json::json!({ "role": role }),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Where a team claim comes from: Stack's webhooks may have said the team, the user or their
/// membership is gone, which a still-valid token must not undo.
pub struct ClaimSource<'a> {
    pub stack_issuer: Option<&'a str>,
    pub subject: &'a str,
}

/// Makes the user a member of the org linked to `team` (its `external_team_id`). A team seen for
/// the first time gets an org, and its first user becomes the owner; later users join as
/// members. An existing role is never changed. Nothing is joined when the team, the user or the
/// membership was deleted in Stack (per its webhooks), or when an admin removed this user from
/// the org: a claim never overrides a removal (an admin can add them back).
pub async fn join_team_org(
    db: &TenantDb,
    user_id: Uuid,
    team: &str,
    source: ClaimSource<'_>,
) -> Result<(), DbError> {
    let mut tx = db.begin(TenantContext::none()).await?;
    let org_id: Option<Uuid> =
        query_scalar("SELECT id FROM organizations WHERE external_team_id = $1")
            .bind(team)
            .fetch_optional(tx.conn())
            .await?;
    let gone_in_stack: bool = match source.stack_issuer {
        Some(issuer) => {
            query_scalar(
                "SELECT EXISTS (SELECT FROM stack_sync_state WHERE issuer = $1 AND NOT present
                                AND ((kind = 'team' AND object_id = $2)
                                  OR (kind = 'membership' AND object_id = $2 || '/' || $3)
                                  OR (kind = 'user' AND object_id = $3)))",
            )
            .bind(issuer)
            .bind(team)
            .bind(source.subject)
            .fetch_one(tx.conn())
            .await?
        }
        None => false,
    };
    tx.commit().await?;
    if gone_in_stack {
        return Ok(());
    }
    let (org_id, role) = match org_id {
        Some(org_id) => (org_id, "member"),
        None => (create_team_org(db, team).await?, "owner"),
    };
    let mut tx = db
        .begin(TenantContext::org(org_id).with_user(user_id))
        .await?;
    let joined = query(
        "INSERT INTO memberships (org_id, user_id, role)
         SELECT $1, $2, $3
         WHERE NOT EXISTS (SELECT FROM audit_log WHERE org_id = $1 AND action = 'member.removed'
                                                   AND target = 'user:' || $2::text)
         ON CONFLICT (org_id, user_id) DO NOTHING",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(role)
    .execute(tx.conn())
    .await?;
    if joined.rows_affected() > 0 {
        orgs::audit::record(
            tx.conn(),
            org_id,
            "system",
            "member.joined_from_team",
            Some(&format!("user:{user_id}")),
            serde_json::json!({ "team": team, "role": role }),
        )
        .await?;
    }
    tx.commit().await
}

/// An org for a team not seen before; another replica creating it at the same time wins.
async fn create_team_org(db: &TenantDb, team: &str) -> Result<Uuid, DbError> {
    let id = Uuid::new_v4();
    let slug_base: String = team
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    let slug = format!("team-{slug_base}-{}", &id.simple().to_string()[..6]);
    let mut tx = db.begin(TenantContext::org(id)).await?;
    let created: Option<Uuid> = query_scalar(
        "INSERT INTO organizations (id, slug, name, external_team_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (external_team_id) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&slug)
    .bind(format!("Team {team}"))
    .bind(team)
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    match created {
        Some(id) => Ok(id),
        None => {
            let mut tx = db.begin(TenantContext::none()).await?;
            let id = query_scalar("SELECT id FROM organizations WHERE external_team_id = $1")
                .bind(team)
                .fetch_one(tx.conn())
                .await?;
            tx.commit().await?;
            Ok(id)
        }
    }
}
