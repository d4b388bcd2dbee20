//! Loading a generated data set the way Postgres loads fastest: binary COPY into tables
//! without indexes or keys, generation running beside the COPY on its own threads, then
//! the indexes built side by side, the keys attached and validated, and the tables
//! analysed.
//!
//! One generator makes the courses in id order on a thread and sends each megabyte of
//! their reviews to the `COPY reviews` stream, and their rating rows to the `COPY
//! ratings` stream beside it. Each reviewer's review count is known once every course is
//! generated, so the reviewers follow, generated on a thread per core. Foreign keys are
//! added after the load, so the order of the tables does not matter.
//!
//! Each table has one COPY stream, which empties the table in its own transaction
//! first: Postgres then writes no WAL for the rows (with `wal_level = minimal`) and
//! stores them frozen and all-visible (`FREEZE`), so neither the index builds nor later
//! vacuums rewrite the pages. Several streams into one table would have to share it and
//! write WAL; on Postgres 15 two were no faster than one (BENCHMARKS.md).

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::binary::{self, Rows};
use super::generate::{self, Generator, Review};
use super::progress::{self, Progress};
use super::schema::{self, Plan};
use super::{Spec, Summary};
use crate::postgres;

/// Rows go to the server in chunks of about this many bytes.
const CHUNK: usize = 1 << 20;
/// Chunks a generator may run ahead of its COPY.
const QUEUE: usize = 4;

/// A table to COPY into, with its columns in the order the generators write them.
#[derive(Debug, Clone, Copy)]
struct Target {
    table: &'static str,
    columns: &'static str,
}

const RATINGS: Target = Target {
    table: "ratings",
    columns: "course_id, review_count, half_stars_sum, distribution",
};
const REVIEWERS: Target = Target {
    table: "reviewers",
    columns: "id, name, picture, courses_taken, review_count",
};
const REVIEWS: Target = Target {
    table: "reviews",
    columns: "id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at",
};

/// How to load.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reviewer generator threads, and connections building indexes side by side; the
    /// number of cores is a good choice.
    pub threads: usize,
    /// Empty tables that hold data instead of refusing to load.
    pub reset: bool,
    /// `maintenance_work_mem` of each index build: 2 GB sorts the bench data set's
    /// indexes in memory.
    pub index_memory: String,
}

impl Options {
    /// A thread per core, no reset, 2 GB per index build.
    pub fn new(reset: bool) -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            reset,
            index_memory: "2GB".to_owned(),
        }
    }
}

/// How long each step of a load took.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Checking the database, saving and dropping the indexes and keys, emptying it.
    pub prepare: Duration,
    /// Generating and COPYing the rows.
    pub copy: Duration,
    /// Building the indexes and attaching the primary keys.
    pub indexes: Duration,
    /// Moving the sequences and ANALYZE.
    pub analyze: Duration,
    /// Adding (and so validating) the foreign keys.
    pub foreign_keys: Duration,
}

/// Generates `spec` and loads it into the database at `url`: into empty tables, or with
/// `options.reset` into tables emptied first, or over an earlier load that did not
/// finish. Until it returns Ok, the database is recorded as incompletely loaded.
pub async fn load(url: &str, spec: &Spec, options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let threads = options.threads.max(1);
    let mut conn = postgres::connect(url).await?;
    schema::lock(&mut conn).await?;
    let plan = schema::prepare(&mut conn, &spec.to_string(), options.reset).await?;
    let prepared = started.elapsed();
    let step = Instant::now();

    let progress = Progress::new(&[
        ("ratings", spec.courses),
        ("reviews", spec.reviews),
        ("reviewers", spec.reviewers),
    ]);
    let display = progress::show(Arc::clone(&progress));
    let copied = copy_all(url, spec, threads, &progress).await;
    display.finish().await;
    copied?;
    let mut timings = Timings {
        prepare: prepared,
        copy: step.elapsed(),
        ..Timings::default()
    };
    let (_, rows_per_second) = progress.rows("reviews");
    println!(
        "rows loaded in {:.1} s (reviews at {} rows/s); building indexes and keys",
        timings.copy.as_secs_f64(),
        progress::thousands(rows_per_second as u64)
    );

    let step = Instant::now();
    build_indexes(url, &plan, threads, &options.index_memory).await?;
    timings.indexes = step.elapsed();
    let step = Instant::now();
    analyze(&mut conn).await?;
    timings.analyze = step.elapsed();
    let step = Instant::now();
    add_foreign_keys(&mut conn, &plan, &options.index_memory).await?;
    timings.foreign_keys = step.elapsed();
    schema::complete(&mut conn).await?;

    Ok(Summary {
        courses: spec.courses,
        reviewers: spec.reviewers,
        reviews: spec.reviews,
        elapsed: started.elapsed(),
        timings,
    })
}

