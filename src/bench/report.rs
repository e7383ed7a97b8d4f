//! What a bench run prints and writes: a table, JSON, and an SVG a person
//! can look at.

use serde::Serialize;
use std::fmt::Write as _;

use super::load::LostSend;
use super::relay::RelayResult;
use super::stats::Percentiles;

/// Everything one `bluetick bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store: String,
    pub users: usize,
    pub pattern: String,
    pub rate: Option<f64>,
    pub size: usize,
    pub duration_secs: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Of `lost`: acked by the server (so stored) but never pushed to the
    /// recipient; a syncing client (the SDK) gets these back.
    pub lost_after_ack: u64,
    /// Each lost send: who to whom, its client id, and whether it was acked.
    pub lost_sends: Vec<LostSend>,
    pub duplicates: u64,
    pub order_violations: u64,
    pub sustained_messages_per_second: f64,
    pub send_to_ack: Percentiles,
    pub send_to_deliver: Percentiles,
    pub send_to_delivered_receipt: Percentiles,
    pub server_rss_bytes: Option<u64>,
    /// Times the broker skipped a lagging subscriber past acked messages
    /// (`bluetick_broker_cursor_jumps_total`). The bench's lean clients
    /// neither resend nor sync, so such drops show up as loss; the SDK
    /// recovers them.
    pub broker_drops: u64,
    pub relays: Vec<RelayResult>,
    /// ✓✓ per second, second by second.
    pub throughput_series: Vec<u64>,
    /// Send → deliver latency histogram, `histogram_bucket_ms` wide buckets.
    pub histogram_bucket_ms: f64,
    pub deliver_histogram: Vec<usize>,
}

impl Report {
    /// Zero loss, zero duplicates, no order violations.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.order_violations == 0
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bluetick bench: {} users, {} pattern, rate {}, {} B bodies, {:.0} s measured, store {}",
            self.users,
            self.pattern,
            self.rate.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "max".into()),
            self.size,
            self.duration_secs,
            self.store
        );
        let _ = writeln!(
            out,
            "{:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("send → ack (✓)", &self.send_to_ack),
            ("send → recipient", &self.send_to_deliver),
            ("send → ✓✓ at sender", &self.send_to_delivered_receipt),
        ] {
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        }
        let _ = writeln!(
            out,
            "sustained end to end      {:>9.0} messages/s (stored, acked, delivered, ✓✓ back)",
            self.sustained_messages_per_second
        );
        let _ = writeln!(
            out,
            "sent {} received {} lost {} (of which stored, acked and not pushed: {}) duplicates {} order violations {}",
            self.sent, self.received, self.lost, self.lost_after_ack, self.duplicates, self.order_violations
        );
        for lost in self.lost_sends.iter().take(10) {
            let _ = writeln!(
                out,
                "  lost {} → {}: {} ({})",
                lost.sender,
                lost.peer,
                lost.client_id,
                if lost.acked {
                    "acked, so stored, but never pushed"
                } else {
                    "the server never acked it"
                }
            );
        }
        if self.broker_drops > 0 {
            let _ = writeln!(out, "the broker skipped lagging subscribers {} times (acked, then dropped; the SDK would resend or sync)", self.broker_drops);
        }
        if let Some(rss) = self.server_rss_bytes {
            let _ = writeln!(
                out,
                "server RSS at the end      {:>9.1} MiB",
                rss as f64 / (1024.0 * 1024.0)
            );
        }
        for relay in &self.relays {
            let ratio = if relay.messages_per_second > 0.0 {
                100.0 * self.sustained_messages_per_second / relay.messages_per_second
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "raw QoS 1 relay via {:<14} {:>9.0} messages/s ({} pairs); bluetick end to end is {ratio:.1}% of it",
                relay.broker, relay.messages_per_second, relay.pairs
            );
        }
        if !self.is_clean() {
            let _ = writeln!(
                out,
                "\n!!! NOT CLEAN: {} lost, {} duplicates, {} order violations !!!",
                self.lost, self.duplicates, self.order_violations
            );
        }
        out
    }

    /// Throughput over time and the latency histogram, side by side.
    pub fn svg(&self) -> String {
        let (w, h, pad) = (480.0, 300.0, 40.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
            2.0 * w,
            h
        );
        svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
        // Left: ✓✓ per second over time.
        let series = &self.throughput_series;
        let top = series.iter().copied().max().unwrap_or(1).max(1) as f64;
        let step = (w - 2.0 * pad) / (series.len().max(2) - 1) as f64;
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                format!(
                    "{:.1},{:.1}",
                    pad + i as f64 * step,
                    h - pad - (v as f64 / top) * (h - 2.0 * pad)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<text x="{pad}" y="20">end-to-end messages/s (✓✓) over time, peak {top:.0}</text><polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/><line x1="{pad}" y1="{y}" x2="{x2}" y2="{y}" stroke="black"/><text x="{pad}" y="{ty}">0 s</text><text x="{x2}" y="{ty}" text-anchor="end">{} s</text>"#,
            points.join(" "),
            series.len(),
            y = h - pad,
            x2 = w - pad,
            ty = h - pad + 15.0
        );
        // Right: send → deliver histogram.
        let bars = &self.deliver_histogram;
        let top = bars.iter().copied().max().unwrap_or(1).max(1) as f64;
        let width = (w - 2.0 * pad) / bars.len().max(1) as f64;
        let _ = write!(
            svg,
            r#"<text x="{}" y="20">send → recipient latency, {} ms buckets (last: slower)</text>"#,
            w + pad,
            self.histogram_bucket_ms
        );
        for (i, &count) in bars.iter().enumerate() {
            let bar = (count as f64 / top) * (h - 2.0 * pad);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bar:.1}" fill="darkorange"/>"#,
                w + pad + i as f64 * width,
                h - pad - bar,
                (width - 1.0).max(1.0)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}">0 ms</text><text x="{}" y="{}" text-anchor="end">{} ms</text></svg>"#,
            w + pad,
            h - pad + 15.0,
            2.0 * w - pad,
            h - pad + 15.0,
            self.histogram_bucket_ms * bars.len() as f64
        );
        svg
    }
}
