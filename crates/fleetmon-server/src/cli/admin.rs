//! `fleetmon org …`, `token …`, `user …`, `keys …` and `retention run`: administration from the
//! command line, through the same tenant transactions as requests.

use anyhow::{bail, Context};
use uuid::Uuid;

use std::io::{BufRead, IsTerminal};

use super::{KindArg, OrgCommand, TokenCommand, UserCommand};
use crate::auth::local;
use crate::auth::tokens::{self, TokenKind};
use crate::db::{Database, TenantContext, TenantDb};
use crate::orgs;

/// The id of the org with `slug`, or an error that says how to find the right one.
pub async fn org_id(db: &TenantDb, slug: &str) -> anyhow::Result<Uuid> {
    let mut tx = db.begin(TenantContext::none()).await?;
    let org = orgs::by_slug(tx.conn(), slug).await?;
    tx.commit().await?;
    org.map(|org| org.id).with_context(|| {
        format!("there is no organization {slug:?}; create it with `fleetmon org create {slug}`")
    })
}

/// Creates an organization without members; returns its id.
pub async fn create_org(db: &TenantDb, slug: &str, name: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    let mut tx = db.begin(TenantContext::org(id)).await?;
    orgs::create(tx.conn(), id, slug, name, None).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn org(db: &Database, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { slug, name, .. } => org_create(db, &slug, name.as_deref()).await,
    }
}

pub async fn token(db: &Database, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            org, kind, name, ..
        } => {
            let kind = match kind {
                KindArg::Ingest => TokenKind::Ingest,
                KindArg::Read => TokenKind::Read,
            };
            token_create(db, &org, kind, &name).await
        }
        TokenCommand::List { org, .. } => token_list(db, &org).await,
        TokenCommand::Revoke { org, id, .. } => token_revoke(db, &org, id).await,
    }
}

async fn org_create(db: &Database, slug: &str, name: Option<&str>) -> anyhow::Result<()> {
    let id = create_org(&db.tenant(), slug, name.unwrap_or(slug)).await?;
    println!("created organization {slug} ({id})");
    Ok(())
}

async fn token_create(db: &Database, org: &str, kind: TokenKind, name: &str) -> anyhow::Result<()> {
    let tenant = db.tenant();
    let org_id = org_id(&tenant, org).await?;
    let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
    let token = tokens::create(tx.conn(), org_id, kind, name, None).await?;
    tx.commit().await?;
    println!(
        "created {} token {name:?} ({}) for {org}; it is shown only this once:",
        kind.as_str(),
        token.id
    );
    println!("{}", token.secret);
    Ok(())
}

async fn token_list(db: &Database, org: &str) -> anyhow::Result<()> {
    let tenant = db.tenant();
    let org_id = org_id(&tenant, org).await?;
    let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
    let listed = tokens::list(tx.conn()).await?;
    if listed.is_empty() {
        println!("{org} has no API tokens");
    }
    for t in listed {
        let state = match (t.revoked_at, t.last_used_at) {
            (Some(at), _) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
            (None, Some(at)) => format!("last used {}", at.format("%Y-%m-%d %H:%M")),
            (None, None) => "never used".to_string(),
        };
        println!(
            "{}  {:<6}  {:<14}  {}  {state}",
            t.id, t.kind, t.prefix, t.name
        );
    }
    Ok(())
}

async fn token_revoke(db: &Database, org: &str, id: Uuid) -> anyhow::Result<()> {
    let tenant = db.tenant();
    let org_id = org_id(&tenant, org).await?;
    let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
    if !tokens::revoke(tx.conn(), id).await? {
        bail!("{org} has no token {id}; `fleetmon token list --org {org}` shows its tokens");
    }
    tx.commit().await?;
    println!("revoked token {id}");
    Ok(())
}

/// The new account's password: prompted twice at a terminal, else one line of standard input.
pub fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            bail!("the passwords differ; nothing was created");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password on standard input; pipe one line, e.g. `echo \"$PASSWORD\" | fleetmon user create …`");
    }
    Ok(password)
}

pub async fn user(db: &Database, command: UserCommand, password: &str) -> anyhow::Result<()> {
    let UserCommand::Create {
        email,
        name,
        org,
        role,
        ..
    } = command;
    let tenant = db.tenant();
    let org_id = match &org {
        Some(slug) => Some(org_id(&tenant, slug).await?),
        None => None,
    };
    let mut tx = tenant.begin(TenantContext::none()).await?;
    let user_id = local::create_account(tx.conn(), &email, name.as_deref(), password).await?;
    tx.commit().await?;
    if let (Some(org_id), Some(role)) = (org_id, role) {
        let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
        local::add_member(tx.conn(), org_id, user_id, role.as_str()).await?;
        tx.commit().await?;
    }
    match (&org, role) {
        (Some(slug), Some(role)) => println!(
            "created user {email} ({user_id}), {} of {slug}",
            role.as_str()
        ),
        _ => println!("created user {email} ({user_id})"),
    }
    Ok(())
}

pub async fn rotate_keys(db: &Database) -> anyhow::Result<()> {
    let mut tx = db.tenant().begin(TenantContext::none()).await?;
    let kid = crate::auth::signing::rotate(tx.conn()).await?;
    tx.commit().await?;
    println!("now signing with key {kid}; the previous key verifies for another hour");
    Ok(())
}

/// `fleetmon retention run`: one run now, and what it did.
pub async fn retention(
    db: &Database,
    batch_size: Option<u32>,
    file: &crate::config::FileConfig,
) -> anyhow::Result<()> {
    let batch_size = crate::config::RetentionArgs {
        retention_batch_size: batch_size,
        ..Default::default()
    }
    .resolve(&file.retention)
    .batch_size;
    let outcome =
        crate::retention::run(&db.system(), &db.tenant(), batch_size, chrono::Utc::now()).await?;
    let report = match outcome {
        crate::retention::Outcome::Skipped => {
            println!("another fleetmon is running retention right now; nothing done");
            return Ok(());
        }
        crate::retention::Outcome::Completed(report) => report,
    };
    if report.partitions_created > 0 {
        println!(
            "created {} history partitions ahead",
            report.partitions_created
        );
    }
    for partition in &report.partitions_dropped {
        println!("dropped partition {partition}");
    }
    let tenant = db.tenant();
    for org in &report.orgs {
        let mut tx = tenant.begin(TenantContext::none()).await?;
        let slug = orgs::by_id(tx.conn(), org.org_id)
            .await?
            .map_or_else(|| org.org_id.to_string(), |org| org.slug);
        tx.commit().await?;
        let deleted: Vec<String> = org
            .deleted
            .iter()
            .map(|(table, rows)| format!("{rows} {table}"))
            .collect();
        println!(
            "{slug}: removed {} (older than {}, retention {} days)",
            deleted.join(", "),
            org.cutoff
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            org.retention_days
        );
    }
    if report.orgs.is_empty() {
        println!("nothing had expired");
    }
    Ok(())
}