/// Generates and COPYs every row: reviews and ratings first, then the reviewers.
///
/// One generator makes every course and its reviews, in id order: it outpaces the COPY
/// into `reviews` (a single Postgres backend is the bottleneck of the load), and rows
/// stored in id order, which is course and then date order, give the primary key and
/// `reviews_by_recent` presorted input to build from.
async fn copy_all(
    url: &str,
    spec: &Spec,
    threads: usize,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let mut copies = JoinSet::new();
    let ratings_tx = open_stream(&mut copies, url, RATINGS, 1);
    let reviews_tx = open_stream(&mut copies, url, REVIEWS, 1);
    let (generator_spec, generator_progress) = (spec.clone(), Arc::clone(progress));
    let generator = tokio::task::spawn_blocking(move || {
        generate_courses(
            &generator_spec,
            &reviews_tx,
            &ratings_tx,
            &generator_progress,
        )
    });

    // A COPY that fails ends its stream: the generator then stops on a closed channel,
    // so the COPY's error is the one to report.
    let generated = generator
        .await
        .map_err(|err| anyhow!("generator failed: {err}"))?;
    while let Some(copied) = copies.join_next().await {
        copied??;
    }
    let counts = Arc::new(generated?);

    let tx = open_stream(&mut copies, url, REVIEWERS, threads);
    for ids in split_evenly(spec.reviewers, threads) {
        let (spec, counts, progress, tx) = (
            spec.clone(),
            Arc::clone(&counts),
            Arc::clone(progress),
            tx.clone(),
        );
        copies.spawn(async move {
            tokio::task::spawn_blocking(move || {
                generate_reviewers(&spec, ids, &counts, &tx, &progress)
            })
            .await?
        });
    }
    drop(tx);
    while let Some(copied) = copies.join_next().await {
        copied??;
    }
    Ok(())
}

/// Starts the COPY stream into `target` on `copies`; returns its sender, with room for
/// `writers` generators to run a few chunks ahead.
fn open_stream(
    copies: &mut JoinSet<anyhow::Result<()>>,
    url: &str,
    target: Target,
    writers: usize,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel(QUEUE * writers);
    copies.spawn(copy_in(url.to_owned(), target, rx));
    tx
}

/// One COPY stream: the binary header, every chunk received, the trailer. It empties
/// the table in the same transaction, so that Postgres may skip the WAL and freeze the
/// rows.
async fn copy_in(
    url: String,
    target: Target,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let Target { table, columns } = target;
    let mut conn = connect(&url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {table}")))
        .execute(&mut *tx)
        .await?;
    // Built from the constant targets above only.
    let statement = format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary, FREEZE)");
    let mut copy = tx.copy_in_raw(&statement).await?;
    copy.send(binary::header().as_slice()).await?;
    while let Some(chunk) = chunks.recv().await {
        copy.send(chunk).await?;
    }
    copy.send(binary::trailer().as_slice()).await?;
    copy.finish()
        .await
        .with_context(|| format!("{statement} failed"))?;
    tx.commit().await?;
    Ok(())
}

