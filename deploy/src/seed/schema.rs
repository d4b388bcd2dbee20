//! What a load does to the schema around the data, and the record that makes an
//! interrupted load visible and redoable.
//!
//! Before loading, the indexes, primary keys and foreign keys of the three tables are
//! read from the catalog (so they are exactly what the migrations made), written to the
//! `courser_seed` row together with the spec, and dropped; the row says the load is
//! incomplete until every one of them is rebuilt and the tables analysed. A load that
//! dies half-way leaves that row behind: the next `courser seed` finds it, says so, and
//! loads again from the saved definitions. CHECK and NOT NULL constraints stay during
//! the load: checking them row by row as COPY inserts costs less than another scan.

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};

/// Serialises loads into one database: a second `courser seed` fails at once instead of
/// truncating under the first. An arbitrary constant ("courser" in ASCII).
const LOAD_LOCK: i64 = 0x0063_6f75_7273_6572;

/// Everything to drop before a load and rebuild after it, as SQL statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `CREATE [UNIQUE] INDEX …`, including the unique indexes under primary keys; they
    /// take only SHARE locks, so they can be built side by side.
    pub indexes: Vec<String>,
    /// `ALTER TABLE … ADD CONSTRAINT … PRIMARY KEY USING INDEX …`: instant, once the
    /// index exists.
    pub keys: Vec<String>,
    /// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY …`: each validates with a scan.
    pub foreign_keys: Vec<String>,
    /// Drops everything above, foreign keys first, all `IF EXISTS` so that they can be
    /// run again over a half-rebuilt schema.
    pub drops: Vec<String>,
}

/// What `courser_seed` says of the data in the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No load is recorded.
    None,
    /// The load of `spec` finished.
    Complete { spec: String },
    /// The load of `spec` started and did not finish: the data is partial and some
    /// indexes or constraints are missing.
    Incomplete { spec: String, plan: Plan },
}

/// Creates the bookkeeping table if needed.
async fn ensure_table(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query(
        r#"CREATE TABLE IF NOT EXISTS courser_seed (
               only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
               spec          text NOT NULL,
               started_at    timestamptz NOT NULL DEFAULT now(),
               completed_at  timestamptz,
               indexes       text[] NOT NULL,
               keys          text[] NOT NULL,
               foreign_keys  text[] NOT NULL,
               drops         text[] NOT NULL
           )"#,
    )
    .execute(conn)
    .await
    .context("cannot create the courser_seed table")?;
    Ok(())
}

/// The recorded state of the last load.
pub async fn state(conn: &mut PgConnection) -> anyhow::Result<State> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('courser_seed') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(State::None);
    }
    type Row = (
        String,
        bool,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        r#"SELECT spec, completed_at IS NOT NULL, indexes, keys, foreign_keys, drops
           FROM courser_seed"#,
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => State::None,
        Some((spec, true, ..)) => State::Complete { spec },
        Some((spec, false, indexes, keys, foreign_keys, drops)) => State::Incomplete {
            spec,
            plan: Plan {
                indexes,
                keys,
                foreign_keys,
                drops,
            },
        },
    })
}

/// Whether `ratings`, `reviewers` and `reviews` are all empty.
pub async fn is_empty(conn: &mut PgConnection) -> anyhow::Result<bool> {
    let any: bool = sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM ratings)
               OR EXISTS (SELECT 1 FROM reviewers)
               OR EXISTS (SELECT 1 FROM reviews)"#,
    )
    .fetch_one(&mut *conn)
    .await
    .context(
        "cannot read the tables; is the database migrated (`courser up` or `courser-api migrate`)?",
    )?;
    Ok(!any)
}

/// Takes the load lock for the life of `conn`, or fails if another load holds it.
pub async fn lock(conn: &mut PgConnection) -> anyhow::Result<()> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOAD_LOCK)
        .fetch_one(conn)
        .await?;
    if !locked {
        bail!("another `courser seed` is loading this database; wait for it to finish");
    }
    Ok(())
}

