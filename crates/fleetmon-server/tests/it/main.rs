//! Integration tests of fleetmon-server, all against a real PostgreSQL (see `harness`).

mod catalog;
mod cli;
mod embedded;
mod fixtures;
mod harness;
mod health;
mod ingest_http;
mod isolation;
mod jwt_keys;
mod jwt_verify;
mod migrations;
mod pgbouncer;
mod pool_hygiene;
mod projection;
mod property;
mod tenancy;
