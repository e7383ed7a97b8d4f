//! Seq tracking for `u/{me}/inbox`: a pure state machine, no I/O, no clock.
//!
//! The server numbers my inbox events 1, 2, 3… with no gaps, but the path
//! to me may lose, repeat or reorder them. [`Inbox`] turns whatever arrives
//! into the events the app may see, exactly once and in seq order, and says
//! when to ask the server to replay (`sync {after}`):
//!
//! - a seq ≤ `last_seq` is a duplicate and is dropped;
//! - `last_seq + 1` is delivered, followed by any buffered successors;
//! - a seq beyond `last_seq + 1` reveals a gap: the event is buffered (at
//!   most [`DEFAULT_BUFFER_CAP`] of them; past that the highest are dropped,
//!   the replay brings them back) and a sync after `last_seq` is requested;
//! - events without a seq are passed through at once, except `synced`,
//!   which ends a replay batch: if `more`, the next batch is requested
//!   (unless a request from at least that far is already out, so duplicate
//!   replays do not fork into parallel chains); if the batch left a gap, a
//!   sync is requested.
//!
//! Sync requests are rate-limited: while a replay is in flight and making
//! progress no gap sync is sent, and otherwise at most one per
//! [`Timing::gap_sync_every`], an interval that doubles (up to 8×) with
//! each sync that brings no progress. [`Inbox::tick`], called periodically,
//! covers what arrivals cannot: buffered events stuck behind a gap
//! ([`Timing::stall_after`]), a replay whose `synced` never came
//! ([`Timing::sync_timeout`]), and an idle inbox whose last event may have
//! been lost ([`Timing::idle_sync`]).
//!
//! # Pruned history
//!
//! The server prunes events every device *that has ever acked* has acked,
//! so a device that is new (or lost its state) may ask for seqs that no
//! longer exist. The server says so: its `synced` carries `pruned_through`,
//! and the machine moves `last_seq` there and reports the range in
//! [`Accepted::skipped`]. Nothing is ever skipped on a guess, because a gap
//! may just as well be an event lost in transit.
//!
//! # Replay size
//!
//! A replay is a burst, and a broker that drops what a slow subscriber has
//! not read yet drops the head of that burst, the very events being asked
//! for. So the batch size asked for ([`Inbox::sync_window`]) halves, down
//! to [`MIN_SYNC_WINDOW`], each time a replay ends with a gap, and doubles
//! back towards [`SYNC_BATCH`] each time one arrives whole.
//!
//! # Server faults
//!
//! Values no honest server sends are refused, not acted on, and reported in
//! [`Accepted::fault`] (the app gets them as `AppEvent::ServerFault`): a seq
//! outside `1..=MAX_SEQ`, a `synced` whose `through` or `pruned_through` is
//! outside `0..=MAX_SEQ` or whose `pruned_through` exceeds its `through`
//! (the server replays from its floor, so `through` is never below it), and
//! an event whose seq lies in a range the server said it had pruned. The
//! last is how a lie that passes the other checks still shows: a
//! `pruned_through` far ahead of the real inbox would make every later
//! event look like a duplicate, and they would vanish without a word.
//!
//! Time is passed in as [`Instant`]s so the machine is deterministic under
//! test.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use protocol::messages::{Event, InboxEvent, SyncedEvent, MAX_SEQ, SYNC_BATCH};

/// Most out-of-order events held while waiting for a gap to fill; past
/// that the highest are dropped (a replay brings them back).
pub const DEFAULT_BUFFER_CAP: usize = 10_000;

/// The smallest replay batch asked for.
pub const MIN_SYNC_WINDOW: usize = 10;
/// The gap sync interval doubles at most this many times (to 8×) while
/// syncs bring no progress.
const MAX_BACKOFF_DOUBLINGS: u32 = 3;

/// The timeouts of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Least time between two gap syncs while no progress is made; doubled
    /// after each fruitless sync, up to 8×.
    pub gap_sync_every: Duration,
    /// With events buffered behind a gap, re-sync after this long without
    /// progress.
    pub stall_after: Duration,
    /// Re-sync when a requested replay has shown nothing (no event, no
    /// `synced`) for this long.
    pub sync_timeout: Duration,
    /// Sync anyway after this long with nothing arriving, in case the last
    /// event was lost. Zero disables it.
    pub idle_sync: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            gap_sync_every: Duration::from_millis(500),
            stall_after: Duration::from_secs(1),
            sync_timeout: Duration::from_secs(3),
            idle_sync: Duration::from_secs(30),
        }
    }
}