/// A connection for loading: commits need not wait for the WAL to reach the disk (a
/// crash mid-load leaves the load recorded as unfinished, to be redone).
async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let mut conn = postgres::connect(url).await?;
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    // If `courser seed` dies, its server sessions stop too rather than finish an index
    // build nobody waits for.
    sqlx::query("SET client_connection_check_interval = '1s'")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Generates every course into rows for the two channels; returns each reviewer's count
/// of the reviews.
fn generate_courses(
    spec: &Spec,
    reviews_tx: &mpsc::Sender<Vec<u8>>,
    ratings_tx: &mpsc::Sender<Vec<u8>>,
    progress: &Progress,
) -> anyhow::Result<Vec<i32>> {
    let mut generator = Generator::new(spec);
    let mut reviews: Vec<Review> = Vec::new();
    let (mut review_rows, mut rating_rows) = (Rows::new(CHUNK + 8192), Rows::new(CHUNK + 8192));
    let (mut pending_reviews, mut pending_ratings) = (0, 0);
    for course in 1..=spec.courses {
        let rating = generator.course(course, &mut reviews);
        rating_rows
            .row(4)
            .int8(rating.course_id)
            .int4(rating.review_count)
            .int8(rating.half_stars_sum)
            .int4_array(&rating.distribution);
        pending_ratings += 1;
        for review in &reviews {
            review_rows
                .row(9)
                .int8(review.id)
                .int8(review.course_id)
                .int8(review.reviewer_id)
                .int2(review.half_stars)
                .text(&review.comment)
                .int4(review.helpful)
                .bool(review.reported)
                .timestamptz(review.created_at)
                .timestamptz(review.updated_at);
            pending_reviews += 1;
            if review_rows.len() >= CHUNK {
                send(reviews_tx, &mut review_rows)?;
                progress.add("reviews", std::mem::take(&mut pending_reviews));
            }
        }
        if rating_rows.len() >= CHUNK {
            send(ratings_tx, &mut rating_rows)?;
            progress.add("ratings", std::mem::take(&mut pending_ratings));
        }
    }
    send(reviews_tx, &mut review_rows)?;
    progress.add("reviews", pending_reviews);
    send(ratings_tx, &mut rating_rows)?;
    progress.add("ratings", pending_ratings);
    Ok(generator.into_reviewer_counts())
}

/// Generates reviewers `ids` with their review counts into rows for `tx`.
fn generate_reviewers(
    spec: &Spec,
    ids: RangeInclusive<u64>,
    counts: &[i32],
    tx: &mpsc::Sender<Vec<u8>>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut rows = Rows::new(CHUNK + 8192);
    let mut pending = 0;
    for id in ids {
        let count = counts
            .get(usize::try_from(id - 1).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(0);
        let reviewer = generate::reviewer(spec, id, count);
        rows.row(5)
            .int8(reviewer.id)
            .text(&reviewer.name)
            .text(&reviewer.picture)
            .int4(reviewer.courses_taken)
            .int4(reviewer.review_count);
        pending += 1;
        if rows.len() >= CHUNK {
            send(tx, &mut rows)?;
            progress.add("reviewers", std::mem::take(&mut pending));
        }
    }
    send(tx, &mut rows)?;
    progress.add("reviewers", pending);
    Ok(())
}

/// Sends the rows in `rows` (if any) and empties it; fails if the COPY has stopped.
fn send(tx: &mpsc::Sender<Vec<u8>>, rows: &mut Rows) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    tx.blocking_send(rows.take())
        .map_err(|_| anyhow!("a COPY stream stopped"))
}

/// `parts` consecutive ranges of about the same size covering `1..=total`.
fn split_evenly(total: u64, parts: usize) -> Vec<RangeInclusive<u64>> {
    let parts = (parts as u64).clamp(1, total.max(1));
    (0..parts)
        .map(|k| (total * k / parts + 1)..=(total * (k + 1) / parts))
        .filter(|range| !range.is_empty())
        .collect()
}

