//! Counters and latency histograms for Prometheus (`[metrics]`), and the text exposition format
//! they are served in. Every table has a fixed size chosen at start, so nothing a peer sends
//! can grow it; recording is a relaxed atomic add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wire::Status;

/// Upper bounds, in seconds, of the latency histogram buckets: 0.5 ms to 2 s, which spans a
/// search on a fast core to a durable write on a slow SD card.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub(crate) fn increment(&self) {
        self.add(1);
    }

    /// Adds `amount`.
    pub(crate) fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [Counter; LATENCY_BUCKETS.len() + 1],
    /// Sum of all observations in microseconds.
    sum_micros: Counter,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].increment();
        self.sum_micros
            .add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(Counter::get).sum()
    }
}

/// The protocol's status codes, one slot each in the request table; a last slot counts any
/// other code.
const STATUS_CODES: [i32; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 51, 52, 53, 54, 55, 56, 57, 58];
const STATUS_SLOTS: usize = STATUS_CODES.len() + 1;

fn status_slot(code: i32) -> usize {
    STATUS_CODES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(STATUS_SLOTS - 1)
}

fn status_name(slot: usize) -> &'static str {
    STATUS_CODES
        .get(slot)
        .and_then(|code| Status::try_from(*code).ok())
        .map_or("OTHER", |status| status.as_str_name())
}

/// Requests answered, by request type and status.
#[derive(Debug)]
pub(crate) struct Requests {
    /// Request type names; index `names.len()` counts messages of no admissible type.
    names: &'static [&'static str],
    counts: Box<[Counter]>,
}

impl Requests {
    /// A table for the request types `names`, all zero.
    pub(crate) fn new(names: &'static [&'static str]) -> Requests {
        let counts = (0..(names.len() + 1) * STATUS_SLOTS)
            .map(|_| Counter::default())
            .collect();
        Requests { names, counts }
    }

    /// Counts an answer with status `code` to a request of type `kind` (an index into the
    /// names; `None` or out of range for a message of no admissible type).
    pub(crate) fn record(&self, kind: Option<usize>, code: i32) {
        let row = kind
            .filter(|kind| *kind < self.names.len())
            .unwrap_or(self.names.len());
        self.counts[row * STATUS_SLOTS + status_slot(code)].increment();
    }

    /// The count for type `kind` and status `code`.
    #[cfg(test)]
    pub(crate) fn get(&self, kind: Option<usize>, code: i32) -> u64 {
        let row = kind
            .filter(|kind| *kind < self.names.len())
            .unwrap_or(self.names.len());
        self.counts[row * STATUS_SLOTS + status_slot(code)].get()
    }

    fn name(&self, row: usize) -> &'static str {
        self.names.get(row).copied().unwrap_or("Invalid")
    }
}

/// Every counter and histogram of one server.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Requests answered by type and status.
    pub requests: Requests,
    /// Connections accepted on any port.
    pub connections_accepted: Counter,
    /// Connections refused at accept by `limits.max_connections_per_address`.
    pub connections_refused: Counter,
    /// Why connections end, as label values; `closed` counts by position.
    close_reasons: &'static [&'static str],
    closed: Box<[Counter]>,
    /// Frame bytes received from clients and peers, headers included.
    pub bytes_received: Counter,
    /// Frame bytes sent to clients and peers, headers included.
    pub bytes_sent: Counter,
    /// How long profile searches took on the index (checking the query included).
    pub search_latency: Histogram,
}

