//! The server's metrics, in the Prometheus text format (prometheus-client).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use sync_core::{ErrorCode, Outcome, Timestamp};

use crate::hub::NodeLag;

type Labels = [(&'static str, String); 1];

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    [(key, value.into())]
}

/// Every metric the server exports.
pub(crate) struct Metrics {
    registry: Registry,
    exchanges: Family<Labels, Counter>,
    exchange_seconds: Histogram,
    packets: Family<Labels, Counter>,
    applied: Counter,
    conflicts: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    rejected_changes: Counter,
    auth_failures: Family<Labels, Counter>,
    limited: Family<Labels, Counter>,
    connections: Counter,
    node_pending: Family<Labels, Gauge>,
    node_oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("syncplan");
        let exchanges = Family::<Labels, Counter>::default();
        registry.register(
            "exchanges",
            "Exchanges served, by result (ok, refused, failed)",
            exchanges.clone(),
        );
        let exchange_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "exchange_duration_seconds",
            "Time to serve an exchange, body read to reply written",
            exchange_seconds.clone(),
        );
        let packets = Family::<Labels, Counter>::default();
        registry.register(
            "packets",
            "Packets received from nodes (in) and sent to them (out)",
            packets.clone(),
        );
        let applied = Counter::default();
        registry.register(
            "entities_applied",
            "Entity changes from nodes applied at the hub",
            applied.clone(),
        );
        let conflicts = Family::<Labels, Counter>::default();
        registry.register(
            "conflicts",
            "Conflicts resolved, by strategy",
            conflicts.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "rejected_packets",
            "Packets refused by the hub with nothing applied, by error code",
            refused.clone(),
        );
        let rejected_changes = Counter::default();
        registry.register(
            "rejected_changes",
            "Entity changes from nodes that the hub's store refused, kept as rejected changes (the rest of their packets applied)",
            rejected_changes.clone(),
        );
        let auth_failures = Family::<Labels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused for authentication, by reason",
            auth_failures.clone(),
        );
        let limited = Family::<Labels, Counter>::default();
        registry.register(
            "limited_requests",
            "Requests refused by a limit (rate, body_size, timeout)",
            limited.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "connections",
            "TLS connections established (a kept-alive connection counts once)",
            connections.clone(),
        );
        let node_pending = Family::<Labels, Gauge>::default();
        registry.register(
            "node_pending_changes",
            "Changes the hub holds for a node that it has not acknowledged",
            node_pending.clone(),
        );
        let node_oldest_age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "node_oldest_unacknowledged_age_seconds",
            "Age of the oldest change a node has not acknowledged",
            node_oldest_age.clone(),
        );
        Metrics {
            registry,
            exchanges,
            exchange_seconds,
            packets,
            applied,
            conflicts,
            refused,
            rejected_changes,
            auth_failures,
            limited,
            connections,
            node_pending,
            node_oldest_age,
        }
    }

    /// An exchange the engine answered.
    pub fn exchange(&self, outcome: &Outcome, strategies: &[String], seconds: f64) {
        self.exchange_seconds.observe(seconds);
        self.packets.get_or_create(&label("direction", "in")).inc();
        self.packets.get_or_create(&label("direction", "out")).inc();
        match outcome.error {
            Some(code) => {
                self.exchanges
                    .get_or_create(&label("result", "refused"))
                    .inc();
                self.refused
                    .get_or_create(&label("code", code_name(code)))
                    .inc();
                if code == ErrorCode::Unauthenticated {
                    self.auth_failure("sender_mismatch");
                }
            }
            None => {
                self.exchanges.get_or_create(&label("result", "ok")).inc();
                self.applied.inc_by(outcome.applied as u64);
                self.rejected_changes.inc_by(outcome.rejected as u64);
            }
        }
        for strategy in strategies {
            self.conflicts
                .get_or_create(&label("strategy", strategy.as_str()))
                .inc();
        }
    }

    /// An exchange the hub could not answer.
    pub fn failed_exchange(&self) {
        self.exchanges
            .get_or_create(&label("result", "failed"))
            .inc();
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&label("reason", reason))
            .inc();
    }

    pub fn limited(&self, limit: &'static str) {
        self.limited.get_or_create(&label("limit", limit)).inc();
    }

    pub fn connection(&self) {
        self.connections.inc();
    }

    /// The text exposition, with per-node gauges set from `lags`.
    pub fn render(&self, lags: &[NodeLag], now: Timestamp) -> String {
        self.node_pending.clear();
        self.node_oldest_age.clear();
        for lag in lags {
            let node = label("node", lag.node.to_string());
            self.node_pending
                .get_or_create(&node)
                .set(i64::try_from(lag.pending).unwrap_or(i64::MAX));
            let age = lag.oldest_pending.map_or(0.0, |at| {
                (now.as_micros().saturating_sub(at.as_micros())).max(0) as f64 / 1e6
            });
            self.node_oldest_age.get_or_create(&node).set(age);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

pub(crate) fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Corrupt => "corrupt",
        ErrorCode::SchemaMismatch => "schema_mismatch",
        ErrorCode::UnknownNode => "unknown_node",
        ErrorCode::WrongRecipient => "wrong_recipient",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::Unsupported => "unsupported",
        ErrorCode::Internal => "internal",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::ClockAhead => "clock_ahead",
        _ => "unknown",
    }
}
