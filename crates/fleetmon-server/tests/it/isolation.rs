//! Tenant isolation, enforced by the database, for every tenant table.

use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::TenantContext;
use uuid::Uuid;

use crate::fixtures;
use crate::harness::TestDb;
use crate::tenancy::assert_every_table_isolated;

#[tokio::test]
async fn every_tenant_table_is_isolated_even_for_a_bypassrls_owner() {
    let db = TestDb::new().await;
    // The harness connects as a BYPASSRLS owner: without the role switch it sees everything.
    let bypass: bool =
        query_scalar("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        bypass,
        "the suite must run as a BYPASSRLS owner to prove the role switch matters"
    );
    assert_every_table_isolated(&db.tenant(), &db.pool).await;
}

#[tokio::test]
async fn a_user_without_an_org_sees_only_their_own_memberships() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let (org_a, org_b, org_c) = (
        fixtures::create_org(&tenant, "a").await,
        fixtures::create_org(&tenant, "b").await,
        fixtures::create_org(&tenant, "c").await,
    );
    let mut tx = tenant.begin(TenantContext::none()).await.unwrap();
    let user: Uuid =
        query_scalar("INSERT INTO users (issuer, subject) VALUES ('it', 'u') RETURNING id")
            .fetch_one(tx.conn())
            .await
            .unwrap();
    let other: Uuid =
        query_scalar("INSERT INTO users (issuer, subject) VALUES ('it', 'o') RETURNING id")
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    for (org, member) in [(org_a, user), (org_b, user), (org_c, other), (org_a, other)] {
        let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
        query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'viewer')")
            .bind(org)
            .bind(member)
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    let orgs_of = |context: TenantContext| {
        let tenant = tenant.clone();
        async move {
            let mut tx = tenant.begin(context).await.unwrap();
            let mut orgs: Vec<Uuid> = query_scalar("SELECT org_id FROM memberships")
                .fetch_all(tx.conn())
                .await
                .unwrap();
            orgs.sort();
            orgs
        }
    };
    let mut expected = vec![org_a, org_b];
    expected.sort();
    assert_eq!(
        orgs_of(TenantContext::none().with_user(user)).await,
        expected
    );
    // Inside an org, the user sees that org's members only — not their other memberships.
    assert_eq!(
        orgs_of(TenantContext::org(org_b).with_user(user)).await,
        vec![org_b]
    );
    assert_eq!(orgs_of(TenantContext::none()).await, Vec::<Uuid>::new());

    // A user with no org selected cannot add memberships anywhere.
    let mut tx = tenant
        .begin(TenantContext::none().with_user(user))
        .await
        .unwrap();
    let error = query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org_c)
        .bind(user)
        .execute(tx.conn())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("row-level security"), "{error}");
}
