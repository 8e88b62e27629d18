//! [`SendMetrics`]: what this process saw on the send path, told by the send service.

use std::collections::HashSet;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::labels::SendOutcomeLabel;
use super::names;
use crate::config::routes::RouteSettings;
use crate::domain::{ChannelName, SendClass};
use crate::send::{SendEvent, SendObserver};

/// Vendor latency buckets, in seconds: from a fast gateway answer to the longest
/// timeout an operator is likely to configure.
const LATENCY_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

/// `tollgate_sends_total{channel,outcome,class}` and
/// `tollgate_upstream_request_duration_seconds{channel}`, per process.
///
/// Every (channel, outcome, class) series of the configured channels starts at 0, so that
/// `rate()` and `increase()` see the first send of each kind, and a channel that is
/// not configured is never counted: the label sets are fixed when tollgate starts.
pub struct SendMetrics {
    channels: HashSet<String>,
    sends: IntCounterVec,
    upstream_duration: HistogramVec,
    /// `tollgate_route_failovers_total{route,from,to,reason}`.
    failovers: IntCounterVec,
    /// `tollgate_circuit_open{channel}`: 1 while this process skips the channel.
    circuits: IntGaugeVec,
    /// (route, from, to) of the configured routes: the only failover series counted.
    route_pairs: HashSet<(String, String, String)>,
}

/// The `reason` label of `tollgate_route_failovers_total`: how the attempt a route moved
/// on from ended. Any other refusal (a request error on that channel) is `rejected`.
pub const FAILOVER_REASONS: [&str; 9] = [
    "quota_exhausted",
    "quota_reserved",
    "rate_limited",
    "circuit_open",
    "vendor_quota_exhausted",
    "auth_failed",
    "throttled",
    "upstream_error",
    "rejected",
];

impl SendMetrics {
    /// The metrics of `channels` and `routes`; every series of a configured channel or
    /// route starts at 0.
    pub fn new<'a>(
        channels: impl IntoIterator<Item = &'a ChannelName>,
        routes: &[RouteSettings],
    ) -> Self {
        let sends = IntCounterVec::new(
            Opts::new(
                names::SENDS_TOTAL,
                "Sends by channel, outcome and class: the vendor outcome, or quota_exhausted / quota_reserved / rate_limited / rejected for sends refused before the vendor was called.",
            ),
            &["channel", "outcome", "class"],
        )
        .expect("a valid metric definition");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                names::UPSTREAM_REQUEST_DURATION_SECONDS,
                "Time the vendor took to answer one send, in seconds.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["channel"],
        )
        .expect("a valid metric definition");
        let failovers = IntCounterVec::new(
            Opts::new(
                names::ROUTE_FAILOVERS_TOTAL,
                "Times a route moved a send on from one channel to the next, by the reason the first did not carry it.",
            ),
            &["route", "from", "to", "reason"],
        )
        .expect("a valid metric definition");
        let circuits = IntGaugeVec::new(
            Opts::new(
                names::CIRCUIT_OPEN,
                "1 while this process's routes skip the channel because its vendor keeps failing (its circuit is open or probing), else 0.",
            ),
            &["channel"],
        )
        .expect("a valid metric definition");
        let mut route_pairs = HashSet::new();
        for route in routes {
            for from in &route.channels {
                for to in route.channels.iter().filter(|to| *to != from) {
                    for reason in FAILOVER_REASONS {
                        failovers.with_label_values(&[
                            route.name.as_str(),
                            from.as_str(),
                            to.as_str(),
                            reason,
                        ]);
                    }
                    route_pairs.insert((route.name.to_string(), from.to_string(), to.to_string()));
                }
            }
        }
        let channels: HashSet<String> = channels.into_iter().map(|c| c.to_string()).collect();
        for channel in &channels {
            circuits.with_label_values(&[channel.as_str()]).set(0);
        }
        for channel in &channels {
            for outcome in SendOutcomeLabel::all() {
                for class in SendClass::ALL {
                    sends.with_label_values(&[channel.as_str(), outcome.as_str(), class.as_str()]);
                }
            }
            upstream_duration.with_label_values(&[channel.as_str()]);
        }
        Self {
            channels,
            sends,
            upstream_duration,
            failovers,
            circuits,
            route_pairs,
        }
    }

    /// Whether this process's routes skip `channel` now.
    pub fn circuit_open(&self, channel: &ChannelName) -> bool {
        self.channels.contains(channel.as_str())
            && self.circuits.with_label_values(&[channel.as_str()]).get() == 1
    }

    /// Adds this process's send metrics to `registry` (which is built for one scrape).
    pub fn register_into(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.sends.clone()))?;
        registry.register(Box::new(self.failovers.clone()))?;
        registry.register(Box::new(self.circuits.clone()))?;
        registry.register(Box::new(self.upstream_duration.clone()))
    }

    fn count(&self, channel: &ChannelName, outcome: SendOutcomeLabel, class: SendClass) {
        if self.channels.contains(channel.as_str()) {
            self.sends
                .with_label_values(&[channel.as_str(), outcome.as_str(), class.as_str()])
                .inc();
        }
    }
}

