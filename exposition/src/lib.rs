//! Prometheus exposition of a `prometheus-client` registry in the format the scraper asks
//! for, shared by the api and the proxy so that both serve `/metrics` the same way.
//!
//! `prometheus-client` writes only OpenMetrics text, which Prometheus prefers and asks for
//! first. Tools that read the classic text format (0.0.4) misread it: OpenMetrics names a
//! counter's family `x` and its sample `x_total`, so a classic parser sees an untyped
//! `x_total` without help and an empty counter `x` (`promtool check metrics` fails on
//! exactly that), and `# UNIT` / `# EOF` mean nothing to it. So [`Format::negotiate`]
//! reads the `Accept` header as client_golang does: OpenMetrics only for a client that
//! asks for it, the classic format for everyone else (curl, browsers, promtool pipelines).
//! The classic text is derived from the OpenMetrics text by [`openmetrics_to_text`], a
//! line-by-line rewrite of the descriptors, since the crate has no classic encoder.

use prometheus_client::registry::Registry;

pub mod testing;

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text, what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format a client with this `Accept` header gets: OpenMetrics when it names
    /// `application/openmetrics-text` with a quality at least that of its best range
    /// matching `text/plain`; the classic format otherwise (and with no header).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Text;
        };
        let mut openmetrics = 0.0_f64;
        let mut text = 0.0_f64;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Renders `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    Ok(match format {
        Format::OpenMetrics => openmetrics,
        Format::Text => openmetrics_to_text(&openmetrics),
    })
}

/// The family being rewritten: its OpenMetrics name and type.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
}

/// Rewrites OpenMetrics text as the classic text format:
/// - a counter family `x` becomes `x_total` (the name its samples carry), an info family
///   `x` the gauge `x_info`, `unknown` becomes `untyped`;
/// - `# UNIT` and `# EOF` lines go, as do `_created` samples (the classic format has no
///   creation time) and exemplars;
/// - sample timestamps, seconds in OpenMetrics, become milliseconds.
///
/// Input that is not OpenMetrics from `prometheus-client` is passed through line by line.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // `prometheus-client` writes HELP before TYPE; the HELP line waits for the TYPE that
    // says what the family is called in the classic format.
    let mut help: Option<(&str, &str)> = None;
    let mut family: Option<Family<'_>> = None;
    for line in openmetrics.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or("");
            let name = words.next().unwrap_or("");
            let rest = words.next().unwrap_or("");
            match keyword {
                "EOF" | "UNIT" => {}
                "HELP" => {
                    flush_help(&mut out, &mut help);
                    help = Some((name, rest));
                }
                "TYPE" => {
                    let (classic_name, classic_kind) = classic_descriptor(name, rest);
                    match help.take() {
                        Some((help_name, text)) if help_name == name => {
                            push_line(&mut out, &["# HELP ", &classic_name, " ", text]);
                        }
                        other => {
                            help = other;
                            flush_help(&mut out, &mut help);
                        }
                    }
                    push_line(&mut out, &["# TYPE ", &classic_name, " ", classic_kind]);
                    family = Some(Family { name, kind: rest });
                }
                _ => push_line(&mut out, &[line]),
            }
            continue;
        }
        flush_help(&mut out, &mut help);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(sample) = classic_sample(line, family.as_ref()) {
            out.push_str(&sample);
            out.push('\n');
        }
    }
    flush_help(&mut out, &mut help);
    out
}

fn push_line(out: &mut String, parts: &[&str]) {
    for part in parts {
        out.push_str(part);
    }
    out.push('\n');
}

/// A HELP line whose TYPE never came is kept as it was.
fn flush_help<'a>(out: &mut String, help: &mut Option<(&'a str, &'a str)>) {
    if let Some((name, text)) = help.take() {
        push_line(out, &["# HELP ", name, " ", text]);
    }
}

fn classic_descriptor<'a>(name: &'a str, kind: &'a str) -> (std::borrow::Cow<'a, str>, &'a str) {
    use std::borrow::Cow;
    match kind {
        "counter" => (Cow::Owned(format!("{name}_total")), "counter"),
        "info" => (Cow::Owned(format!("{name}_info")), "gauge"),
        "gauge" | "histogram" | "summary" => (Cow::Borrowed(name), kind),
        _ => (Cow::Borrowed(name), "untyped"),
    }
}

