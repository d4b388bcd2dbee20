//! Cache-aside for course pages: an in-process tier in front of Redis in front of the
//! source (Postgres), invalidated on every write.
//!
//! - [`Cache::course_page`] serves a page from the first tier that has it fresh, and
//!   loads it from the [`Source`] once per instance when none has (stampede protection).
//! - [`Cache::invalidate`] is called after a write commits: Redis gets new generation
//!   tokens, then the local tier forgets (in that order, or a fill between the two could
//!   store the old page as fresh), and the other instances hear of it on the
//!   invalidation buses, Redis pub/sub (see `bus`) and Postgres `NOTIFY` (see
//!   `postgres_bus`); the in-process tier serves only while one of them has its heartbeat
//!   answered (see `lease`). When Redis does not take it, the instances that hear it
//!   over Postgres invalidate Redis for it.
//! - Redis holds pages as skeletons with reviewers spliced in from their own fragments
//!   (see `page`), so a reviewer's change invalidates one fragment, not every page. The
//!   in-process tier keeps pages assembled, so that a hit is one lookup; a reviewer's
//!   change drops the local pages that show them, which are assembled again from Redis.
//! - Redis failures cost a timeout at most, then nothing while the breaker is open: reads
//!   go to the source and writes still succeed; the cache comes back by itself.

mod breaker;
mod bus;
mod config;
mod lease;
mod local;
mod metrics;
mod page;
mod postgres_bus;
mod remote;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

pub use config::CacheConfig;
pub use local::Subject;
pub use page::{Page, Part, Skeleton};

use lease::Lease;
use local::{Filled, Local, LocalPage};
use metrics::Metrics;
use postgres_bus::PostgresBus;
use remote::{Lookup, Remote};

/// A page as loaded from the source: its skeleton and the reviewers it shows.
#[derive(Debug, Clone)]
pub struct LoadedPage {
    pub skeleton: Skeleton,
    pub reviewers: Vec<(i64, Bytes)>,
}

/// Where pages come from when no tier has them.
pub trait Source: Sync {
    type Error: Send + Sync + 'static;

    /// The page of `course` for `variant` (a canonical form of the query), or `None` when
    /// the course does not exist.
    fn load_page(
        &self,
        course: i64,
        variant: &str,
    ) -> impl Future<Output = Result<Option<LoadedPage>, Self::Error>> + Send;

    /// The JSON of each reviewer that exists among `ids`.
    fn load_reviewers(
        &self,
        ids: &[i64],
    ) -> impl Future<Output = Result<Vec<(i64, Bytes)>, Self::Error>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[from] redis::RedisError),
}

#[derive(Debug)]
pub(crate) struct Inner {
    local: Local,
    remote: Option<Remote>,
    postgres_bus: Option<PostgresBus>,
    local_on: bool,
    /// Held while one of the buses has its heartbeat answered: the in-process tier
    /// serves only then.
    lease: Arc<Lease>,
    metrics: Metrics,
}

/// The page of `skeleton` with the reviewers of `found` (each with when its read began),
/// and the reviewers it shows; `None` if one is missing.
fn assemble(skeleton: &Skeleton, found: &HashMap<i64, (Bytes, u64)>) -> Option<LocalPage> {
    let page = skeleton.assemble(|id| found.get(&id).map(|(json, _)| &json[..]))?;
    let reviewers = skeleton
        .reviewers()
        .filter_map(|id| found.get(&id).map(|&(_, read)| (id, read)))
        .collect();
    Some(LocalPage { page, reviewers })
}

