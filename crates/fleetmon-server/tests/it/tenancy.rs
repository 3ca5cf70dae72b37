//! The isolation checks, shared by the direct and the PgBouncer runs.

use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::{TenantContext, TenantDb};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixtures::{self, TENANT_TABLES};

const ROWS_PER_ORG: i64 = 2;

/// The SQLSTATE of a failed statement.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

async fn count(db: &TenantDb, context: TenantContext, sql: &str, org: Option<Uuid>) -> i64 {
    let mut tx = db.begin(context).await.unwrap();
    let mut q = query_scalar(sql);
    if let Some(org) = org {
        q = q.bind(org);
    }
    let n: i64 = q.fetch_one(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();
    n
}

async fn affected(db: &TenantDb, context: TenantContext, sql: &str, org: Uuid) -> u64 {
    let mut tx = db.begin(context).await.unwrap();
    let n = query(sql)
        .bind(org)
        .execute(tx.conn())
        .await
        .unwrap()
        .rows_affected();
    tx.rollback().await.unwrap();
    n
}

fn assert_rls_violation<T: std::fmt::Debug>(result: Result<T, sqlx::Error>, what: &str) {
    let error = result.expect_err(what);
    assert_eq!(
        sqlstate(&error).as_deref(),
        Some("42501"),
        "{what}: {error}"
    );
}

async fn insert_fails(db: &TenantDb, context: TenantContext, table: &str, org: Uuid) {
    let mut tx = db.begin(context).await.unwrap();
    let result = fixtures::insert(tx.conn(), table, org).await;
    assert_rls_violation(result, &format!("{table}: insert for another org"));
}

/// Every check of the isolation suite, for every tenant table. `raw` is a pool on the same
/// database used to open transactions that never set the tenant settings at all.
pub async fn assert_every_table_isolated(db: &TenantDb, raw: &PgPool) {
    let org_a = fixtures::create_org(db, "a").await;
    let org_b = fixtures::create_org(db, "b").await;
    for (table, _) in TENANT_TABLES {
        for org in [org_a, org_b] {
            let mut tx = db.begin(TenantContext::org(org)).await.unwrap();
            for _ in 0..ROWS_PER_ORG {
                fixtures::insert(tx.conn(), table, org)
                    .await
                    .unwrap_or_else(|e| panic!("{table}: insert in own org failed: {e}"));
            }
            tx.commit().await.unwrap();
        }
        assert_table_isolated(db, raw, table, org_a, org_b).await;
    }
}

async fn assert_table_isolated(db: &TenantDb, raw: &PgPool, table: &str, a: Uuid, b: Uuid) {
    let in_a = TenantContext::org(a);
    let all = format!("SELECT count(*) FROM {table}");
    let of_org = format!("SELECT count(*) FROM {table} WHERE org_id = $1");

    assert_eq!(
        count(db, in_a, &all, None).await,
        ROWS_PER_ORG,
        "{table}: A sees only its rows"
    );
    assert_eq!(
        count(db, in_a, &of_org, Some(b)).await,
        0,
        "{table}: A sees none of B's rows"
    );
    assert_eq!(
        affected(
            db,
            in_a,
            &format!("UPDATE {table} SET org_id = org_id WHERE org_id = $1"),
            b
        )
        .await,
        0,
        "{table}: A cannot update B's rows"
    );
    assert_eq!(
        affected(
            db,
            in_a,
            &format!("UPDATE {table} SET org_id = org_id WHERE org_id <> $1"),
            b
        )
        .await,
        ROWS_PER_ORG as u64,
        "{table}: A updates exactly its own rows"
    );
    assert_eq!(
        affected(
            db,
            in_a,
            &format!("DELETE FROM {table} WHERE org_id = $1"),
            b
        )
        .await,
        0,
        "{table}: A cannot delete B's rows"
    );
    insert_fails(db, in_a, table, b).await;
    // Moving a row into another org is refused by WITH CHECK.
    let mut tx = db.begin(in_a).await.unwrap();
    let moved = query(&format!("UPDATE {table} SET org_id = $1"))
        .bind(b)
        .execute(tx.conn())
        .await;
    assert_rls_violation(moved, &format!("{table}: moving rows to another org"));
    drop(tx);

    // B's rows are untouched.
    assert_eq!(
        count(db, TenantContext::org(b), &all, None).await,
        ROWS_PER_ORG,
        "{table}: B intact"
    );

    // An empty tenant setting: no rows, no error, and no inserts.
    assert_eq!(
        count(db, TenantContext::none(), &all, None).await,
        0,
        "{table}: empty context"
    );
    insert_fails(db, TenantContext::none(), table, a).await;

    // No tenant setting at all, as the runtime role.
    let mut tx = raw.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL ROLE fleetmon_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = query_scalar(&all).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 0, "{table}: unset context sees nothing");
    tx.rollback().await.unwrap();
}