/// One sample line in the classic format, or `None` for a sample it has no place for.
fn classic_sample(line: &str, family: Option<&Family<'_>>) -> Option<String> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if let Some(family) = family
        && matches!(family.kind, "counter" | "histogram" | "summary")
        && name.strip_suffix("_created") == Some(family.name)
    {
        return None;
    }
    let labels_end = if line[name_end..].starts_with('{') {
        name_end + label_set_len(&line[name_end..])?
    } else {
        name_end
    };
    let mut fields = line[labels_end..].split_whitespace();
    let value = fields.next()?;
    let mut sample = String::with_capacity(line.len());
    sample.push_str(&line[..labels_end]);
    sample.push(' ');
    sample.push_str(value);
    if let Some(timestamp) = fields.next().filter(|f| *f != "#")
        && let Ok(seconds) = timestamp.parse::<f64>()
    {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "milliseconds since 1970 fit an i64 for the next 292 million years"
        )]
        let millis = (seconds * 1000.0).round() as i64;
        sample.push(' ');
        sample.push_str(&millis.to_string());
    }
    Some(sample)
}

/// The length of the label set `{…}` at the start of `text`, quotes and escapes
/// respected; `None` if it is not closed.
fn label_set_len(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as MetricFamily;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::metrics::info::Info;
    use prometheus_client::registry::Unit;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        route: String,
    }

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_format() {
        assert_eq!(
            Format::negotiate(Some(PROMETHEUS_ACCEPT)),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/html,application/xhtml+xml,*/*;q=0.8")),
            Format::Text
        );
        // Asked for, but liked less than the classic format, or refused.
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; Q=0.9, */*;q=0.1")),
            Format::OpenMetrics
        );
    }

    fn registry() -> Registry {
        let mut registry = Registry::with_prefix("app");
        let requests = MetricFamily::<Labels, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        requests
            .get_or_create(&Labels {
                route: "/a/{id}".into(),
            })
            .inc_by(3);
        let latency = Histogram::new([0.1, 1.0]);
        registry.register_with_unit("latency", "Time to answer", Unit::Seconds, latency.clone());
        latency.observe(0.05);
        latency.observe(0.5);
        let bytes = Gauge::<i64>::default();
        registry.register_with_unit("cache", "Bytes held", Unit::Bytes, bytes.clone());
        bytes.set(42);
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version".to_owned(), "1.0".to_owned())]),
        );
        registry
    }

    #[test]
    fn openmetrics_is_the_crate_s_own_encoding() {
        let text = encode(&registry(), Format::OpenMetrics).unwrap();
        assert!(text.contains("# TYPE app_requests counter\n"), "{text}");
        assert!(
            text.contains("app_requests_total{route=\"/a/{id}\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_classic_format_names_each_family_as_its_samples_and_drops_what_it_lacks() {
        let text = encode(&registry(), Format::Text).unwrap();
        let expected = "\
# HELP app_requests_total Requests answered.
# TYPE app_requests_total counter
app_requests_total{route=\"/a/{id}\"} 3
# HELP app_latency_seconds Time to answer.
# TYPE app_latency_seconds histogram
app_latency_seconds_sum 0.55
app_latency_seconds_count 2
app_latency_seconds_bucket{le=\"0.1\"} 1
app_latency_seconds_bucket{le=\"1.0\"} 2
app_latency_seconds_bucket{le=\"+Inf\"} 2
# HELP app_cache_bytes Bytes held.
# TYPE app_cache_bytes gauge
app_cache_bytes 42
# HELP app_build_info Build information.
# TYPE app_build_info gauge
app_build_info{version=\"1.0\"} 1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn created_samples_exemplars_and_timestamps_are_rewritten() {
        let openmetrics = "\
# HELP x Things
# TYPE x counter
x_total{a=\"}# {\"} 7 1700000000.5 # {trace=\"1\"} 1.0
x_created 1700000000.0
# HELP up_ish A gauge whose name ends like a suffix
# TYPE up_ish unknown
up_ish_created 1
# EOF
";
        let expected = "\
# HELP x_total Things
# TYPE x_total counter
x_total{a=\"}# {\"} 7 1700000000500
# HELP up_ish A gauge whose name ends like a suffix
# TYPE up_ish untyped
up_ish_created 1
";
        assert_eq!(openmetrics_to_text(openmetrics), expected);
    }
}
