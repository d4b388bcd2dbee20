//! How statements reach Postgres, and the one place they are measured: every connection
//! taken from the pool goes through [`Db::acquire`] (its wait timed), and every statement
//! through [`Exec::run`] (timed under its [`QueryName`], its rows counted).
//!
//! The query functions of `db` take `impl Into<Exec>`, which is what `impl PgExecutor`
//! was before, plus the metrics: `&Db` runs the statement on a connection of its own,
//! `&mut Conn` on a connection already held, `&mut Tx` inside a transaction.

use std::future::Future;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgQueryResult;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};

use crate::db::reachability::{self, Reachability, State};
use crate::db::{DbMetrics, QueryName};

/// The database as handlers reach it: the pool, and the metrics every acquire and
/// statement records.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    metrics: Arc<DbMetrics>,
    reach: Arc<Reachability>,
}

impl Db {
    /// Also starts the reachability sentinel (see `reachability`); call it in a runtime.
    pub fn new(pool: PgPool, metrics: Arc<DbMetrics>) -> Self {
        let options = pool.connect_options();
        // Over a Unix socket there is no TCP port to check, nor a shutdown to hear early.
        let tcp = options.get_socket().is_none();
        let reach = Arc::new(Reachability::new(
            options.get_host(),
            options.get_port(),
            tcp,
            options.get_username(),
            options.get_database().unwrap_or(options.get_username()),
            metrics.unreachable(),
        ));
        if tcp {
            tokio::spawn(reachability::sentinel(
                Arc::downgrade(&reach),
                (*options).clone(),
            ));
        }
        Self {
            pool,
            metrics,
            reach,
        }
    }

    /// The pool itself, for its gauges.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for several statements in a row, with the time waited for it recorded.
    pub async fn acquire(&self) -> sqlx::Result<Conn> {
        match self.reach.state() {
            State::Up => {}
            State::Down => return Err(Reachability::error()),
            // This request tries again; a refused TCP connect says no in a fraction of a
            // millisecond, where the pool would wait.
            State::Retry => {
                if !self.reach.check().await {
                    return Err(Reachability::error());
                }
            }
        }
        let wait = self.metrics.start_acquire();
        let acquire = self.pool.acquire();
        tokio::pin!(acquire);
        let acquired = loop {
            let went_down = self.reach.went_down();
            tokio::select! {
                acquired = &mut acquire => break acquired,
                // Another request's check found the server gone.
                () = went_down => break Err(Reachability::error()),
                () = tokio::time::sleep(reachability::CHECK_AFTER) => {
                    // Slow: a refused connect that the pool keeps retrying, or just a busy
                    // pool? Asked again each time, since the server may go down while we
                    // wait (a check that passed as a shutdown began, say).
                    if self.reach.is_down() || !self.reach.check().await {
                        break Err(Reachability::error());
                    }
                }
            }
        };
        if acquired.is_ok() {
            self.reach.up();
        }
        wait.finish(matches!(acquired, Err(sqlx::Error::PoolTimedOut)));
        Ok(Conn {
            conn: acquired?,
            db: self.clone(),
        })
    }

    /// Whether the database answers (`SELECT 1`), for readiness.
    pub async fn ping(&self) -> sqlx::Result<()> {
        Exec::from(self)
            .run(QueryName::Ping, async |conn| {
                sqlx::query(r#"SELECT 1"#).execute(conn).await
            })
            .await
            .map(drop)
    }
}

/// A connection taken from the pool; back to the pool when dropped.
#[derive(Debug)]
pub struct Conn {
    conn: PoolConnection<Postgres>,
    db: Db,
}

impl Conn {
    /// Starts a transaction on this connection; it rolls back if dropped uncommitted.
    pub async fn begin(&mut self) -> sqlx::Result<Tx<'_>> {
        let db = &self.db;
        let tx = timed(db, QueryName::Begin, Acquire::begin(&mut self.conn)).await?;
        Ok(Tx { tx, db })
    }
}

/// An open transaction.
#[derive(Debug)]
pub struct Tx<'c> {
    tx: Transaction<'c, Postgres>,
    db: &'c Db,
}

impl Tx<'_> {
    pub async fn commit(self) -> sqlx::Result<()> {
        timed(self.db, QueryName::Commit, self.tx.commit()).await
    }
}

/// Where a statement runs, and the database it is measured for.
#[derive(Debug)]
pub enum Exec<'c> {
    /// A statement of its own, on a connection taken from the pool for it.
    Pool(&'c Db),
    /// A connection already held, in a transaction or not.
    Held(&'c mut PgConnection, &'c Db),
}

impl<'c> From<&'c Db> for Exec<'c> {
    fn from(db: &'c Db) -> Self {
        Self::Pool(db)
    }
}

impl<'c> From<&'c mut Conn> for Exec<'c> {
    fn from(conn: &'c mut Conn) -> Self {
        Self::Held(&mut conn.conn, &conn.db)
    }
}

impl<'c> From<&'c mut Tx<'_>> for Exec<'c> {
    fn from(tx: &'c mut Tx<'_>) -> Self {
        Self::Held(&mut tx.tx, tx.db)
    }
}

impl Exec<'_> {
    /// Runs `statement` (one statement, written in the query function that calls this)
    /// on a connection, timing it under `query` and counting the rows it gave.
    pub(crate) async fn run<T: Rows>(
        self,
        query: QueryName,
        statement: impl AsyncFnOnce(&mut PgConnection) -> sqlx::Result<T>,
    ) -> sqlx::Result<T> {
        match self {
            Self::Pool(db) => {
                let mut conn = db.acquire().await?;
                timed(db, query, statement(&mut conn.conn)).await
            }
            Self::Held(conn, db) => timed(db, query, statement(conn)).await,
        }
    }
}

/// Awaits one statement and records its time, rows and outcome. A statement abandoned
/// halfway (the request timed out or its client left) is recorded as it is dropped. A
/// lost connection is reported at once (see `reachability`), so that the requests
/// waiting on the pool need not wait [`reachability::CHECK_AFTER`] to learn of it.
async fn timed<T: Rows>(
    db: &Db,
    query: QueryName,
    statement: impl Future<Output = sqlx::Result<T>>,
) -> sqlx::Result<T> {
    let timer = db.metrics.start_query(query);
    let result = statement.await;
    timer.finish(result.as_ref().ok().map(Rows::rows));
    if let Err(error) = &result
        && reachability::lost_connection(error)
    {
        db.reach.lost(error).await;
    }
    result
}

/// How many rows a statement's result holds: rows returned, or for a statement without
/// `RETURNING`, rows changed (as `pg_stat_statements` counts them).
pub(crate) trait Rows {
    fn rows(&self) -> u64;
}

impl<T> Rows for Vec<T> {
    fn rows(&self) -> u64 {
        u64::try_from(self.len()).unwrap_or(u64::MAX)
    }
}

impl<T> Rows for Option<T> {
    fn rows(&self) -> u64 {
        u64::from(self.is_some())
    }
}

impl Rows for PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl Rows for Transaction<'_, Postgres> {
    fn rows(&self) -> u64 {
        0
    }
}

impl Rows for () {
    fn rows(&self) -> u64 {
        0
    }
}