/// Builds the indexes on `connections` connections at once (largest table first), then
/// attaches the primary keys to theirs.
async fn build_indexes(
    url: &str,
    plan: &Plan,
    connections: usize,
    memory: &str,
) -> anyhow::Result<()> {
    let queue = Arc::new(Mutex::new(plan.indexes.clone().into_iter()));
    let mut builders = JoinSet::new();
    for _ in 0..connections.min(plan.indexes.len()) {
        let (url, queue, memory) = (url.to_owned(), Arc::clone(&queue), memory.to_owned());
        builders.spawn(async move {
            let mut conn = connect(&url).await?;
            set_index_memory(&mut conn, &memory).await?;
            // Parallelism comes from building several indexes at once, which keeps every
            // core busy without the coordination of parallel workers. Each build reads
            // the table from its first row: a scan synchronised with another build's
            // would start midway, and the indexes whose order the rows are stored in
            // would no longer get presorted input.
            for setting in [
                "SET max_parallel_maintenance_workers = 0",
                "SET synchronize_seqscans = off",
            ] {
                sqlx::query(setting).execute(&mut conn).await?;
            }
            loop {
                let Some(statement) = queue.lock().await.next() else {
                    return anyhow::Ok(());
                };
                let built = Instant::now();
                schema::execute(&mut conn, &statement).await?;
                println!("  {:>5.1} s  {statement}", built.elapsed().as_secs_f64());
            }
        });
    }
    while let Some(built) = builders.join_next().await {
        built??;
    }
    let mut conn = connect(url).await?;
    for statement in &plan.keys {
        schema::execute(&mut conn, statement).await?;
    }
    Ok(())
}

/// Adds the foreign keys, which validate every reference with a join each and cannot
/// run beside each other (each locks `reviews` against the other). Postgres runs that
/// join with `maintenance_work_mem` as its memory, and plans it with the statistics
/// that `analyze` gathered first. Both sides of each join can be read in key order
/// from the indexes just built, so a merge join needs no hash table of the referenced
/// table: 5.3 s for the two at scale 0.1, against 7.5 s hashed.
async fn add_foreign_keys(
    conn: &mut PgConnection,
    plan: &Plan,
    memory: &str,
) -> anyhow::Result<()> {
    set_index_memory(conn, memory).await?;
    sqlx::query("SET enable_hashjoin = off")
        .execute(&mut *conn)
        .await?;
    for statement in &plan.foreign_keys {
        let added = Instant::now();
        schema::execute(conn, statement).await?;
        println!("  {:>5.1} s  {statement}", added.elapsed().as_secs_f64());
    }
    Ok(())
}

async fn set_index_memory(conn: &mut PgConnection, memory: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT set_config('maintenance_work_mem', $1, false)")
        .bind(memory)
        .execute(conn)
        .await
        .with_context(|| format!("bad index memory size {memory:?}"))?;
    Ok(())
}

/// Moves the identity sequences past the loaded ids (rows came with their ids, so the
/// API's first insert would collide) and gathers statistics for the planner.
async fn analyze(conn: &mut PgConnection) -> anyhow::Result<()> {
    for sql in [
        r#"SELECT setval(pg_get_serial_sequence('reviewers', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM reviewers), false)"#,
        r#"SELECT setval(pg_get_serial_sequence('reviews', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM reviews), false)"#,
        "ANALYZE ratings, reviewers, reviews",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_splits_cover_every_id_once() {
        assert_eq!(split_evenly(10, 3), vec![1..=3, 4..=6, 7..=10]);
        assert_eq!(split_evenly(2, 4), vec![1..=1, 2..=2]);
        assert_eq!(split_evenly(5, 1), vec![1..=5]);
    }
}
