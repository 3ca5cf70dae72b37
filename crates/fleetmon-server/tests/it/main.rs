//! Integration tests of fleetmon-server: against a real PostgreSQL (see `harness`) and, for
//! OpenID Connect, a real provider (see `oidc_provider`).

mod back_pressure;
mod browser;
mod catalog;
mod cli;
mod cross_tenant;
mod dashboard;
mod embedded;
mod fixtures;
mod fleet_api;
mod harness;
mod health;
mod ingest_http;
mod isolation;
mod jobs_api;
mod jwt_keys;
mod jwt_verify;
mod metrics_api;
mod migrations;
mod oidc_fixture;
mod oidc_provider;
mod oidc_signin;
mod openapi;
mod pgbouncer;
mod pool_hygiene;
mod projection;
mod prometheus;
mod property;
mod retention;
mod signin;
mod stack_client;
mod stack_signin;
mod stack_standin;
mod stack_webhooks;
mod stream;
mod tenancy;