/// What one arrival produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Events for the app, in order. Those with a seq are contiguous (but
    /// for `skipped`) and start at the previous `last_seq + 1`.
    pub deliver: Vec<InboxEvent>,
    /// Publish `sync {after}` with this value.
    pub sync_after: Option<i64>,
    /// Seqs given up on as pruned by the server (see the module docs).
    pub skipped: Option<RangeInclusive<i64>>,
    /// The arrival was refused as impossible (see the module docs).
    pub fault: Option<ServerFault>,
}

/// An inbox value no honest server sends; the event carrying it was not
/// acted on. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerFault {
    #[error("the server sent inbox seq {0}; seqs run from 1 to {MAX_SEQ}")]
    Seq(i64),
    #[error(
        "the server ended a replay with through {through} and pruned_through {pruned_through:?}; \
         both lie in 0..={MAX_SEQ} and pruned_through is never past through"
    )]
    Synced {
        through: i64,
        pruned_through: Option<i64>,
    },
    #[error(
        "the server sent inbox seq {seq} after saying it had pruned seqs {} to {}; \
         events it sends from now on may be missed",
        pruned.start(), pruned.end()
    )]
    Pruned {
        seq: i64,
        pruned: RangeInclusive<i64>,
    },
}

/// The last sync request sent.
#[derive(Debug, Clone, Copy)]
struct SyncMark {
    at: Instant,
    after: i64,
}

/// The seq tracker. See the module docs.
#[derive(Debug)]
pub struct Inbox {
    last: i64,
    buffer: BTreeMap<i64, InboxEvent>,
    cap: usize,
    timing: Timing,
    /// Last time anything arrived (for idle and sync timeouts).
    last_arrival: Instant,
    /// Last time `last` moved forward (for stalls).
    last_progress: Instant,
    last_sync: Option<SyncMark>,
    /// A sync was sent and its `synced` has not arrived yet.
    awaiting_synced: bool,
    /// Syncs sent since `last` last moved.
    fruitless_syncs: u32,
    /// Events asked for per replay; see the module docs.
    window: usize,
    /// The last range skipped as pruned: no event in it may arrive since.
    pruned: Option<RangeInclusive<i64>>,
}

impl Inbox {
    /// A tracker that has delivered everything up to `last_seq`.
    pub fn new(last_seq: i64, now: Instant) -> Inbox {
        Inbox::with_limits(last_seq, Timing::default(), DEFAULT_BUFFER_CAP, now)
    }

    /// Like [`Inbox::new`] with explicit timeouts and buffer cap (≥ 1).
    pub fn with_limits(last_seq: i64, timing: Timing, cap: usize, now: Instant) -> Inbox {
        Inbox {
            last: last_seq.max(0),
            buffer: BTreeMap::new(),
            cap: cap.max(1),
            timing,
            last_arrival: now,
            last_progress: now,
            last_sync: None,
            awaiting_synced: false,
            fruitless_syncs: 0,
            window: SYNC_BATCH,
            pruned: None,
        }
    }

    /// The highest seq delivered, contiguously from 1.
    pub fn last_seq(&self) -> i64 {
        self.last
    }

    /// How many out-of-order events are waiting for a gap to fill.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Is a replay requested and its `synced` not yet seen?
    pub fn awaiting_synced(&self) -> bool {
        self.awaiting_synced
    }

    /// Takes in one event from the inbox topic.
    pub fn accept(&mut self, event: InboxEvent, now: Instant) -> Accepted {
        self.last_arrival = now;
        let mut out = Accepted::default();
        match event.seq {
            Some(seq) if !(1..=MAX_SEQ).contains(&seq) => out.fault = Some(ServerFault::Seq(seq)),
            Some(seq) if self.pruned.as_ref().is_some_and(|r| r.contains(&seq)) => {
                let pruned = self.pruned.clone().unwrap_or(seq..=seq);
                out.fault = Some(ServerFault::Pruned { seq, pruned });
            }
            Some(seq) if seq <= self.last => {}
            Some(seq) if seq == self.last + 1 => {
                out.deliver.push(event);
                self.last = seq;
                self.release(&mut out, now);
            }
            Some(seq) => {
                self.buffer_event(seq, event);
                out.sync_after = self.gap_sync(now);
            }
            None => match event.event {
                Event::Synced(synced) => self.on_synced(synced, now, &mut out),
                _ => out.deliver.push(event),
            },
        }
        out
    }