/// Gets the tables ready for `spec`: refuses data it did not load unless `reset`,
/// records the load as incomplete with what to rebuild, drops indexes and keys, and
/// empties the tables. One transaction: if it fails, nothing changed.
pub async fn prepare(conn: &mut PgConnection, spec: &str, reset: bool) -> anyhow::Result<Plan> {
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT t FROM unnest(ARRAY['ratings', 'reviewers', 'reviews']) t WHERE to_regclass(t) IS NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    if !missing.is_empty() {
        bail!(
            "the database has no {} table: migrate it first (`courser-api migrate` with COURSER_DATABASE_URL set to it; `courser up` does it for the local stack)",
            missing.join(", ")
        );
    }
    ensure_table(conn).await?;
    let mut tx = conn.begin().await?;
    let plan = match state(&mut tx).await? {
        State::Incomplete {
            spec: earlier,
            plan,
        } => {
            println!("an earlier load ({earlier}) did not finish: loading again");
            plan
        }
        State::None | State::Complete { .. } => {
            if !reset && !is_empty(&mut tx).await? {
                bail!(
                    "the database already has data (ratings, reviewers or reviews are not empty); pass --reset to empty them first"
                );
            }
            read_plan(&mut tx).await?
        }
    };
    sqlx::query(
        r#"INSERT INTO courser_seed (spec, indexes, keys, foreign_keys, drops)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (only_row) DO UPDATE
           SET spec = excluded.spec, started_at = now(), completed_at = NULL,
               indexes = excluded.indexes, keys = excluded.keys,
               foreign_keys = excluded.foreign_keys, drops = excluded.drops"#,
    )
    .bind(spec)
    .bind(&plan.indexes)
    .bind(&plan.keys)
    .bind(&plan.foreign_keys)
    .bind(&plan.drops)
    .execute(&mut *tx)
    .await?;
    for drop in &plan.drops {
        execute(&mut tx, drop).await?;
    }
    sqlx::query("TRUNCATE reviews, reviewers, ratings")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(plan)
}

/// Runs one of the plan's statements. They are not built from input: the catalog wrote
/// them (with names quoted by `format`), or the `courser_seed` row saved what it wrote.
pub async fn execute(conn: &mut PgConnection, statement: &str) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(conn)
        .await
        .with_context(|| format!("{statement} failed"))?;
    Ok(())
}

/// Marks the load finished: only now does the database look complete.
pub async fn complete(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("UPDATE courser_seed SET completed_at = now()")
        .execute(conn)
        .await?;
    Ok(())
}

/// The indexes, primary and unique keys, and foreign keys of the three tables, from the
/// catalog, as statements that recreate and drop them.
async fn read_plan(conn: &mut PgConnection) -> anyhow::Result<Plan> {
    // Plain indexes (those no constraint owns), the indexes under primary and unique
    // keys, the keys, and the foreign keys; `format` quotes names as SQL needs. Those of
    // `reviews` first: its indexes take longest, and are best started first.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        r#"SELECT kind, create_sql, drop_sql FROM (
           WITH tables AS (
               SELECT oid FROM pg_class
               WHERE oid IN ('ratings'::regclass, 'reviewers'::regclass, 'reviews'::regclass)
           )
           SELECT 'index' AS kind, pg_get_indexdef(i.indexrelid) AS create_sql,
                  format('DROP INDEX IF EXISTS %s', i.indexrelid::regclass) AS drop_sql,
                  i.indrelid AS tbl
           FROM pg_index i
           WHERE i.indrelid IN (SELECT oid FROM tables)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
           UNION ALL
           SELECT 'key', pg_get_indexdef(c.conindid),
                  format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', c.conrelid::regclass, c.conname),
                  c.conrelid
           FROM pg_constraint c
           WHERE c.conrelid IN (SELECT oid FROM tables) AND c.contype IN ('p', 'u')
           UNION ALL
           SELECT 'attach', format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I',
                                   c.conrelid::regclass, c.conname,
                                   CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
                                   c.conindid::regclass::text),
                  '', c.conrelid
           FROM pg_constraint c
           WHERE c.conrelid IN (SELECT oid FROM tables) AND c.contype IN ('p', 'u')
           UNION ALL
           SELECT 'foreign', format('ALTER TABLE %s ADD CONSTRAINT %I %s',
                                    c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)),
                  format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', c.conrelid::regclass, c.conname),
                  c.conrelid
           FROM pg_constraint c
           WHERE c.conrelid IN (SELECT oid FROM tables) AND c.contype = 'f'
           ) objects
           ORDER BY tbl <> 'reviews'::regclass, create_sql"#,
    )
    .fetch_all(conn)
    .await
    .context("cannot read the indexes and constraints of the tables")?;

    let mut plan = Plan::default();
    let (mut drop_indexes, mut drop_keys, mut drop_foreign) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, create, drop) in rows {
        match kind.as_str() {
            "index" => {
                plan.indexes.push(create);
                drop_indexes.push(drop);
            }
            "key" => {
                plan.indexes.push(create);
                drop_keys.push(drop);
            }
            "attach" => plan.keys.push(create),
            _ => {
                plan.foreign_keys.push(create);
                drop_foreign.push(drop);
            }
        }
    }
    // Foreign keys before the keys they reference, keys before their indexes.
    plan.drops = [drop_foreign, drop_keys, drop_indexes].concat();
    Ok(plan)
}
