//! The only way fleetmon builds SQL statements.
//!
//! Every statement is sent as an *unnamed* prepared statement, so nothing outlives its
//! transaction on the server connection. That is what keeps fleetmon correct behind
//! transaction-mode poolers (PgBouncer, Neon's `-pooler` endpoints), which hand each transaction
//! to whichever server connection is free. `clippy.toml` forbids calling sqlx's constructors
//! directly anywhere else.
#![allow(clippy::disallowed_methods)]

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{FromRow, Postgres};

pub fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(false)
}

pub fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(false)
}

pub fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(false)
}