impl Metrics {
    /// All zero, with the request types `request_names` and the reasons a connection ends
    /// `close_reasons`.
    pub(crate) fn new(
        request_names: &'static [&'static str],
        close_reasons: &'static [&'static str],
    ) -> Metrics {
        Metrics {
            requests: Requests::new(request_names),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            close_reasons,
            closed: close_reasons.iter().map(|_| Counter::default()).collect(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            search_latency: Histogram::default(),
        }
    }

    /// Counts a connection that ended for the reason at `reason` in the close reasons.
    pub(crate) fn connection_closed(&self, reason: usize) {
        if let Some(counter) = self.closed.get(reason) {
            counter.increment();
        }
    }

    /// Writes every counter and the search histogram to `out`.
    pub(crate) fn write(&self, out: &mut Exposition) {
        out.family(
            "iop_requests_total",
            "counter",
            "Requests answered, by request type and status.",
        );
        for (slot, count) in self.requests.counts.iter().enumerate() {
            let count = count.get();
            if count == 0 {
                continue;
            }
            let labels = [
                ("type", self.requests.name(slot / STATUS_SLOTS)),
                ("status", status_name(slot % STATUS_SLOTS)),
            ];
            out.sample("iop_requests_total", &labels, count);
        }
        out.single(
            "iop_connections_accepted_total",
            "counter",
            "Connections accepted on any port.",
            self.connections_accepted.get(),
        );
        out.single(
            "iop_connections_refused_total",
            "counter",
            "Connections refused at accept by limits.max_connections_per_address.",
            self.connections_refused.get(),
        );
        out.family(
            "iop_connections_closed_total",
            "counter",
            "Connections ended, by reason (timeout_idle and timeout_session are timeouts).",
        );
        for (reason, counter) in self.close_reasons.iter().zip(&self.closed) {
            let labels = [("reason", *reason)];
            out.sample("iop_connections_closed_total", &labels, counter.get());
        }
        out.single(
            "iop_received_bytes_total",
            "counter",
            "Protocol frame bytes received, headers included.",
            self.bytes_received.get(),
        );
        out.single(
            "iop_sent_bytes_total",
            "counter",
            "Protocol frame bytes sent, headers included.",
            self.bytes_sent.get(),
        );
        out.histogram(
            "iop_search_duration_seconds",
            "Time a profile search took on the index, checking the query included.",
            &self.search_latency,
        );
    }
}

/// Text in the Prometheus exposition format (version 0.0.4).
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    /// The `Content-Type` the text is served with.
    pub(crate) const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Starts the metric family `name` with its type and help text.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the family being written.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    pub(crate) fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family with cumulative buckets, sum and count.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (slot, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += histogram.buckets[slot].get();
            self.sample(&bucket, &[("le", &bound.to_string())], cumulative);
        }
        self.sample(&bucket, &[("le", "+Inf")], histogram.count());
        let micros = histogram.sum_micros.get();
        let sum = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], histogram.count());
    }

    /// The text written so far.
    pub(crate) fn into_text(self) -> String {
        self.text
    }
}

/// A label value with backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_status_has_its_own_slot_and_name() {
        let codes = (0..=8).chain(51..=58);
        let mut slots: Vec<usize> = codes.clone().map(status_slot).collect();
        slots.dedup();
        assert_eq!(slots.len(), 17);
        for code in codes {
            let name = status_name(status_slot(code));
            let expected = Status::try_from(code).map(|s| s.as_str_name());
            assert_eq!(Ok(name), expected, "code {code}");
        }
        assert_eq!(status_name(status_slot(9)), "OTHER");
        assert_eq!(status_name(status_slot(-1)), "OTHER");
    }

    #[test]
    fn requests_of_no_known_type_share_one_row() {
        let requests = Requests::new(&["Ping", "ListRoles"]);
        requests.record(Some(1), 0);
        requests.record(None, 1);
        requests.record(Some(7), 1);
        assert_eq!(requests.get(Some(1), 0), 1);
        assert_eq!(requests.get(None, 1), 2);
        assert_eq!(requests.get(Some(0), 0), 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(5));
        let mut out = Exposition::default();
        out.histogram("t", "test", &histogram);
        let text = out.into_text();
        assert!(text.contains("t_bucket{le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"2\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("t_sum 5.003300\n"), "{text}");
        assert!(text.contains("t_count 3\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("v", "a\"b\\c\nd")], 1);
        assert_eq!(out.into_text(), "m{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