    /// Called periodically (every few hundred ms) while connected: returns
    /// a sync to publish when a gap has stalled, a replay went silent, or
    /// the inbox has been idle for [`Timing::idle_sync`].
    pub fn tick(&mut self, now: Instant) -> Option<i64> {
        let last_sync_at = self.last_sync.map(|m| m.at);
        let quiet_since = last_sync_at.map_or(self.last_arrival, |at| at.max(self.last_arrival));
        if self.awaiting_synced && now >= quiet_since + self.timing.sync_timeout {
            return Some(self.mark_sync(now));
        }
        if !self.buffer.is_empty() && now >= self.last_progress + self.timing.stall_after {
            return self.gap_sync(now);
        }
        if !self.timing.idle_sync.is_zero()
            && !self.awaiting_synced
            && now >= quiet_since + self.timing.idle_sync
        {
            return Some(self.mark_sync(now));
        }
        None
    }

    /// An unconditional sync (after every CONNACK): returns `after`.
    pub fn sync_now(&mut self, now: Instant) -> i64 {
        self.mark_sync(now)
    }

    /// Forgets buffered events and goes back to `last_seq` (when the
    /// delivered events could not be stored). A sync is considered in
    /// flight, so [`Inbox::tick`] re-syncs after [`Timing::sync_timeout`].
    pub fn rewind(&mut self, last_seq: i64, now: Instant) {
        self.last = last_seq.max(0);
        self.buffer.clear();
        self.last_sync = Some(SyncMark {
            at: now,
            after: self.last,
        });
        self.last_progress = now;
        self.awaiting_synced = true;
    }

    /// After `last` moved: delivers the buffered successors and resets the
    /// no-progress bookkeeping.
    fn release(&mut self, out: &mut Accepted, now: Instant) {
        while let Some(next) = self.buffer.remove(&(self.last + 1)) {
            out.deliver.push(next);
            self.last += 1;
        }
        self.last_progress = now;
        self.fruitless_syncs = 0;
    }

    fn on_synced(&mut self, synced: SyncedEvent, now: Instant, out: &mut Accepted) {
        let plausible = (0..=MAX_SEQ).contains(&synced.through)
            && synced
                .pruned_through
                .filter(|floor| !(0..=synced.through).contains(floor))
                .is_none();
        if !plausible {
            out.fault = Some(ServerFault::Synced {
                through: synced.through,
                pruned_through: synced.pruned_through,
            });
            return;
        }
        if let Some(floor) = synced.pruned_through.filter(|&floor| floor > self.last) {
            self.pruned = Some(self.last + 1..=floor);
            out.skipped = Some(self.last + 1..=floor);
            self.last = floor;
            self.buffer.retain(|&seq, _| seq > floor);
            self.release(out, now);
        }
        let whole = synced.through <= self.last;
        self.window = if whole {
            (self.window * 2).min(SYNC_BATCH)
        } else {
            (self.window / 2).max(MIN_SYNC_WINDOW)
        };
        if synced.more {
            // A request from `through` or beyond is already out when this is
            // a late or duplicate reply: asking again would start a second
            // chain of batches.
            let covered = self.last_sync.is_some_and(|m| m.after >= synced.through);
            if !covered {
                out.sync_after = Some(self.mark_sync(now));
            }
        } else {
            self.awaiting_synced = false;
            if synced.through > self.last || !self.buffer.is_empty() {
                out.sync_after = self.gap_sync(now);
            }
        }
    }

    /// How many events the next replay should ask for.
    pub fn sync_window(&self) -> usize {
        self.window
    }

    fn buffer_event(&mut self, seq: i64, event: InboxEvent) {
        if self.buffer.contains_key(&seq) {
            return;
        }
        if self.buffer.len() >= self.cap {
            // Keep the lowest seqs: they are the next to become deliverable.
            match self.buffer.last_key_value() {
                Some((&highest, _)) if seq < highest => {
                    self.buffer.remove(&highest);
                }
                _ => return,
            }
        }
        self.buffer.insert(seq, event);
    }

