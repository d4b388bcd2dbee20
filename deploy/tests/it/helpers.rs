//! A fresh, migrated database per test, dropped at the end.

use std::path::Path;

use anyhow::Context as _;
use courser::postgres;
use rand::Rng as _;
use sqlx::PgConnection;

/// The local stack's maintenance database, unless the environment names another.
fn admin_url() -> String {
    std::env::var("COURSER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:15432/postgres".to_owned())
}

/// A database made for one test (`create`: with the api's migrations applied).
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: PgConnection,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let db = Self::create_unmigrated().await?;
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/migrations");
        let migrator = sqlx::migrate::Migrator::new(migrations).await?;
        migrator.run(&mut db.connect().await?).await?;
        Ok(db)
    }

    /// A database without any table.
    pub async fn create_unmigrated() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let mut admin = postgres::connect(&admin_url)
            .await
            .context("no test database server: run `courser up --only-services` and `eval \"$(courser env)\"`")?;
        let name = format!("courser_seed_test_{:016x}", rand::rng().random::<u64>());
        postgres::create_database(&mut admin, &name).await?;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("COURSER_TEST_DATABASE_URL has no database name: {admin_url}"),
        };
        Ok(Self { name, url, admin })
    }

    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        postgres::connect(&self.url).await
    }

    /// Drops the database (a failed test leaves it behind for inspection).
    pub async fn drop(mut self) -> anyhow::Result<()> {
        postgres::drop_database(&mut self.admin, &self.name).await
    }
}
