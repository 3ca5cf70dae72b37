//! What the database catalog must say about the runtime role, tables, policies and views.

use fleetmon_server::db::sql::{query_as, query_scalar};
use fleetmon_server::db::APP_ROLE;

use crate::fixtures::TENANT_TABLES;
use crate::harness::TestDb;

#[tokio::test]
async fn the_runtime_role_has_no_power_and_owns_nothing() {
    let db = TestDb::new().await;
    let (superuser, bypass, login): (bool, bool, bool) =
        query_as("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass && !login,
        "{APP_ROLE} must be NOSUPERUSER NOBYPASSRLS NOLOGIN"
    );

    let owned: i64 = query_scalar(
        "WITH app AS (SELECT oid FROM pg_roles WHERE rolname = $1)
         SELECT (SELECT count(*) FROM pg_class WHERE relowner IN (SELECT oid FROM app))
              + (SELECT count(*) FROM pg_proc WHERE proowner IN (SELECT oid FROM app))
              + (SELECT count(*) FROM pg_namespace WHERE nspowner IN (SELECT oid FROM app))
              + (SELECT count(*) FROM pg_type WHERE typowner IN (SELECT oid FROM app))",
    )
    .bind(APP_ROLE)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(owned, 0, "{APP_ROLE} owns objects");
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_and_complete_policies() {
    let db = TestDb::new().await;
    // Every table with an org_id column, partitions included.
    let tables: Vec<(String, bool, bool, bool, i64, i64)> = query_as(
        "SELECT c.relname::text, c.relispartition, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
                  AND (p.polqual IS NULL OR p.polwithcheck IS NULL))
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();

    let mut parents: Vec<&str> = Vec::new();
    let mut partitions = 0;
    for (name, is_partition, enabled, forced, policies, incomplete) in &tables {
        assert!(
            *enabled && *forced,
            "{name}: RLS must be enabled and forced"
        );
        assert!(*policies >= 1, "{name}: no policy");
        assert_eq!(*incomplete, 0, "{name}: a policy lacks USING or WITH CHECK");
        if *is_partition {
            partitions += 1;
        } else {
            parents.push(name);
        }
    }
    assert!(
        partitions >= 3 * 10,
        "the history tables have partitions around today"
    );

    let mut with_fixtures: Vec<&str> = TENANT_TABLES.iter().map(|(t, _)| *t).collect();
    with_fixtures.sort_unstable();
    assert_eq!(
        parents, with_fixtures,
        "every tenant table is covered by the isolation suite"
    );
}

#[tokio::test]
async fn partitions_are_reachable_only_through_their_parent() {
    let db = TestDb::new().await;
    let granted: Vec<String> = query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relispartition
           AND has_table_privilege($1, c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE')",
    )
    .bind(APP_ROLE)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        granted.is_empty(),
        "{APP_ROLE} has privileges on partitions {granted:?}"
    );

    let truncatable: Vec<String> = query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND has_table_privilege($1, c.oid, 'TRUNCATE,REFERENCES,TRIGGER')",
    )
    .bind(APP_ROLE)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        truncatable.is_empty(),
        "{APP_ROLE} can TRUNCATE/REFERENCES/TRIGGER {truncatable:?}"
    );
}

#[tokio::test]
async fn views_use_security_invoker_and_definer_functions_are_locked_down() {
    let db = TestDb::new().await;
    let definer_views: Vec<String> = query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'v'
           AND NOT coalesce(c.reloptions && ARRAY['security_invoker=true', 'security_invoker=on',
                                                  'security_invoker=1'], false)",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        definer_views.is_empty(),
        "views without security_invoker: {definer_views:?}"
    );

    let unsafe_definers: Vec<String> = query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.prosecdef
           AND (NOT coalesce(array_to_string(p.proconfig, ',') LIKE '%search_path=%', false)
                OR has_function_privilege('public', p.oid, 'EXECUTE'))",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(unsafe_definers.is_empty(), "SECURITY DEFINER functions without a pinned search_path or open to PUBLIC: {unsafe_definers:?}");

    // The maintenance functions are the owner's alone.
    for function in [
        "fleetmon_ensure_partitions(date, date)",
        "fleetmon_isolate_tenant_table(regclass)",
    ] {
        let allowed: bool = query_scalar("SELECT has_function_privilege($1, $2, 'EXECUTE')")
            .bind(APP_ROLE)
            .bind(function)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(!allowed, "{APP_ROLE} may execute {function}");
    }
}