impl SendObserver for SendMetrics {
    fn observe(&self, event: &SendEvent<'_>) {
        match event {
            SendEvent::Refused {
                channel,
                class,
                code,
            } => {
                self.count(channel, SendOutcomeLabel::for_refusal(code), *class);
            }
            SendEvent::FailedOver {
                route,
                from,
                to,
                reason,
            } => {
                let pair = (route.to_string(), from.to_string(), to.to_string());
                if self.route_pairs.contains(&pair) {
                    let reason = FAILOVER_REASONS
                        .into_iter()
                        .find(|known| known == reason)
                        .unwrap_or("rejected");
                    self.failovers
                        .with_label_values(&[route.as_str(), from.as_str(), to.as_str(), reason])
                        .inc();
                }
            }
            SendEvent::Circuit { channel, open } => {
                if self.channels.contains(channel.as_str()) {
                    self.circuits
                        .with_label_values(&[channel.as_str()])
                        .set(i64::from(*open));
                }
            }
            SendEvent::Settled {
                channel,
                class,
                outcome,
                latency,
                ..
            } => {
                self.count(channel, SendOutcomeLabel::Vendor(*outcome), *class);
                if self.channels.contains(channel.as_str()) {
                    self.upstream_duration
                        .with_label_values(&[channel.as_str()])
                        .observe(latency.as_secs_f64());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::Outcome;
    use crate::domain::Yuan;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn settled(channel: &ChannelName, outcome: Outcome, latency_ms: u64) -> SendEvent<'_> {
        SendEvent::Settled {
            channel,
            class: SendClass::Critical,
            outcome,
            charged_units: 1,
            cost: Yuan::from_micros(45_000),
            latency: Duration::from_millis(latency_ms),
            remaining: 10,
        }
    }

    fn sends(metrics: &SendMetrics, channel: &str, outcome: &str) -> u64 {
        metrics
            .sends
            .with_label_values(&[channel, outcome, "critical"])
            .get()
    }

    #[test]
    fn settled_sends_are_counted_by_vendor_outcome_and_timed() {
        let sms = channel("sms_code");
        let metrics = SendMetrics::new([&sms], &[]);
        metrics.observe(&settled(&sms, Outcome::Sent, 120));
        metrics.observe(&settled(&sms, Outcome::Sent, 80));
        metrics.observe(&settled(&sms, Outcome::VendorRejected, 300));

        assert_eq!(sends(&metrics, "sms_code", "sent"), 2);
        assert_eq!(sends(&metrics, "sms_code", "vendor_rejected"), 1);
        let histogram = metrics.upstream_duration.with_label_values(&["sms_code"]);
        assert_eq!(histogram.get_sample_count(), 3);
        assert!((histogram.get_sample_sum() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn refusals_are_counted_without_a_latency() {
        let sms = channel("sms_code");
        let metrics = SendMetrics::new([&sms], &[]);
        metrics.observe(&SendEvent::Refused {
            channel: &sms,
            class: SendClass::Critical,
            code: "quota_exhausted",
        });
        metrics.observe(&SendEvent::Refused {
            channel: &sms,
            class: SendClass::Critical,
            code: "invalid_mobile",
        });
        metrics.observe(&SendEvent::Refused {
            channel: &sms,
            class: SendClass::Critical,
            code: "outside_sending_window",
        });

        assert_eq!(sends(&metrics, "sms_code", "quota_exhausted"), 1);
        assert_eq!(sends(&metrics, "sms_code", "rejected"), 2);
        let histogram = metrics.upstream_duration.with_label_values(&["sms_code"]);
        assert_eq!(histogram.get_sample_count(), 0);
    }

    #[test]
    fn every_series_exists_from_the_start_and_no_other_appears() {
        let sms = channel("sms_code");
        let voice = channel("voice_notice");
        let metrics = SendMetrics::new([&sms, &voice], &[]);
        let stranger = channel("not_configured");
        metrics.observe(&settled(&stranger, Outcome::Sent, 10));
        metrics.observe(&SendEvent::Refused {
            channel: &stranger,
            class: SendClass::Critical,
            code: "rejected",
        });

        let registry = Registry::new();
        metrics.register_into(&registry).unwrap();
        let families = registry.gather();
        let sends_family = families
            .iter()
            .find(|f| f.name() == names::SENDS_TOTAL)
            .unwrap();
        // 2 channels × 11 outcome values × 3 classes, all at zero: the stranger was not
        // counted.
        assert_eq!(sends_family.get_metric().len(), 66);
        assert!(sends_family
            .get_metric()
            .iter()
            .all(|m| m.get_counter().get_value() == 0.0));
        let histogram_family = families
            .iter()
            .find(|f| f.name() == names::UPSTREAM_REQUEST_DURATION_SECONDS)
            .unwrap();
        assert_eq!(histogram_family.get_metric().len(), 2);
    }
}