    /// A sync for a gap, unless rate-limited: while a replay is in flight
    /// and made progress recently, wait for it; otherwise at most one per
    /// `gap_sync_every`, doubled for each earlier sync that brought nothing.
    fn gap_sync(&mut self, now: Instant) -> Option<i64> {
        let every = self.timing.gap_sync_every;
        let doublings = self
            .fruitless_syncs
            .saturating_sub(1)
            .min(MAX_BACKOFF_DOUBLINGS);
        let allowed = match self.last_sync {
            None => true,
            Some(_) if !self.awaiting_synced => true,
            Some(mark) => {
                now >= mark.at + every * (1 << doublings) && now >= self.last_progress + every
            }
        };
        allowed.then(|| self.mark_sync(now))
    }

    fn mark_sync(&mut self, now: Instant) -> i64 {
        self.last_sync = Some(SyncMark {
            at: now,
            after: self.last,
        });
        self.awaiting_synced = true;
        self.fruitless_syncs = self.fruitless_syncs.saturating_add(1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::messages::{AckEvent, MessageEvent, ReceiptEvent, ReceiptStatus, SyncedEvent};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn msg(seq: i64) -> InboxEvent {
        InboxEvent {
            seq: Some(seq),
            event: Event::Message(MessageEvent {
                expires_at: None,
                id: seq.wrapping_mul(10),
                client_id: format!("c{seq}"),
                from: "bob".into(),
                to: Some("alice".into()),
                group: None,
                body: format!("body {seq}"),
                media: None,
                sent_at: seq,
            }),
        }
    }

    fn synced(through: i64, more: bool) -> InboxEvent {
        InboxEvent {
            seq: None,
            event: Event::Synced(SyncedEvent {
                through,
                more,
                pruned_through: None,
            }),
        }
    }

    fn seqless_ack(client_id: &str) -> InboxEvent {
        InboxEvent {
            seq: None,
            event: Event::Ack(AckEvent {
                expires_at: None,
                id: 1,
                client_id: client_id.into(),
                to: Some("bob".into()),
                group: None,
                body: "b".into(),
                media: None,
                sent_at: 1,
            }),
        }
    }

    fn seqs(accepted: &Accepted) -> Vec<Option<i64>> {
        accepted.deliver.iter().map(|e| e.seq).collect()
    }

    /// Feeds `order` at time `now` and returns every delivered seq and every sync.
    fn feed(inbox: &mut Inbox, order: &[i64], now: Instant) -> (Vec<i64>, Vec<i64>) {
        let mut delivered = Vec::new();
        let mut syncs = Vec::new();
        for &s in order {
            let out = inbox.accept(msg(s), now);
            delivered.extend(out.deliver.iter().map(|e| e.seq.unwrap()));
            syncs.extend(out.sync_after);
        }
        (delivered, syncs)
    }

    #[test]
    fn in_order_events_are_delivered_one_by_one() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        for s in 1..=5 {
            let out = inbox.accept(msg(s), t);
            assert_eq!(out.deliver, [msg(s)]);
            assert_eq!(out.sync_after, None);
            assert_eq!(inbox.last_seq(), s);
        }
        assert_eq!(inbox.buffered(), 0);
    }

    #[test]
    fn a_restart_resumes_after_the_persisted_last_seq() {
        let t = Instant::now();
        let mut inbox = Inbox::new(41, t);
        assert_eq!(inbox.last_seq(), 41);
        assert!(inbox.accept(msg(41), t).deliver.is_empty());
        assert_eq!(seqs(&inbox.accept(msg(42), t)), [Some(42)]);
        // A negative persisted value is treated as nothing delivered.
        assert_eq!(Inbox::new(-3, t).last_seq(), 0);
    }

    #[test]
    fn duplicates_are_dropped_silently() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        let (delivered, syncs) = feed(&mut inbox, &[1, 1, 2, 1, 2, 3, 3], t);
        assert_eq!(delivered, [1, 2, 3]);
        assert!(syncs.is_empty());
    }

