//! Retention on a real database: whole partitions dropped where every org's retention has passed
//! them, an org that keeps less loses exactly its older rows (in batches), jobs follow their
//! history, each org's audit log says what went, and only one run works at a time.

use chrono::{DateTime, Days, Duration, Utc};
use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::{partitions, TenantContext, TenantDb};
use fleetmon_server::orgs::{audit, settings};
use fleetmon_server::retention::{self, Outcome};
use serde_json::Value;
use uuid::Uuid;

use crate::fixtures;
use crate::harness::TestDb;

const HISTORY: [&str; 3] = ["job_events", "fleet_events", "metric_samples"];

/// Two orgs: `short` keeps 3 days, `long` 30; history 40 days deep.
struct Fixture {
    db: TestDb,
    tenant: TenantDb,
    short: Uuid,
    long: Uuid,
    now: DateTime<Utc>,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let tenant = db.tenant();
        let now = Utc::now();
        let today = now.date_naive();
        partitions::ensure(&db.system(), today - Days::new(40), today)
            .await
            .unwrap();
        let short = fixtures::create_org(&tenant, "short").await;
        let long = fixtures::create_org(&tenant, "long").await;
        for (org, days) in [(short, 3), (long, 30)] {
            let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
            let patch = settings::SettingsPatch {
                retention_days: Some(days),
                ..Default::default()
            };
            settings::update(tx.conn(), org, &patch).await.unwrap();
            tx.commit().await.unwrap();
        }
        Self {
            db,
            tenant,
            short,
            long,
            now,
        }
    }

    /// `count` rows in each history table for `org`, `age` before now.
    async fn history(&self, org: Uuid, age: Duration, count: usize) {
        let at = self.now - age;
        let mut tx = self.tenant.begin(TenantContext::org(org)).await.unwrap();
        // `$1` the org, `$2` an id unique to the row, `$3` its time.
        let inserts = [
            "INSERT INTO job_events (org_id, event_id, job_id, kind, at)
             VALUES ($1, $2, 'j', 'job.queued', $3)",
            "INSERT INTO fleet_events (org_id, event_id, kind, at, machine_id)
             VALUES ($1, $2, 'machine.heartbeat', $3, 'm')",
            "INSERT INTO metric_samples (org_id, series_id, at, value)
             VALUES ($1, hashtext($2::text), $3, 1)",
        ];
        for _ in 0..count {
            let id = Uuid::new_v4();
            for sql in inserts {
                query(sql)
                    .bind(org)
                    .bind(id)
                    .bind(at)
                    .execute(tx.conn())
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
    }

    /// A job of `org` first submitted `created` ago whose current state is from `changed` ago.
    async fn job(&self, org: Uuid, id: &str, created: Duration, changed: Duration) {
        let mut tx = self.tenant.begin(TenantContext::org(org)).await.unwrap();
        query(
            "INSERT INTO jobs (org_id, id, status, created_at, state_rank, state_at, state_event_id)
             VALUES ($1, $2, 'completed', $3, 4, $4, gen_random_uuid())",
        )
        .bind(org)
        .bind(id)
        .bind(self.now - created)
        .bind(self.now - changed)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// `org`'s rows of `table` with `at` (or, for jobs, `created_at`) before `age` ago.
    async fn older_than(&self, org: Uuid, table: &str, age: Duration) -> i64 {
        let column = if table == "jobs" { "created_at" } else { "at" };
        let mut tx = self.tenant.begin(TenantContext::org(org)).await.unwrap();
        let rows = query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE org_id = $1 AND {column} < $2"
        ))
        .bind(org)
        .bind(self.now - age)
        .fetch_one(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    async fn rows(&self, org: Uuid, table: &str) -> i64 {
        self.older_than(org, table, Duration::days(-1)).await
    }

    async fn job_ids(&self, org: Uuid) -> Vec<String> {
        let mut tx = self.tenant.begin(TenantContext::org(org)).await.unwrap();
        let ids = query_scalar("SELECT id FROM jobs ORDER BY id")
            .fetch_all(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ids
    }

    async fn retention_entries(&self, org: Uuid) -> Vec<audit::Entry> {
        let mut tx = self.tenant.begin(TenantContext::org(org)).await.unwrap();
        let entries = audit::page(tx.conn(), org, None, 100).await.unwrap();
        tx.commit().await.unwrap();
        entries
            .into_iter()
            .filter(|entry| entry.action == "retention.run")
            .collect()
    }

    async fn partition_exists(&self, table: &str, age_days: u64) -> bool {
        let day = self.now.date_naive() - Days::new(age_days);
        partition(self, &format!("{table}_p{}", day.format("%Y%m%d"))).await
    }

    /// Both orgs: 2 rows 35 days old (past everyone's retention), 5 rows 10 days old (past the
    /// short retention only), 4 rows a day old; and jobs of each age.
    async fn seed(&self) {
        for org in [self.short, self.long] {
            self.history(org, Duration::days(35), 2).await;
            self.history(org, Duration::days(10), 5).await;
            self.history(org, Duration::days(1), 4).await;
            self.job(org, "ancient", Duration::days(35), Duration::days(35))
                .await;
            self.job(org, "old", Duration::days(10), Duration::days(10))
                .await;
            // Submitted long ago but still changing: its state is recent, so it stays.
            self.job(org, "revived", Duration::days(10), Duration::hours(2))
                .await;
            self.job(org, "new", Duration::hours(3), Duration::hours(1))
                .await;
        }
    }

    async fn run(&self, batch_size: u32) -> Outcome {
        retention::run(&self.db.system(), &self.tenant, batch_size, self.now)
            .await
            .unwrap()
    }
}

async fn partition(fx: &Fixture, name: &str) -> bool {
    let mut tx = fx.db.pool.begin().await.unwrap();
    let exists: bool = query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    exists
}

async fn only_entry(fx: &Fixture, org: Uuid) -> audit::Entry {
    let mut entries = fx.retention_entries(org).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

/// An entry that says `history` rows of each history table and `jobs` jobs went.
fn assert_entry(entry: &audit::Entry, history: i64, jobs: i64, retention_days: i64) {
    for table in HISTORY {
        assert_eq!(deleted(entry, table), history, "{table}: {entry:?}");
    }
    assert_eq!(deleted(entry, "jobs"), jobs, "{entry:?}");
    assert_eq!(entry.details["retention_days"], retention_days);
}

fn deleted(entry: &audit::Entry, table: &str) -> i64 {
    entry.details["deleted"][table].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn expired_rows_of_each_org_go_and_nothing_else() {
    let fx = Fixture::new().await;
    fx.seed().await;
    // A batch size below the rows to delete: several batches per table.
    let Outcome::Completed(report) = fx.run(2).await else {
        panic!("nobody else holds the lock")
    };

    // Days before the longest retention (30 days) are dropped as whole partitions, empty or
    // not; the rest stay, and the coming days' are there.
    for table in HISTORY {
        for age in 31..=40 {
            assert!(
                !fx.partition_exists(table, age).await,
                "{table} {age} days back"
            );
        }
        assert!(fx.partition_exists(table, 30).await, "{table} 30 days back");
        assert!(fx.partition_exists(table, 10).await, "{table} 10 days back");
        let ahead = fx.now.date_naive() + Days::new(partitions::DAYS_AHEAD);
        let name = format!("{table}_p{}", ahead.format("%Y%m%d"));
        assert!(fx.partition_exists(table, 0).await && partition(&fx, &name).await);
    }
    assert_eq!(report.partitions_dropped.len(), 30, "{report:?}");

    for table in HISTORY {
        // The short org keeps its last 3 days only; the long one everything within 30 days.
        assert_eq!(fx.rows(fx.short, table).await, 4, "short {table}");
        assert_eq!(fx.older_than(fx.short, table, Duration::days(3)).await, 0);
        assert_eq!(fx.rows(fx.long, table).await, 9, "long {table}");
        assert_eq!(
            fx.older_than(fx.long, table, Duration::days(30)).await,
            0,
            "long {table}"
        );
    }
    // Jobs go with their history: those whose state is older than the org's cutoff.
    assert_eq!(fx.job_ids(fx.short).await, ["new", "revived"]);
    assert_eq!(fx.job_ids(fx.long).await, ["new", "old", "revived"]);

    // Each org's audit log has one entry with exactly what went and the cutoff: the short org
    // lost 2 rows per table with the dropped day and 5 in batches, the long one the dropped day.
    let short = only_entry(&fx, fx.short).await;
    assert_entry(&short, 7, 2, 3);
    assert_eq!(short.actor, "system");
    let cutoff: DateTime<Utc> = serde_json::from_value(short.details["cutoff"].clone()).unwrap();
    assert_eq!(cutoff, fx.now - Duration::days(3));
    let dropped = short.details["partitions_dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 3);
    assert_entry(&only_entry(&fx, fx.long).await, 2, 1, 30);

    // A second run finds nothing expired and records nothing.
    let Outcome::Completed(again) = fx.run(2).await else {
        panic!("not skipped")
    };
    assert!(again.orgs.is_empty() && again.partitions_dropped.is_empty());
    assert_eq!(fx.retention_entries(fx.short).await.len(), 1);

    let metrics = fleetmon_server::instruments::render(fx.tenant.pool_use());
    for line in [
        "fleetmon_retention_runs_total{outcome=\"completed\"}",
        "fleetmon_retention_rows_deleted_total{table=\"job_events\"}",
        "fleetmon_retention_partitions_dropped_total",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_run_is_skipped_while_another_holds_the_lock() {
    let fx = Fixture::new().await;
    fx.seed().await;
    let expired = fx
        .older_than(fx.short, "job_events", Duration::days(3))
        .await;
    assert_eq!(expired, 7);

    // Another replica's run, as far as the database can tell.
    let mut other = fx.db.pool.begin().await.unwrap();
    let locked: bool = query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
        .bind(retention::LOCK_NAME)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(locked);
    assert!(matches!(fx.run(100).await, Outcome::Skipped));
    assert_eq!(
        fx.older_than(fx.short, "job_events", Duration::days(3))
            .await,
        expired,
        "a skipped run deletes nothing"
    );
    assert!(fx.retention_entries(fx.short).await.is_empty());
    other.rollback().await.unwrap();

    // Two at once: whichever way they interleave, the work is done once.
    let (a, b) = tokio::join!(fx.run(1), fx.run(1));
    let completed: Vec<_> = [a, b]
        .into_iter()
        .filter_map(|outcome| match outcome {
            Outcome::Completed(report) => Some(report),
            Outcome::Skipped => None,
        })
        .collect();
    assert!(!completed.is_empty());
    let removed: u64 = completed
        .iter()
        .flat_map(|report| &report.orgs)
        .filter(|org| org.org_id == fx.short)
        .map(|org| org.deleted["job_events"])
        .sum();
    assert_eq!(removed, 7, "every expired row counted once");
    let entries = fx.retention_entries(fx.short).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(deleted(&entries[0], "job_events"), 7);
    assert_eq!(fx.rows(fx.short, "job_events").await, 4);
    assert_eq!(
        fx.retention_entries(fx.long).await.len(),
        1,
        "the long org lost its dropped day once"
    );
}

#[tokio::test]
async fn without_expired_rows_no_org_gets_an_entry() {
    let fx = Fixture::new().await;
    fx.history(fx.short, Duration::hours(5), 3).await;
    let Outcome::Completed(report) = fx.run(10).await else {
        panic!("not skipped")
    };
    assert!(report.orgs.is_empty(), "{report:?}");
    assert_eq!(fx.rows(fx.short, "job_events").await, 3);
    let entries: Vec<Value> = fx
        .retention_entries(fx.short)
        .await
        .into_iter()
        .map(|e| e.details)
        .collect();
    assert!(entries.is_empty());
}
