//! fleetmon: monitoring for distributed job/worker fleets, kept in Postgres.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod ingest;
pub mod instruments;
pub mod live;
pub mod orgs;
pub mod query;
pub mod retention;
pub mod simulate;
pub mod telemetry;
pub mod web;
