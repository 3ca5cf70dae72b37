//! With a pool of one connection, whatever the previous transaction did — commit, roll back,
//! fail, or get dropped mid-query — the next one starts with no role and no tenant settings.

use std::time::Duration;

use fleetmon_server::db::sql::{query, query_as, query_scalar};
use fleetmon_server::db::{TenantContext, TenantDb};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixtures;
use crate::harness::{TestDb, OWNER};

/// What a fresh transaction on the pool's only connection sees, outside any tenant context.
async fn assert_clean(pool: &PgPool, after: &str) {
    let mut tx = pool.begin().await.unwrap();
    let (user, role, org, acting_user): (String, String, String, String) = query_as(
        "SELECT current_user::text, current_setting('role'),
                coalesce(current_setting('fleetmon.org_id', true), ''),
                coalesce(current_setting('fleetmon.user_id', true), '')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(user, OWNER, "after {after}: leftover role");
    assert_eq!(role, "none", "after {after}: leftover SET ROLE");
    assert_eq!(org, "", "after {after}: leftover org setting");
    assert_eq!(acting_user, "", "after {after}: leftover user setting");
}

async fn visible_jobs(db: &TenantDb) -> i64 {
    let mut tx = db.begin(TenantContext::none()).await.unwrap();
    query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(tx.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn nothing_leaks_to_the_next_transaction_on_the_same_connection() {
    let db = TestDb::with_pool_size(1).await;
    let tenant = db.tenant();
    let org = fixtures::create_org(&tenant, "h").await;
    let user = Uuid::new_v4();
    let context = TenantContext::org(org).with_user(user);

    // Commit.
    let mut tx = tenant.begin(context).await.unwrap();
    fixtures::insert(tx.conn(), "jobs", org).await.unwrap();
    tx.commit().await.unwrap();
    assert_clean(&db.pool, "a commit").await;
    assert_eq!(visible_jobs(&tenant).await, 0);

    // Rollback.
    let mut tx = tenant.begin(context).await.unwrap();
    fixtures::insert(tx.conn(), "jobs", org).await.unwrap();
    tx.rollback().await.unwrap();
    assert_clean(&db.pool, "a rollback").await;

    // An SQL error, then the transaction is dropped.
    let mut tx = tenant.begin(context).await.unwrap();
    query("SELECT 1 / 0").execute(tx.conn()).await.unwrap_err();
    drop(tx);
    assert_clean(&db.pool, "an SQL error").await;

    // A request future dropped while its query runs (a client disconnecting, a timeout).
    let abandoned = async {
        let mut tx = tenant.begin(context).await.unwrap();
        query("SELECT pg_sleep(2)")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    assert!(tokio::time::timeout(Duration::from_millis(200), abandoned)
        .await
        .is_err());
    assert_clean(&db.pool, "a future dropped mid-transaction").await;
    assert_eq!(visible_jobs(&tenant).await, 0);

    // And the connection still works for tenant work.
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let n: i64 = query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(n, 1, "the committed job, and only it");
}
