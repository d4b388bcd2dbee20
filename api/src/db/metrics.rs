//! The database's metrics: every statement by its [`QueryName`] (time, rows, errors), the
//! wait for a pool connection, and the pool's connections read at scrape time. Recorded
//! by `exec` only, through the timers here, so no query function measures itself.
//!
//! Exported as (with the api's `courser_api_` prefix):
//! - `db_query_duration_seconds{query}` histogram, `db_query_rows_total{query}` and
//!   `db_query_errors_total{query}` counters;
//! - `db_pool_acquire_duration_seconds` histogram, `db_pool_acquire_timeouts_total`,
//!   `db_pool_waiting`;
//! - `db_pool_connections{state="idle"|"in_use"}`, `db_pool_max_connections`;
//! - `db_unreachable_total`, counted by `reachability`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::PgPool;

use crate::db::QueryName;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueryLabels {
    query: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// From 0.1 ms (a primary-key read on a warm cache) to the 5 s statement timeout.
const QUERY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// From 50 µs (an idle connection handed over) to past the 2 s pool timeout.
const ACQUIRE_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// The database metrics of one api instance.
#[derive(Debug)]
pub struct DbMetrics {
    query_duration: Family<QueryLabels, Histogram>,
    query_rows: Family<QueryLabels, Counter>,
    query_errors: Family<QueryLabels, Counter>,
    acquire_duration: Histogram,
    acquire_timeouts: Counter,
    waiting: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    unreachable: Counter,
}

impl DbMetrics {
    /// Registers every database metric in `registry` (the api's, prefixed `courser_api`).
    pub fn register(registry: &mut Registry) -> Self {
        let query_duration = Family::<QueryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(QUERY_BUCKETS)
        });
        registry.register_with_unit(
            "db_query_duration",
            "Time each database statement took, from sending it to its last row, by query name",
            Unit::Seconds,
            query_duration.clone(),
        );
        let query_rows = Family::<QueryLabels, Counter>::default();
        registry.register(
            "db_query_rows",
            "Rows database statements returned (or changed, for writes without RETURNING), by query name",
            query_rows.clone(),
        );
        let query_errors = Family::<QueryLabels, Counter>::default();
        registry.register(
            "db_query_errors",
            "Database statements that failed (constraint violations included) or were abandoned, by query name",
            query_errors.clone(),
        );
        // Every name at 0 from the start, so that "no errors" is a 0 rather than no data.
        for query in QueryName::ALL {
            let labels = QueryLabels {
                query: query.as_str(),
            };
            drop(query_errors.get_or_create(&labels));
            drop(query_rows.get_or_create(&labels));
        }
        let acquire_duration = Histogram::new(ACQUIRE_BUCKETS);
        registry.register_with_unit(
            "db_pool_acquire_duration",
            "Time spent waiting for a connection from the pool",
            Unit::Seconds,
            acquire_duration.clone(),
        );
        let acquire_timeouts = Counter::default();
        registry.register(
            "db_pool_acquire_timeouts",
            "Waits for a pool connection that gave up after the pool timeout (answered 503)",
            acquire_timeouts.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "db_pool_waiting",
            "Tasks waiting for a connection from the pool now",
            waiting.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Open database connections by state (idle or in_use)",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "The most database connections the pool may open",
            pool_max.clone(),
        );
        let unreachable = Counter::default();
        registry.register(
            "db_unreachable",
            "Times this instance marked the database unreachable (a failed check, or the server ending its sentinel session); requests answer 503 at once until a retry finds it",
            unreachable.clone(),
        );
        Self {
            query_duration,
            query_rows,
            query_errors,
            acquire_duration,
            acquire_timeouts,
            waiting,
            pool_connections,
            pool_max,
            unreachable,
        }
    }

    /// The counter `reachability` moves each time it marks the database down.
    pub(crate) fn unreachable(&self) -> Counter {
        self.unreachable.clone()
    }

    /// Sets the pool gauges from the pool as it is now (called at scrape time).
    pub fn set_pool_gauges(&self, pool: &PgPool) {
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set((size - idle).max(0));
        self.pool_max
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// Starts timing one statement.
    pub(crate) fn start_query(&self, query: QueryName) -> QueryTimer<'_> {
        QueryTimer {
            metrics: self,
            query,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Starts timing a wait for a pool connection, counted in `db_pool_waiting` until the
    /// timer is finished or dropped.
    pub(crate) fn start_acquire(&self) -> AcquireTimer<'_> {
        self.waiting.inc();
        AcquireTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    fn record_query(&self, query: QueryName, seconds: f64, rows: Option<u64>) {
        let labels = QueryLabels {
            query: query.as_str(),
        };
        self.query_duration.get_or_create(&labels).observe(seconds);
        match rows {
            Some(rows) => {
                self.query_rows.get_or_create(&labels).inc_by(rows);
            }
            None => {
                self.query_errors.get_or_create(&labels).inc();
            }
        }
    }
}

/// One statement being timed. Finished with its rows (or `None` for an error); dropped
/// unfinished, it counts as abandoned (an error) with the time it had run.
#[derive(Debug)]
pub(crate) struct QueryTimer<'m> {
    metrics: &'m DbMetrics,
    query: QueryName,
    started: Instant,
    finished: bool,
}

