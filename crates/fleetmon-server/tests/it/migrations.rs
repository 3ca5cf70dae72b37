//! Migrations and partitions against real databases.

use chrono::{Days, Utc};
use fleetmon_server::db::migrate::{self, latest_version, MIGRATIONS};
use fleetmon_server::db::sql::query;
use fleetmon_server::db::{partitions, DbError, SystemDb, TenantContext};

use crate::fixtures;
use crate::harness::{cluster, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_all_succeed_and_apply_the_schema_once() {
    let name = TestDb::create_empty().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let pool = cluster().owner_pool(&name, 1).await;
        runs.push(tokio::spawn(async move {
            let report = migrate::run(&SystemDb::new(pool.clone())).await;
            pool.close().await;
            report
        }));
    }
    let mut applied_by = 0;
    for run in runs {
        let report = run
            .await
            .unwrap()
            .expect("every concurrent migration succeeds");
        assert_eq!(report.current_version, latest_version());
        if !report.applied.is_empty() {
            applied_by += 1;
            assert_eq!(
                report.applied,
                MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(applied_by, 1, "exactly one run applies the schema");

    assert_eq!(
        crate::harness::applied_migrations(&name).await,
        MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let db = TestDb::new().await;
    let report = migrate::run(&db.system()).await.unwrap();
    assert!(
        report.applied.is_empty(),
        "the template is already migrated"
    );
    query("UPDATE fleetmon_schema_migrations SET checksum = '\\x00' WHERE version = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    match migrate::run(&db.system()).await {
        Err(DbError::MigrationChanged { version: 1, .. }) => {}
        other => panic!("expected MigrationChanged, got {other:?}"),
    }
}

#[tokio::test]
async fn partitions_exist_ahead_and_creating_them_again_is_a_no_op() {
    let db = TestDb::new().await;
    let system = db.system();
    assert_eq!(partitions::ensure_around_today(&system).await.unwrap(), 0);

    let today = Utc::now().date_naive();
    let far = today + Days::new(30);
    assert_eq!(partitions::ensure(&system, far, far).await.unwrap(), 3);

    // Events dated at the edges of the window land in their partitions.
    let tenant = db.tenant();
    let org = fixtures::create_org(&tenant, "part").await;
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    for days_ahead in [0i32, partitions::DAYS_AHEAD as i32, 30] {
        query(
            "INSERT INTO job_events (org_id, event_id, job_id, kind, at)
             VALUES ($1, gen_random_uuid(), 'j', 'job.queued',
                     date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                     + make_interval(days => $2) + interval '23 hours')",
        )
        .bind(org)
        .bind(days_ahead)
        .execute(tx.conn())
        .await
        .unwrap_or_else(|e| panic!("insert {days_ahead} days ahead: {e}"));
    }
    tx.commit().await.unwrap();
}
