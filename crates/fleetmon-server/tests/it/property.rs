//! Property: random orgs, random rows, random queries through tenant transactions — no query ever
//! returns, changes or deletes a row of another org.

use std::collections::BTreeMap;

use fleetmon_server::db::sql::{query, query_as};
use fleetmon_server::db::{TenantContext, TenantDb};
use proptest::prelude::*;
use uuid::Uuid;

use crate::fixtures;
use crate::harness::TestDb;

#[derive(Debug, Clone)]
enum Op {
    ListAll,
    ById(String),
    ByStatus(&'static str),
    SetStatus(String, &'static str),
    Delete(String),
    SearchPrefix(String),
}

const STATUSES: &[&str] = &["queued", "in_progress", "completed", "failed"];

fn job_id() -> impl Strategy<Value = String> {
    // A small id space, so the same job id often exists in several orgs.
    (0u8..6).prop_map(|n| format!("job-{n}"))
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop::sample::select(STATUSES);
    prop_oneof![
        Just(Op::ListAll),
        job_id().prop_map(Op::ById),
        status.clone().prop_map(Op::ByStatus),
        (job_id(), status).prop_map(|(id, s)| Op::SetStatus(id, s)),
        job_id().prop_map(Op::Delete),
        "job-[0-5]?".prop_map(Op::SearchPrefix),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    orgs: usize,
    /// (org index, job id, status)
    rows: Vec<(usize, String, &'static str)>,
    /// (org index acting, operation)
    ops: Vec<(usize, Op)>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..5).prop_flat_map(|orgs| {
        (
            Just(orgs),
            prop::collection::vec((0..orgs, job_id(), prop::sample::select(STATUSES)), 0..20),
            prop::collection::vec((0..orgs, op()), 1..25),
        )
            .prop_map(|(orgs, rows, ops)| Case { orgs, rows, ops })
    })
}

type Model = BTreeMap<(usize, String), &'static str>;

async fn run_case(db: &TenantDb, case: &Case) -> Result<(), TestCaseError> {
    let mut orgs = Vec::new();
    for _ in 0..case.orgs {
        orgs.push(fixtures::create_org(db, "p").await);
    }
    let mut model = Model::new();
    for (org, id, status) in &case.rows {
        let mut tx = db.begin(TenantContext::org(orgs[*org])).await.unwrap();
        query(
            "INSERT INTO jobs (org_id, id, status, created_at, state_rank, state_at, state_event_id)
             VALUES ($1, $2, $3, now(), 1, now(), gen_random_uuid())
             ON CONFLICT (org_id, id) DO UPDATE SET status = excluded.status",
        )
        .bind(orgs[*org])
        .bind(id)
        .bind(status)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        model.insert((*org, id.clone()), status);
    }

    for (actor, op) in &case.ops {
        let org = orgs[*actor];
        let mut tx = db.begin(TenantContext::org(org)).await.unwrap();
        let returned: Vec<(Uuid, String, String)> = match op {
            Op::ListAll => {
                query_as("SELECT org_id, id, status FROM jobs")
                    .fetch_all(tx.conn())
                    .await
            }
            Op::ById(id) => {
                query_as("SELECT org_id, id, status FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_all(tx.conn())
                    .await
            }
            Op::ByStatus(s) => {
                query_as("SELECT org_id, id, status FROM jobs WHERE status = $1")
                    .bind(*s)
                    .fetch_all(tx.conn())
                    .await
            }
            Op::SetStatus(id, s) => {
                query_as("UPDATE jobs SET status = $2 WHERE id = $1 RETURNING org_id, id, status")
                    .bind(id)
                    .bind(*s)
                    .fetch_all(tx.conn())
                    .await
            }
            Op::Delete(id) => {
                query_as("DELETE FROM jobs WHERE id = $1 RETURNING org_id, id, status")
                    .bind(id)
                    .fetch_all(tx.conn())
                    .await
            }
            Op::SearchPrefix(p) => {
                query_as("SELECT org_id, id, status FROM jobs WHERE id LIKE $1 || '%'")
                    .bind(p)
                    .fetch_all(tx.conn())
                    .await
            }
        }
        .unwrap();
        tx.commit().await.unwrap();

        for (row_org, ..) in &returned {
            prop_assert_eq!(
                *row_org,
                org,
                "{:?} by org {} returned another org's row",
                op,
                actor
            );
        }
        // The rows returned are exactly the acting org's matching rows in the model.
        let expected: Vec<(String, &str)> = model
            .iter()
            .filter(|((o, id), status)| {
                *o == *actor
                    && match op {
                        Op::ListAll => true,
                        Op::ById(want) | Op::SetStatus(want, _) | Op::Delete(want) => id == want,
                        Op::ByStatus(want) => **status == *want,
                        Op::SearchPrefix(p) => id.starts_with(p.as_str()),
                    }
            })
            .map(|((_, id), status)| (id.clone(), *status))
            .collect();
        let mut got: Vec<String> = returned.iter().map(|(_, id, _)| id.clone()).collect();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|(id, _)| id.clone()).collect();
        want.sort();
        prop_assert_eq!(got, want, "{:?} by org {}", op, actor);

        match op {
            Op::SetStatus(id, s) => {
                if let Some(status) = model.get_mut(&(*actor, id.clone())) {
                    *status = s;
                }
            }
            Op::Delete(id) => {
                model.remove(&(*actor, id.clone()));
            }
            _ => {}
        }
    }

    // Finally, every org holds exactly what the model says: nothing was touched from outside.
    for (index, org) in orgs.iter().enumerate() {
        let mut tx = db.begin(TenantContext::org(*org)).await.unwrap();
        let mut rows: Vec<(String, String)> = query_as("SELECT id, status FROM jobs ORDER BY id")
            .fetch_all(tx.conn())
            .await
            .unwrap();
        rows.sort();
        let want: Vec<(String, String)> = model
            .iter()
            .filter(|((o, _), _)| *o == index)
            .map(|((_, id), s)| (id.clone(), s.to_string()))
            .collect();
        prop_assert_eq!(rows, want, "org {} state", index);
    }
    Ok(())
}

#[test]
fn random_queries_never_cross_tenants() {
    let runtime = crate::harness::runtime();
    let db = runtime.block_on(TestDb::new());
    let tenant = db.tenant();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    // proptest drives synchronously; each case blocks on the async body.
    runner
        .run(&case(), |case| runtime.block_on(run_case(&tenant, &case)))
        .unwrap();
}