/// Stops the background tasks (the two buses, the Postgres pinger) when the last handle to
/// the cache goes.
#[derive(Debug)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl Cache {
    /// Builds the cache and, with Redis configured, starts its bus, and with `postgres`
    /// given as well, the Postgres bus (every instance should be given the database its
    /// writes go to). Never waits for Redis or Postgres:
    /// one that is down at start is one that is down.
    pub fn new(
        config: &CacheConfig,
        postgres: Option<PgPool>,
        registry: &mut Registry,
    ) -> Result<Self, CacheError> {
        let metrics = Metrics::new(registry);
        let instance = rand::random::<u64>();
        let lease = Arc::new(Lease::new(config.heartbeat_deadline));
        let remote = config
            .redis_url
            .as_deref()
            .map(|url| Remote::new(url, config, metrics.clone(), instance, lease.clone()))
            .transpose()?;
        let inner = Arc::new(Inner {
            local: Local::new(config),
            postgres_bus: postgres
                .filter(|_| remote.is_some())
                .map(|pool| PostgresBus::new(pool, &config.key_prefix)),
            remote,
            local_on: config.local_bytes > 0,
            lease,
            metrics,
        });
        let mut tasks = Vec::new();
        if let Some(url) = &config.redis_url {
            let client = redis::Client::open(url.as_str())?;
            tasks.push(tokio::spawn(bus::run(client, inner.clone())).abort_handle());
        }
        if inner.postgres_bus.is_some() {
            tasks.push(tokio::spawn(postgres_bus::listen(inner.clone())).abort_handle());
            tasks.push(tokio::spawn(postgres_bus::ping(inner.clone())).abort_handle());
        }
        Ok(Self {
            inner,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }

    /// Whether the in-process tier is serving: it is on, and one of the buses had its
    /// heartbeat answered within the deadline.
    pub fn local_tier_serving(&self) -> bool {
        self.inner.local_on && self.inner.lease.holds()
    }

    /// Refreshes the gauges that are read rather than counted.
    pub fn update_gauges(&self) {
        let metrics = &self.inner.metrics;
        metrics
            .local_bytes
            .set(i64::try_from(self.inner.local.weighted_size()).unwrap_or(i64::MAX));
        if let Some(remote) = &self.inner.remote {
            metrics.breaker_state.set(remote.breaker_state());
        }
        metrics
            .local_serving
            .set(i64::from(self.local_tier_serving()));
    }

    /// The page of `course` for `variant`, from the freshest tier that has it.
    pub async fn course_page<S: Source>(
        &self,
        course: i64,
        variant: &str,
        source: &S,
    ) -> Result<Option<Page>, Arc<S::Error>> {
        if self.inner.remote.is_some() && self.local_tier_serving() {
            self.local_page(course, variant, source).await
        } else {
            self.unkept_page(course, variant, source).await
        }
    }

    /// From the tiers below the in-process one, assembled and not kept here.
    async fn unkept_page<S: Source>(
        &self,
        course: i64,
        variant: &str,
        source: &S,
    ) -> Result<Option<Page>, Arc<S::Error>> {
        let (skeleton, loaded) = if self.inner.remote.is_some() {
            self.shared_page(course, variant, source).await?
        } else {
            match source.load_page(course, variant).await.map_err(Arc::new)? {
                Some(loaded) => (Some(loaded.skeleton), loaded.reviewers),
                None => (None, Vec::new()),
            }
        };
        let Some(skeleton) = skeleton else {
            return Ok(None);
        };
        let read_from = self.inner.local.read_begins();
        let assembled = self
            .finish((course, variant), &skeleton, loaded, read_from, source)
            .await?;
        Ok(assembled.map(|local| local.page))
    }

    /// Through the in-process tier, which keeps pages assembled: one fill per key at a
    /// time, then a freshness check.
    async fn local_page<S: Source>(
        &self,
        course: i64,
        variant: &str,
        source: &S,
    ) -> Result<Option<Page>, Arc<S::Error>> {
        let local = &self.inner.local;
        let key: local::PageKey = (course, Arc::from(variant));
        for _ in 0..2 {
            let mut filled_here = false;
            let entry = local
                .pages
                .try_get_with(key.clone(), async {
                    filled_here = true;
                    let read_from = local.read_begins();
                    let (skeleton, loaded) = self.shared_page(course, variant, source).await?;
                    let Some(skeleton) = skeleton else {
                        return Ok(Filled::new(None, read_from, local.ttl()));
                    };
                    // The page's reviewers came in the same read: keep them for the
                    // other pages that show them, or each of those would fetch them again.
                    for (id, json) in &loaded {
                        let filled = Filled::new(json.clone(), read_from, local.ttl());
                        local.reviewers.insert(*id, filled).await;
                    }
                    let page = self
                        .finish((course, variant), &skeleton, loaded, read_from, source)
                        .await?;
                    Ok::<_, Arc<S::Error>>(Filled::new(page, read_from, local.ttl()))
                })
                .await
                .map_err(|shared: Arc<Arc<S::Error>>| Arc::clone(&*shared))?;
            if local.is_page_fresh(course, &entry).await {
                if !filled_here {
                    self.inner.metrics.hit("local", "page");
                }
                return Ok(entry.value.as_ref().map(|local| local.page.clone()));
            }
            // Assembled from a read older than the last invalidation of the course or of
            // one of its reviewers: drop it.
            local.pages.invalidate(&key).await;
        }
        // Invalidated again while refilling: serve this read straight from the tiers below.
        self.unkept_page(course, variant, source).await
    }

    /// Through Redis (when usable), then the source; stores what it loads in Redis.
    async fn shared_page<S: Source>(
        &self,
        course: i64,
        variant: &str,
        source: &S,
    ) -> Result<(Option<Skeleton>, Vec<(i64, Bytes)>), Arc<S::Error>> {
        let metrics = &self.inner.metrics;
        metrics.miss("local", "page");
        let lookup = match &self.inner.remote {
            Some(remote) => remote.page(course, variant).await,
            None => None,
        };
        if let Some(Lookup::Hit(skeleton)) = lookup {
            metrics.hit("redis", "page");
            return Ok((Some(skeleton), Vec::new()));
        }
        metrics.miss("redis", "page");
        metrics.load("page");
        let Some(loaded) = source.load_page(course, variant).await.map_err(Arc::new)? else {
            return Ok((None, Vec::new()));
        };
        if let (Some(remote), Some(Lookup::Miss { generation })) = (&self.inner.remote, lookup) {
            remote
                .store_page(course, variant, generation, &loaded.skeleton)
                .await;
        }
        Ok((Some(loaded.skeleton), loaded.reviewers))
    }

    /// Splices the reviewers into the skeleton: from what the load brought, the
    /// in-process tier, Redis, and last the source. Gives the page with the reviewers it
    /// shows, each with when its read began: `read_from` (when the caller's read began)
    /// for all but the in-process tier's fragments.
    async fn finish<S: Source>(
        &self,
        (course, variant): (i64, &str),
        skeleton: &Skeleton,
        loaded: Vec<(i64, Bytes)>,
        read_from: u64,
        source: &S,
    ) -> Result<Option<LocalPage>, Arc<S::Error>> {
        let (local, metrics) = (&self.inner.local, &self.inner.metrics);
        let serving = self.local_tier_serving();
        let since_read = |(id, json)| (id, (json, read_from));
        let mut found: HashMap<i64, (Bytes, u64)> = loaded.into_iter().map(since_read).collect();
        let mut missing = Vec::new();
        for id in skeleton.reviewers() {
            if found.contains_key(&id) || missing.contains(&id) {
                continue;
            }
            match local.reviewers.get(&id).await {
                Some(entry)
                    if serving && local.is_fresh(Subject::Reviewer(id), entry.read_from).await =>
                {
                    metrics.hit("local", "reviewer");
                    found.insert(id, (entry.value.clone(), entry.read_from));
                }
                _ => missing.push(id),
            }
        }
        if !missing.is_empty() {
            let fetch_from = local.read_begins();
            let fetched = self.shared_reviewers(&missing, source).await?;
            if serving {
                for (id, json) in &fetched {
                    local
                        .reviewers
                        .insert(*id, Filled::new(json.clone(), fetch_from, local.ttl()))
                        .await;
                }
            }
            found.extend(
                fetched
                    .into_iter()
                    .map(|(id, json)| (id, (json, fetch_from))),
            );
        }
        if let Some(page) = assemble(skeleton, &found) {
            return Ok(Some(page));
        }
        // A reviewer the skeleton names exists while their review does, so a gap means a
        // write raced this read: load the page straight from the source.
        let Some(loaded) = source.load_page(course, variant).await.map_err(Arc::new)? else {
            return Ok(None);
        };
        let found = loaded.reviewers.into_iter().map(since_read).collect();
        Ok(assemble(&loaded.skeleton, &found))
    }

    async fn shared_reviewers<S: Source>(
        &self,
        ids: &[i64],
        source: &S,
    ) -> Result<Vec<(i64, Bytes)>, Arc<S::Error>> {
        let metrics = &self.inner.metrics;
        let lookups = match &self.inner.remote {
            Some(remote) => remote.reviewers(ids).await,
            None => None,
        };
        let mut found = Vec::with_capacity(ids.len());
        let mut to_load = Vec::new();
        let mut generations = Vec::new();
        match lookups {
            Some(lookups) => {
                for (id, lookup) in ids.iter().zip(lookups) {
                    match lookup {
                        Lookup::Hit(json) => {
                            metrics.hit("redis", "reviewer");
                            found.push((*id, json));
                        }
                        Lookup::Miss { generation } => {
                            metrics.miss("redis", "reviewer");
                            to_load.push(*id);
                            generations.push((*id, generation));
                        }
                    }
                }
            }
            None => to_load.extend_from_slice(ids),
        }
        if !to_load.is_empty() {
            metrics.load("reviewer");
            let loaded = source.load_reviewers(&to_load).await.map_err(Arc::new)?;
            if let Some(remote) = &self.inner.remote {
                let generation: HashMap<i64, u64> = generations.into_iter().collect();
                let to_store: Vec<(i64, u64, Bytes)> = loaded
                    .iter()
                    .filter_map(|(id, json)| generation.get(id).map(|g| (*id, *g, json.clone())))
                    .collect();
                remote.store_reviewers(&to_store).await;
            }
            found.extend(loaded);
        }
        Ok(found)
    }

    /// After a write has committed: nothing read before it is served again, here or in
    /// Redis once this returns, and on the other instances when the buses bring it. It
    /// goes to Redis first, then over Postgres (after Redis, or an instance hearing it
    /// there could refill from Redis's old page). When Redis does not take it, the
    /// instance keeps the invalidation and sends it before it reads from Redis again,
    /// and the other instances, hearing it as a fallback, invalidate Redis for it.
    pub async fn invalidate(&self, subjects: &[Subject]) {
        if subjects.is_empty() {
            return;
        }
        let inner = &self.inner;
        if let Some(remote) = &inner.remote {
            let redis_took = remote.invalidate(subjects).await;
            if let Some(bus) = &inner.postgres_bus {
                if !bus.send(remote.instance, subjects, redis_took).await {
                    inner.metrics.fallback_errors.inc();
                } else if !redis_took {
                    inner.metrics.fallback_sent.inc();
                }
            }
        }
        inner.local.invalidate_after_redis(subjects).await;
    }
}
