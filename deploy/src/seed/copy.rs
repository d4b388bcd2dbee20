//! Loading a generated data set: COPY in text format, in one transaction, in the order
//! the foreign keys need (ratings, reviewers, reviews), then moving the identity
//! sequences past the loaded ids.
//!
//! Reviews are generated before the reviewers (a reviewer's review count is known only
//! once every review is), but must be loaded after them; they wait in a temporary file,
//! while the course rows stream straight into their COPY.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};

use super::generate::{Generator, Rating, Review, Reviewer};
use super::{Spec, Summary};

/// Rows are sent to the server in chunks of about this many bytes.
const CHUNK: usize = 1 << 20;

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

/// Generates `spec` and loads it into an empty database, or, with `reset`, into one
/// emptied first. All or nothing: one transaction.
pub async fn load(conn: &mut PgConnection, spec: &Spec, reset: bool) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    if !is_empty(&mut tx).await? {
        if !reset {
            bail!(
                "the database already has data (ratings, reviewers or reviews are not empty); pass --reset to empty them first"
            );
        }
        sqlx::query("TRUNCATE reviews, reviewers, ratings RESTART IDENTITY")
            .execute(&mut *tx)
            .await?;
    }

    let spool = Spool::create()?;
    let mut generator = Generator::new(spec);
    {
        let mut reviews_out = BufWriter::with_capacity(CHUNK, spool.file()?);
        let mut copy = tx
            .copy_in_raw(
                "COPY ratings (course_id, review_count, half_stars_sum, distribution) FROM STDIN",
            )
            .await?;
        let (mut rows, mut reviews, mut line) = (
            String::with_capacity(CHUNK + 4096),
            Vec::new(),
            String::new(),
        );
        for course in 1..=spec.courses {
            let rating = generator.course(course, &mut reviews);
            rating_row(&mut rows, &rating);
            for review in &reviews {
                line.clear();
                review_row(&mut line, review);
                reviews_out
                    .write_all(line.as_bytes())
                    .context("cannot write the review spool")?;
            }
            if rows.len() >= CHUNK {
                copy.send(rows.as_bytes()).await?;
                rows.clear();
            }
        }
        copy.send(rows.as_bytes()).await?;
        copy.finish().await.context("COPY ratings failed")?;
        reviews_out
            .flush()
            .context("cannot write the review spool")?;
    }

    let mut copy = tx
        .copy_in_raw("COPY reviewers (id, name, picture, courses_taken, review_count) FROM STDIN")
        .await?;
    let mut rows = String::with_capacity(CHUNK + 4096);
    for reviewer in generator.reviewers() {
        reviewer_row(&mut rows, &reviewer);
        if rows.len() >= CHUNK {
            copy.send(rows.as_bytes()).await?;
            rows.clear();
        }
    }
    copy.send(rows.as_bytes()).await?;
    copy.finish().await.context("COPY reviewers failed")?;

    let mut copy = tx
        .copy_in_raw(
            r#"COPY reviews (id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at)
               FROM STDIN"#,
        )
        .await?;
    copy.read_from(tokio::fs::File::open(&spool.path).await?)
        .await?;
    copy.finish().await.context("COPY reviews failed")?;

    // Rows came with their ids, so the identity sequences have not moved: set them past
    // the largest id, or the API's first insert would collide.
    for sql in [
        r#"SELECT setval(pg_get_serial_sequence('reviewers', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM reviewers), false)"#,
        r#"SELECT setval(pg_get_serial_sequence('reviews', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM reviews), false)"#,
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // Fresh statistics, so the first queries get good plans.
    sqlx::query("ANALYZE ratings, reviewers, reviews")
        .execute(&mut *conn)
        .await?;

    Ok(Summary {
        courses: spec.courses,
        reviewers: spec.reviewers,
        reviews: spec.reviews,
        elapsed: started.elapsed(),
    })
}

// Rows in COPY's text format: tab-separated, `\N` for null, backslash escapes.

fn rating_row(out: &mut String, rating: &Rating) {
    let d = &rating.distribution;
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t{{{},{},{},{},{},{},{},{},{}}}",
        rating.course_id,
        rating.review_count,
        rating.half_stars_sum,
        d[0],
        d[1],
        d[2],
        d[3],
        d[4],
        d[5],
        d[6],
        d[7],
        d[8]
    );
}

fn reviewer_row(out: &mut String, reviewer: &Reviewer) {
    let _ = write!(out, "{}\t", reviewer.id);
    escape(out, &reviewer.name);
    out.push('\t');
    escape(out, &reviewer.picture);
    let _ = writeln!(
        out,
        "\t{}\t{}",
        reviewer.courses_taken, reviewer.review_count
    );
}

fn review_row(out: &mut String, review: &Review) {
    let _ = write!(
        out,
        "{}\t{}\t{}\t{}\t",
        review.id, review.course_id, review.reviewer_id, review.half_stars
    );
    escape(out, &review.comment);
    let reported = if review.reported { 't' } else { 'f' };
    let _ = write!(out, "\t{}\t{reported}\t", review.helpful);
    timestamp(out, review.created_at);
    out.push('\t');
    timestamp(out, review.updated_at);
    out.push('\n');
}

/// Escapes the characters COPY's text format gives a meaning to.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Unix seconds as a UTC timestamp Postgres reads, e.g. `2024-05-01 13:45:00+00`.
fn timestamp(out: &mut String, unix: i64) {
    let at =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
}

/// A temporary file, removed when dropped.
#[derive(Debug)]
struct Spool {
    path: PathBuf,
}

impl Spool {
    fn create() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!("courser-seed-{}-{nanos}.copy", std::process::id());
        let path = std::env::temp_dir().join(name);
        File::create_new(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }

    fn file(&self) -> anyhow::Result<File> {
        File::options()
            .write(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rows_escape_and_format_like_copy_expects() {
        let mut out = String::new();
        escape(&mut out, "a\tb\\c\nd");
        assert_eq!(out, "a\\tb\\\\c\\nd");
        out.clear();
        timestamp(&mut out, 1_700_000_000);
        assert_eq!(out, "2023-11-14 22:13:20+00");
        out.clear();
        rating_row(
            &mut out,
            &Rating {
                course_id: 3,
                review_count: 2,
                half_stars_sum: 17,
                distribution: [0, 0, 0, 0, 0, 0, 1, 0, 1],
            },
        );
        assert_eq!(out, "3\t2\t17\t{0,0,0,0,0,0,1,0,1}\n");
    }
}