impl QueryTimer<'_> {
    pub(crate) fn finish(mut self, rows: Option<u64>) {
        self.finished = true;
        self.metrics
            .record_query(self.query, self.started.elapsed().as_secs_f64(), rows);
    }
}

impl Drop for QueryTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .record_query(self.query, self.started.elapsed().as_secs_f64(), None);
        }
    }
}

/// One wait for a pool connection. The wait is observed when it ends, whether a
/// connection came, the pool timed out, or the waiter went away.
#[derive(Debug)]
pub(crate) struct AcquireTimer<'m> {
    metrics: &'m DbMetrics,
    started: Instant,
}

impl AcquireTimer<'_> {
    pub(crate) fn finish(self, timed_out: bool) {
        if timed_out {
            self.metrics.acquire_timeouts.inc();
        }
    }
}

impl Drop for AcquireTimer<'_> {
    fn drop(&mut self) {
        self.metrics.waiting.dec();
        self.metrics
            .acquire_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        courser_exposition::encode(registry, courser_exposition::Format::Text).unwrap()
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn a_statement_is_timed_under_its_name_with_its_rows_or_as_an_error() {
        let mut registry = Registry::with_prefix("courser_api");
        let metrics = DbMetrics::register(&mut registry);
        metrics
            .start_query(QueryName::ReviewsPageRecent)
            .finish(Some(21));
        metrics
            .start_query(QueryName::ReviewsPageRecent)
            .finish(Some(4));
        metrics.start_query(QueryName::RatingsLock).finish(None);
        let text = exposition(&registry);
        for line in [
            r#"courser_api_db_query_duration_seconds_count{query="reviews.page_recent"} 2"#,
            r#"courser_api_db_query_rows_total{query="reviews.page_recent"} 25"#,
            r#"courser_api_db_query_errors_total{query="reviews.page_recent"} 0"#,
            r#"courser_api_db_query_duration_seconds_count{query="ratings.lock"} 1"#,
            r#"courser_api_db_query_errors_total{query="ratings.lock"} 1"#,
            // Every name has its counters from the start.
            r#"courser_api_db_query_errors_total{query="reviews.report"} 0"#,
            r#"courser_api_db_query_rows_total{query="transaction.commit"} 0"#,
        ] {
            assert!(has(&text, line), "{line} missing from\n{text}");
        }
        assert!(
            !text
                .contains(r#"courser_api_db_query_duration_seconds_count{query="reviews.report"}"#),
            "a statement never run has no histogram: {text}"
        );
    }

    #[tokio::test]
    async fn a_statement_abandoned_halfway_counts_as_an_error_with_the_time_it_ran() {
        let mut registry = Registry::with_prefix("courser_api");
        let metrics = DbMetrics::register(&mut registry);
        let timer = metrics.start_query(QueryName::ReviewsFind);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        drop(timer);
        let text = exposition(&registry);
        assert!(
            has(
                &text,
                r#"courser_api_db_query_errors_total{query="reviews.find"} 1"#
            ),
            "{text}"
        );
        assert!(
            has(
                &text,
                r#"courser_api_db_query_duration_seconds_bucket{le="0.025",query="reviews.find"} 0"#
            ),
            "{text}"
        );
        assert!(
            has(
                &text,
                r#"courser_api_db_query_duration_seconds_bucket{le="0.05",query="reviews.find"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn waits_for_a_connection_are_counted_while_they_last_and_timed_when_they_end() {
        let mut registry = Registry::with_prefix("courser_api");
        let metrics = DbMetrics::register(&mut registry);
        let first = metrics.start_acquire();
        let second = metrics.start_acquire();
        assert!(has(&exposition(&registry), "courser_api_db_pool_waiting 2"));
        first.finish(false);
        second.finish(true);
        let abandoned = metrics.start_acquire();
        drop(abandoned);
        let text = exposition(&registry);
        for line in [
            "courser_api_db_pool_waiting 0",
            "courser_api_db_pool_acquire_duration_seconds_count 3",
            "courser_api_db_pool_acquire_timeouts_total 1",
        ] {
            assert!(has(&text, line), "{line} missing from\n{text}");
        }
    }
}
