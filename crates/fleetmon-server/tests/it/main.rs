//! Integration tests of fleetmon-server, all against a real PostgreSQL (see `harness`).

mod catalog;
mod cli;
mod embedded;
mod fixtures;
mod harness;
mod health;
mod isolation;
mod migrations;
mod pgbouncer;
mod pool_hygiene;
mod property;
mod tenancy;
