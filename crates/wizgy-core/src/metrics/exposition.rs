//! The text the endpoint serves at `/metrics`: one scrape's sums, in the OpenMetrics text
//! format as the `prometheus-client` crate writes it. Labels have fixed values only (status
//! classes, worker states, restart reasons): no path, client or worker pid ever becomes one.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{HistogramValues, Values, DURATION_BOUNDS_US, QUEUE_WAIT_BOUNDS_US, STATUS_CLASSES};
use crate::supervisor::RESTART_REASONS;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label values of `wizgy_workers`, by index.
pub const WORKER_STATES: [&str; 4] = ["starting", "ready", "spare", "stopping"];

/// What one scrape shows: the workers' sums and the supervisor's own counts.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub values: Values,
    /// Worker processes by [`WORKER_STATES`].
    pub workers: [u64; WORKER_STATES.len()],
    /// By [`RESTART_REASONS`].
    pub restarts: [u64; RESTART_REASONS.len()],
    /// Resident memory of all workers together.
    pub rss_bytes: u64,
}

/// The scrape as OpenMetrics text.
pub fn render(scrape: &Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape.clone()));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[u64],
    values: &HistogramValues,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // Not cumulative here; the encoder adds them up. The last is +Inf (f64::MAX).
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain(std::iter::once(f64::MAX))
        .zip(values.buckets)
        .collect();
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        values.sum_us as f64 / 1e6,
        values.count,
        &buckets,
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &self.values;
        {
            let mut family = encoder.encode_descriptor(
                "wizgy_requests",
                "Requests answered, by status class (none: the exchange ended before a response).",
                None,
                MetricType::Counter,
            )?;
            for (class, count) in STATUS_CLASSES.iter().zip(v.requests) {
                let labels = [("class", *class)];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        histogram(
            &mut encoder,
            "wizgy_request_duration_seconds",
            "Time from a request's head to the end of its response.",
            &DURATION_BOUNDS_US,
            &v.duration,
        )?;
        gauge(
            &mut encoder,
            "wizgy_requests_in_flight",
            "Exchanges begun and not yet ended.",
            v.in_flight,
        )?;
        histogram(
            &mut encoder,
            "wizgy_app_queue_wait_seconds",
            "Time an exchange waited for an app thread.",
            &QUEUE_WAIT_BOUNDS_US,
            &v.queue_wait,
        )?;
        gauge(
            &mut encoder,
            "wizgy_connections_open",
            "Client connections open.",
            v.connections_open,
        )?;
        counter(
            &mut encoder,
            "wizgy_connections_accepted",
            "Client connections accepted.",
            v.connections_accepted,
        )?;
        counter(
            &mut encoder,
            "wizgy_bytes_received",
            "Bytes read from clients (over TLS: encrypted bytes).",
            v.bytes_received,
        )?;
        counter(
            &mut encoder,
            "wizgy_bytes_sent",
            "Bytes written to clients (over TLS: encrypted bytes).",
            v.bytes_sent,
        )?;
        counter(
            &mut encoder,
            "wizgy_static_hits",
            "Requests answered by a --static mount.",
            v.static_hits,
        )?;
        counter(
            &mut encoder,
            "wizgy_access_log_dropped",
            "Access-log lines dropped because the log's writer fell behind.",
            v.access_log_dropped,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "wizgy_workers",
                "Worker processes, by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, count) in WORKER_STATES.iter().zip(self.workers) {
                let labels = [("state", *state)];
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "wizgy_worker_restarts",
                "Workers replaced, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in RESTART_REASONS.iter().zip(self.restarts) {
                let labels = [("reason", *reason)];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "wizgy_worker_rss_bytes",
            "Resident memory of all workers together.",
            i64::try_from(self.rss_bytes).unwrap_or(i64::MAX),
        )?;
        let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        let metric = encoder.encode_descriptor(
            "wizgy_build",
            "The wizgy version serving.",
            None,
            MetricType::Info,
        )?;
        info.encode(metric)
    }
}