    #[test]
    fn impossible_seqs_are_refused_as_server_faults_and_change_nothing() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1, 2], t);
        for seq in [0, -1, i64::MIN, MAX_SEQ + 1, i64::MAX] {
            let out = inbox.accept(msg(seq), t);
            assert_eq!(out.fault, Some(ServerFault::Seq(seq)));
            assert!(out.deliver.is_empty() && out.sync_after.is_none());
        }
        assert_eq!((inbox.last_seq(), inbox.buffered()), (2, 0));
        assert_eq!(feed(&mut inbox, &[3], t).0, [3]);
    }

    #[test]
    fn an_impossible_pruned_through_is_refused_and_later_events_still_arrive() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        feed(&mut inbox, &[1, 2], t);
        let lies = [
            (i64::MAX, Some(i64::MAX)),
            (2, Some(i64::MAX)),
            (2, Some(3)),
            (2, Some(-1)),
            (-5, None),
        ];
        for (through, pruned_through) in lies {
            let out = inbox.accept(
                InboxEvent {
                    seq: None,
                    event: Event::Synced(SyncedEvent {
                        through,
                        more: false,
                        pruned_through,
                    }),
                },
                t,
            );
            assert_eq!(
                out.fault,
                Some(ServerFault::Synced {
                    through,
                    pruned_through
                })
            );
            assert_eq!((out.skipped, out.sync_after), (None, None));
        }
        assert_eq!(inbox.last_seq(), 2);
        assert_eq!(feed(&mut inbox, &[3, 4], t).0, [3, 4]);
    }

    #[test]
    fn an_event_the_server_said_it_pruned_is_reported_not_swallowed() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        let lie = InboxEvent {
            seq: None,
            event: Event::Synced(SyncedEvent {
                through: 1_000_000,
                more: false,
                pruned_through: Some(1_000_000),
            }),
        };
        assert_eq!(inbox.accept(lie, t).skipped, Some(1..=1_000_000));
        let out = inbox.accept(msg(7), t);
        assert_eq!(
            out.fault,
            Some(ServerFault::Pruned {
                seq: 7,
                pruned: 1..=1_000_000
            })
        );
        assert!(out.deliver.is_empty());
    }

    #[test]
    fn a_gap_buffers_and_asks_for_a_sync_after_the_last_contiguous_seq() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1, 2], t);
        let out = inbox.accept(msg(5), t);
        assert!(out.deliver.is_empty());
        assert_eq!(out.sync_after, Some(2));
        assert_eq!(inbox.buffered(), 1);
        assert!(inbox.awaiting_synced());
        // The replay fills the gap; the buffered 5 follows in order.
        let (delivered, syncs) = feed(&mut inbox, &[3, 4], t + ms(10));
        assert_eq!(delivered, [3, 4, 5]);
        assert!(syncs.is_empty());
        assert_eq!(inbox.last_seq(), 5);
        assert_eq!(inbox.buffered(), 0);
        // The replayed copy of 5 is a duplicate.
        assert!(inbox.accept(msg(5), t + ms(11)).deliver.is_empty());
    }

    #[test]
    fn reordered_events_come_out_in_seq_order() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        let (delivered, _) = feed(&mut inbox, &[3, 1, 5, 2, 4, 4, 6], t);
        assert_eq!(delivered, [1, 2, 3, 4, 5, 6]);
        assert_eq!(inbox.buffered(), 0);
    }

    fn permutations(items: &[i64]) -> Vec<Vec<i64>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                all.push(tail);
            }
        }
        all
    }

    #[test]
    fn every_permutation_of_a_burst_is_delivered_exactly_once_in_order() {
        let t = Instant::now();
        let items = [1, 2, 3, 4, 5];
        let orders = permutations(&items);
        assert_eq!(orders.len(), 120);
        for order in orders {
            // Each order twice over: the second copy is all duplicates.
            let mut inbox = Inbox::new(0, t);
            let doubled: Vec<i64> = order.iter().chain(&order).copied().collect();
            let (delivered, _) = feed(&mut inbox, &doubled, t);
            assert_eq!(delivered, items, "{order:?}");
            assert_eq!(inbox.buffered(), 0);
        }
    }

    #[test]
    fn gap_syncs_are_rate_limited_while_nothing_progresses() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1], t);
        assert_eq!(inbox.accept(msg(3), t).sync_after, Some(1));
        // More out-of-order arrivals right after: no new sync.
        assert_eq!(inbox.accept(msg(4), t + ms(100)).sync_after, None);
        assert_eq!(inbox.accept(msg(5), t + ms(499)).sync_after, None);
        // Half a second without progress: one more.
        assert_eq!(inbox.accept(msg(6), t + ms(500)).sync_after, Some(1));
        assert_eq!(inbox.accept(msg(7), t + ms(600)).sync_after, None);
        // Each fruitless sync doubles the wait: 1 s, 2 s, 4 s, then 4 s.
        assert_eq!(inbox.accept(msg(8), t + ms(1_499)).sync_after, None);
        assert_eq!(inbox.accept(msg(8), t + ms(1_500)).sync_after, Some(1));
        assert_eq!(inbox.accept(msg(9), t + ms(3_499)).sync_after, None);
        assert_eq!(inbox.accept(msg(9), t + ms(3_500)).sync_after, Some(1));
        assert_eq!(inbox.accept(msg(9), t + ms(7_500)).sync_after, Some(1));
        assert_eq!(inbox.accept(msg(9), t + ms(11_499)).sync_after, None);
        assert_eq!(inbox.accept(msg(9), t + ms(11_500)).sync_after, Some(1));
        // Progress resets the interval.
        feed(&mut inbox, &[2], t + ms(12_000));
        assert_eq!(inbox.last_seq(), 9);
        assert_eq!(
            inbox.accept(msg(11), t + ms(12_000)).sync_after,
            None,
            "the replay is progressing"
        );
        assert_eq!(inbox.accept(msg(12), t + ms(12_500)).sync_after, Some(9));
        assert_eq!(inbox.accept(msg(12), t + ms(13_000)).sync_after, Some(9));
    }

    #[test]
    fn no_gap_sync_while_a_replay_is_making_progress() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.accept(msg(700), t).sync_after, Some(0));
        // The replay streams in, interleaved with more live events beyond it.
        for i in 1..=100 {
            let now = t + ms(10 * i as u64);
            assert_eq!(inbox.accept(msg(i), now).sync_after, None, "{i}");
            assert_eq!(inbox.accept(msg(700 + i), now).sync_after, None, "{i}");
        }
        assert_eq!(inbox.last_seq(), 100);
    }

    #[test]
    fn a_gap_after_a_completed_sync_syncs_at_once() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.sync_now(t), 0);
        assert_eq!(inbox.accept(synced(0, false), t), Accepted::default());
        assert!(!inbox.awaiting_synced());
        assert_eq!(inbox.accept(msg(2), t + ms(1)).sync_after, Some(0));
    }

    #[test]
    fn synced_with_more_asks_for_the_next_batch_after_what_was_delivered() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        let order: Vec<i64> = (1..=500).collect();
        feed(&mut inbox, &order, t);
        let out = inbox.accept(synced(500, true), t);
        assert!(out.deliver.is_empty(), "synced is not an app event");
        assert_eq!(out.sync_after, Some(500));
        assert!(inbox.awaiting_synced());
        // If part of the batch was lost, the next sync starts before the hole.
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        let mut order: Vec<i64> = (1..=500).collect();
        order.retain(|&s| s != 250);
        feed(&mut inbox, &order, t);
        assert_eq!(inbox.accept(synced(500, true), t).sync_after, Some(249));
    }

    #[test]
    fn a_duplicate_or_late_synced_does_not_fork_a_second_chain() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        let batch: Vec<i64> = (1..=500).collect();
        feed(&mut inbox, &batch, t);
        assert_eq!(inbox.accept(synced(500, true), t).sync_after, Some(500));
        // The same replay again (two syncs crossed): already asked from 500.
        feed(&mut inbox, &batch, t);
        assert_eq!(inbox.accept(synced(500, true), t).sync_after, None);
        // Even once the next batch is under way.
        let next: Vec<i64> = (501..=600).collect();
        feed(&mut inbox, &next, t);
        assert_eq!(inbox.accept(synced(500, true), t).sync_after, None);
        assert!(inbox.awaiting_synced());
        // The real end of the next batch continues the chain.
        let rest: Vec<i64> = (601..=1000).collect();
        feed(&mut inbox, &rest, t);
        assert_eq!(inbox.accept(synced(1000, true), t).sync_after, Some(1000));
    }

    #[test]
    fn history_the_server_says_it_pruned_is_skipped() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.sync_now(t), 0);
        feed(&mut inbox, &[101, 102], t);
        let pruned = InboxEvent {
            seq: None,
            event: Event::Synced(SyncedEvent {
                through: 102,
                more: false,
                pruned_through: Some(100),
            }),
        };
        let out = inbox.accept(pruned, t);
        assert_eq!(out.skipped, Some(1..=100));
        assert_eq!(
            out.deliver
                .iter()
                .map(|e| e.seq.unwrap())
                .collect::<Vec<_>>(),
            [101, 102]
        );
        assert_eq!(out.sync_after, None);
        assert_eq!(inbox.last_seq(), 102);
        // A floor below what this device has is no news.
        let stale = InboxEvent {
            seq: None,
            event: Event::Synced(SyncedEvent {
                through: 102,
                more: false,
                pruned_through: Some(50),
            }),
        };
        assert_eq!(inbox.accept(stale, t).skipped, None);
    }

    #[test]
    fn gaps_are_never_skipped_without_the_servers_word() {
        let t = Instant::now();
        let mut inbox = Inbox::new(5, t);
        for round in 0..20 {
            let now = t + ms(10_000 * round);
            inbox.sync_now(now);
            feed(&mut inbox, &[7, 8], now);
            let out = inbox.accept(synced(8, false), now);
            assert_eq!(out.skipped, None);
            assert!(out.deliver.is_empty());
        }
        assert_eq!(inbox.last_seq(), 5);
        let (delivered, _) = feed(&mut inbox, &[6], t);
        assert_eq!(delivered, [6, 7, 8]);
    }

    #[test]
    fn lossy_replays_ask_for_smaller_batches_then_grow_back() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.sync_window(), SYNC_BATCH);
        let mut expected = SYNC_BATCH;
        for _ in 0..10 {
            inbox.sync_now(t);
            feed(&mut inbox, &[3], t);
            inbox.accept(synced(3, false), t);
            expected = (expected / 2).max(MIN_SYNC_WINDOW);
            assert_eq!(inbox.sync_window(), expected);
        }
        assert_eq!(inbox.sync_window(), MIN_SYNC_WINDOW);
        feed(&mut inbox, &[1, 2], t);
        inbox.accept(synced(3, false), t);
        assert_eq!(
            inbox.sync_window(),
            2 * MIN_SYNC_WINDOW,
            "a whole replay doubles the batch"
        );
    }

    #[test]
    fn synced_through_beyond_last_seq_reveals_lost_events() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        feed(&mut inbox, &[1, 2], t);
        // 3 was lost: the replay said it went through 3.
        assert_eq!(inbox.accept(synced(3, false), t).sync_after, Some(2));
        // Nothing beyond: done.
        let mut inbox = Inbox::new(0, t);
        inbox.sync_now(t);
        feed(&mut inbox, &[1, 2, 3], t);
        assert_eq!(inbox.accept(synced(3, false), t).sync_after, None);
        assert!(!inbox.awaiting_synced());
        // A `through` behind live events already delivered is fine.
        assert_eq!(inbox.accept(synced(1, false), t).sync_after, None);
    }

    #[test]
    fn seqless_events_pass_through_at_once() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1, 3], t);
        let out = inbox.accept(seqless_ack("m1"), t);
        assert_eq!(out.deliver, [seqless_ack("m1")]);
        assert_eq!(out.sync_after, None);
        // They do not move last_seq and are not deduplicated here.
        assert_eq!(inbox.accept(seqless_ack("m1"), t).deliver.len(), 1);
        assert_eq!(inbox.last_seq(), 1);
        assert_eq!(inbox.buffered(), 1);
    }

    #[test]
    fn other_event_kinds_are_ordered_by_seq_like_messages() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        let receipt = InboxEvent {
            seq: Some(2),
            event: Event::Receipt(ReceiptEvent {
                status: ReceiptStatus::Delivered,
                peer: Some("bob".into()),
                group: None,
                up_to: 9,
                at: 1,
            }),
        };
        assert!(inbox.accept(receipt.clone(), t).deliver.is_empty());
        let out = inbox.accept(msg(1), t);
        assert_eq!(out.deliver, [msg(1), receipt]);
    }

    #[test]
    fn the_buffer_is_capped_keeping_the_lowest_seqs() {
        let t = Instant::now();
        let mut inbox = Inbox::with_limits(0, Timing::default(), 3, t);
        feed(&mut inbox, &[10, 11, 12], t);
        assert_eq!(inbox.buffered(), 3);
        // Higher than everything held: dropped.
        feed(&mut inbox, &[20], t);
        assert_eq!(inbox.buffered(), 3);
        // Lower than the highest held: replaces it.
        feed(&mut inbox, &[5], t);
        assert_eq!(inbox.buffered(), 3);
        let (delivered, _) = feed(&mut inbox, &[1, 2, 3, 4], t);
        assert_eq!(delivered, [1, 2, 3, 4, 5]);
        // 10 and 11 are still held; 12 and 20 come back with the replay.
        let (delivered, _) = feed(&mut inbox, &[6, 7, 8, 9], t);
        assert_eq!(delivered, [6, 7, 8, 9, 10, 11]);
        let (delivered, _) = feed(&mut inbox, &[12], t);
        assert_eq!(delivered, [12]);
        assert_eq!(inbox.buffered(), 0);
    }

    #[test]
    fn a_full_buffer_still_asks_for_a_sync() {
        let t = Instant::now();
        let mut inbox = Inbox::with_limits(0, Timing::default(), 1, t);
        assert_eq!(inbox.accept(msg(5), t).sync_after, Some(0));
        assert_eq!(inbox.accept(msg(6), t + ms(600)).sync_after, Some(0));
        assert_eq!(inbox.buffered(), 1);
    }

    #[test]
    fn tick_resyncs_a_stalled_gap() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1], t);
        assert_eq!(inbox.accept(msg(3), t).sync_after, Some(1));
        assert_eq!(inbox.tick(t + ms(999)), None);
        assert_eq!(inbox.tick(t + ms(1_000)), Some(1));
        // Rate-limited (and backing off) afterwards.
        assert_eq!(inbox.tick(t + ms(1_500)), None);
        assert_eq!(inbox.tick(t + ms(2_000)), Some(1));
        // Once the gap is filled nothing more is asked for.
        feed(&mut inbox, &[2], t + ms(2_100));
        assert_eq!(inbox.last_seq(), 3);
        inbox.accept(synced(3, false), t + ms(2_100));
        assert_eq!(inbox.tick(t + ms(5_000)), None);
    }

    #[test]
    fn tick_resyncs_when_a_replay_goes_silent() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.sync_now(t), 0);
        assert_eq!(inbox.tick(t + ms(2_999)), None);
        assert_eq!(inbox.tick(t + ms(3_000)), Some(0));
        // Events arriving keep the replay alive.
        feed(&mut inbox, &[1], t + ms(5_000));
        assert_eq!(inbox.tick(t + ms(7_999)), None);
        assert_eq!(inbox.tick(t + ms(8_000)), Some(1));
        // A synced ends it.
        inbox.accept(synced(1, false), t + ms(14_001));
        assert_eq!(inbox.tick(t + ms(20_000)), None);
    }

    #[test]
    fn tick_syncs_an_idle_inbox_to_catch_a_lost_last_event() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        assert_eq!(inbox.tick(t + ms(29_999)), None);
        assert_eq!(inbox.tick(t + ms(30_000)), Some(0));
        inbox.accept(synced(0, false), t + ms(30_010));
        assert_eq!(inbox.tick(t + ms(59_000)), None);
        assert_eq!(inbox.tick(t + ms(60_010)), Some(0));
        // Disabled with a zero interval.
        let timing = Timing {
            idle_sync: Duration::ZERO,
            ..Timing::default()
        };
        let mut inbox = Inbox::with_limits(0, timing, 10, t);
        assert_eq!(inbox.tick(t + Duration::from_secs(3_600)), None);
    }

    #[test]
    fn rewind_forgets_and_resyncs_later() {
        let t = Instant::now();
        let mut inbox = Inbox::new(0, t);
        feed(&mut inbox, &[1, 2, 3, 5], t);
        inbox.rewind(1, t);
        assert_eq!(inbox.last_seq(), 1);
        assert_eq!(inbox.buffered(), 0);
        assert_eq!(inbox.tick(t + ms(2_999)), None);
        assert_eq!(inbox.tick(t + ms(3_000)), Some(1));
        let (delivered, _) = feed(&mut inbox, &[2, 3, 4, 5], t + ms(3_100));
        assert_eq!(delivered, [2, 3, 4, 5]);
    }
}
