//! An embedded PostgreSQL for a benchmark, in a temporary directory of its own: the fleetmon
//! database, migrated, with partitions around today. (Benchmarks include this file by path.)

use std::path::PathBuf;

use fleetmon_server::db::{migrate, partitions, EmbeddedPostgres, SystemDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub struct BenchPostgres {
    pub server: EmbeddedPostgres,
    /// Superuser connections; request code still runs as `fleetmon_app` through `TenantDb`.
    pub pool: PgPool,
    dir: PathBuf,
}

impl BenchPostgres {
    pub async fn start(pool_size: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("fleetmon-bench-{}", std::process::id()));
        // Starting blocks until the server accepts connections: keep it off the runtime.
        let server = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || EmbeddedPostgres::start(&dir).expect("embedded PostgreSQL")
        })
        .await
        .unwrap();
        server.create_database_if_missing().await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .connect_with(server.connect_options())
            .await
            .unwrap();
        let system = SystemDb::new(pool.clone());
        migrate::run(&system).await.unwrap();
        partitions::ensure_around_today(&system).await.unwrap();
        Self { server, pool, dir }
    }

    pub async fn stop(self) {
        self.pool.close().await;
        self.server.stop().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
