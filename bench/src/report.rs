//! What a bench run prints and writes: a table, JSON, and an SVG a person
//! can look at.

use plotters::prelude::*;
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
    /// Members per group (`--pattern groups`).
    pub group_size: Option<usize>,
    pub rate: Option<f64>,
    pub size: usize,
    pub duration_secs: f64,
    pub sent: u64,
    /// Deliveries owed: `sent`, or in groups `sent × (group_size − 1)`.
    pub expected: u64,
    /// Deliveries that arrived, each counted once.
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
    /// Messages that reached a recipient, per second over the measured
    /// window: in groups, messages × (group size − 1).
    pub deliveries_per_second: f64,
    pub send_to_ack: Percentiles,
    pub send_to_deliver: Percentiles,
    pub send_to_delivered_receipt: Percentiles,
    pub server_rss_bytes: Option<u64>,
    /// CPU over the measured window, percent of one core: the bench's own
    /// clients, and the server when it runs on this machine.
    pub bench_cpu_percent: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    /// Cores of this machine (the bench and a local server share them).
    pub cores: usize,
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
        let groups = self
            .group_size
            .map(|size| format!(" (groups of {size})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "bluetick bench: {} users, {} pattern{groups}, rate {}, {} B bodies, {:.0} s measured, store {}",
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
        if let Some(size) = self.group_size {
            let _ = writeln!(
                out,
                "sustained deliveries      {:>9.0} deliveries/s (messages × {} other members, each received once)",
                self.deliveries_per_second,
                size - 1
            );
        }
        let _ = writeln!(
            out,
            "sent {}{} received {} lost {} (of which stored, acked and not pushed: {}) duplicates {} order violations {}",
            self.sent,
            if self.group_size.is_some() {
                format!(" ({} deliveries owed)", self.expected)
            } else {
                String::new()
            },
            self.received,
            self.lost,
            self.lost_after_ack,
            self.duplicates,
            self.order_violations
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
        let percent = |p: Option<f64>| p.map_or("n/a".to_owned(), |p| format!("{p:.0}%"));
        let _ = writeln!(
            out,
            "CPU while measuring         bench {} · server {} (100% = one core; {} cores, shared)",
            percent(self.bench_cpu_percent),
            percent(self.server_cpu_percent),
            self.cores
        );
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

    /// Throughput over time and the latency histogram, side by side, with
    /// axes, ticks and units.
    pub fn svg(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        draw(self, &mut out).map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
        Ok(out)
    }
}

/// Draws `report`'s two charts as SVG into `out`.
fn draw<'a>(report: &Report, out: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let root = SVGBackend::with_string(out, (1000, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let font = ("sans-serif", 14);

    // Left: ✓✓ per second, second by second.
    let series = &report.throughput_series;
    let seconds = series.len().max(2) as f64;
    let peak = series.iter().copied().max().unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(&left)
        .caption("End-to-end throughput (✓✓ back at the sender)", font)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..seconds, 0.0..nice_ceiling(peak))?;
    chart
        .configure_mesh()
        .x_desc("time since the start (s)")
        .y_desc("messages/s")
        .x_label_formatter(&|s| format!("{s:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(LineSeries::new(
        series.iter().enumerate().map(|(i, &v)| (i as f64 + 0.5, v as f64)),
        BLUE.stroke_width(2),
    ))?;

    // Right: send → recipient latency histogram; the last bucket holds
    // everything slower.
    let bars = &report.deliver_histogram;
    let width = report.histogram_bucket_ms;
    let tallest = bars.iter().copied().max().unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!("Send → recipient latency ({} ms buckets)", round_label(width)),
            font,
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..width * bars.len().max(1) as f64, 0.0..nice_ceiling(tallest))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms; the last bar: that or slower)")
        .y_desc("messages")
        .x_label_formatter(&|ms| round_label(*ms))
        .y_label_formatter(&|n| format!("{n:.0}"))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, &count)| {
        let x = i as f64 * width;
        Rectangle::new(
            [(x + width * 0.05, 0.0), (x + width * 0.95, count as f64)],
            RGBColor(230, 126, 34).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// A round number of milliseconds for a label: "0.5", "2", "150".
fn round_label(ms: f64) -> String {
    if ms >= 10.0 || ms.fract() == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing),
/// so axes end on a round number.
pub fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(59.99005), 100.0);
        assert_eq!(nice_ceiling(3.1), 5.0);
        assert_eq!(nice_ceiling(0.37), 0.5);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(round_label(2.0), "2");
        assert_eq!(round_label(0.5), "0.5");
        assert_eq!(round_label(59.99005), "60");
    }
}
