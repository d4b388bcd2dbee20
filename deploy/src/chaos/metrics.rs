//! Reading the apis' cache counters from their `/metrics`, to tell whether the cache's
//! hit ratio came back after a fault.

use crate::api::{self, Instance};
use crate::layout::Layout;

/// Course-page cache counters summed over every api instance that answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounters {
    /// Page lookups (the in-process tier sees every one).
    pub lookups: f64,
    /// Pages loaded from Postgres because both tiers missed.
    pub loads: f64,
}

impl CacheCounters {
    /// Sums the counters of every instance now.
    pub async fn scrape(layout: &Layout) -> anyhow::Result<Self> {
        let client = api::http_client()?;
        let mut sum = Self::default();
        for instance in Instance::all(layout) {
            let Ok(response) = client
                .get(format!("{}/metrics", instance.url()))
                .send()
                .await
            else {
                continue;
            };
            let text = response.text().await.unwrap_or_default();
            sum.lookups += counter(&text, "courser_api_cache_hits_total", "local")
                + counter(&text, "courser_api_cache_misses_total", "local");
            sum.loads += counter(&text, "courser_api_cache_loads_total", "source");
        }
        Ok(sum)
    }

    /// The share of page lookups either tier answered between two scrapes (None
    /// without lookups). The Redis tier's own ratio says little: the proxy sends a
    /// course to one instance, so Redis mostly sees pages that writes just invalidated.
    pub fn hit_ratio_since(&self, earlier: &Self) -> Option<f64> {
        let lookups = (self.lookups - earlier.lookups).max(0.0);
        let loads = (self.loads - earlier.loads).max(0.0);
        (lookups > 0.0).then(|| 1.0 - (loads / lookups).min(1.0))
    }
}

/// The value of `name{tier="TIER",kind="page"}` in Prometheus text, 0 if absent.
fn counter(text: &str, name: &str, tier: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter(|line| line.contains(&format!("tier=\"{tier}\"")) && line.contains("kind=\"page\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::counter;

    #[test]
    fn reads_a_labelled_counter() {
        let text = "# TYPE courser_api_cache_hits counter\n\
                    courser_api_cache_hits_total{tier=\"redis\",kind=\"page\"} 12\n\
                    courser_api_cache_hits_total{tier=\"local\",kind=\"page\"} 40\n\
                    courser_api_cache_hits_total{tier=\"redis\",kind=\"reviewer\"} 7\n";
        assert!((counter(text, "courser_api_cache_hits_total", "redis") - 12.0).abs() < 1e-9);
        assert!((counter(text, "courser_api_cache_misses_total", "redis")).abs() < 1e-9);
    }
}
