//! Chat load: many users on real MQTT connections speaking the client
//! protocol, timing each message from send to ✓, to the recipient, and to
//! ✓✓ back at the sender.
//!
//! The bench clients are deliberately lean (no outbox on disk, no resend):
//! anything the system loses shows up as loss instead of being repaired,
//! which is what a bench must report. They ack their inbox as the SDK does
//! (the highest gap-free seq, at once after [`client::ACK_BURST`] events,
//! else [`client::ACK_DELAY`] after the first unacked one), so the server
//! sees the ack traffic of real clients.
//!
//! At a fixed rate each user sends on its own timer, and the timers are
//! staggered evenly over one period: 1,000/s from 100 users arrives as one
//! message every millisecond, not as 100 at once ten times a second.

use protocol::messages::{
    AckEvent, AckRequest, Event, InboxEvent, ReceiptEvent, SendRequest, SyncRequest,
};
use protocol::names::UserName;
use protocol::topics::user_topic;
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::groups::Plan;
use super::stats::Samples;

/// The device part of every bench client id (`{user}.bench`).
const DEVICE: &str = "bench";

/// Who talks to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Pattern {
    /// Users in fixed pairs, each writing to the other.
    Pairs,
    /// Each message to a random other user.
    Random,
    /// Users in groups of `--group-size`, each writing to its group: every
    /// message is one send and `size − 1` deliveries.
    Groups,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub pattern: Pattern,
    /// Messages per second over all senders; `None` = as fast as it goes.
    pub rate: Option<f64>,
    /// Message body size in bytes.
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Most unacknowledged sends per user.
    pub window: usize,
    /// The server's process, when it runs on this machine: its CPU is
    /// measured beside the bench's own.
    pub server_pid: Option<u32>,
    /// With [`Pattern::Groups`]: the groups, already created on the server.
    pub groups: Arc<Plan>,
}

impl LoadConfig {
    /// Deliveries one message makes: one, or every other member of a group.
    fn fanout(&self, sender: usize) -> u64 {
        match self.pattern {
            Pattern::Groups => self.groups.recipients(self.groups.group_of[sender], sender).count() as u64,
            Pattern::Pairs | Pattern::Random => 1,
        }
    }
}

/// Where one of my messages went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    /// A user, by index into the names.
    User(usize),
    /// A group, by index into [`Plan::groups`].
    Group(usize),
}

/// What one run measured.
#[derive(Default)]
pub struct LoadResult {
    pub sent: u64,
    /// Deliveries the sent messages owe: `sent`, or in groups each message
    /// once per other member.
    pub expected: u64,
    /// Deliveries that arrived (each message event once per recipient).
    pub received: u64,
    pub lost: u64,
    /// Each lost send, for the report (the first few are printed).
    pub lost_sends: Vec<LostSend>,
    pub duplicates: u64,
    pub order_violations: u64,
    pub send_to_ack: Samples,
    pub send_to_deliver: Samples,
    pub send_to_receipt: Samples,
    /// Messages whose ✓✓ came back in each second of the run.
    pub receipts_per_second: Vec<u64>,
    /// ✓✓ per second over the measured window (after warm-up).
    pub sustained_per_second: f64,
    /// Message events received per second over the measured window: equal
    /// to the ✓✓ rate for 1:1 chats, that times the fan-out in groups.
    pub deliveries_per_second: f64,
    /// CPU the bench's own clients used over the measured window, in
    /// percent of one core: on a shared machine it is taken from the server.
    pub bench_cpu_percent: Option<f64>,
    /// The same for the server, when it runs here.
    pub server_cpu_percent: Option<f64>,
}

/// A send whose message never reached its recipient.
#[derive(Debug, Clone, Serialize)]
pub struct LostSend {
    pub sender: String,
    /// The recipient that never got it (a member, for a group message).
    pub peer: String,
    /// The client message id, `{sender}-{n}`.
    pub client_id: String,
    /// Whether the server's ack (✓) came, which means it was stored.
    pub acked: bool,
}

/// The chat a message, ack or receipt belongs to, as receipts name it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chat {
    Peer(String),
    /// A group, by the server's id.
    Group(i64),
}

/// One user's view of the run.
#[derive(Default)]
struct Ledger {
    /// My send number → when I sent it, and to whom.
    sent_at: HashMap<u64, (Instant, To)>,
    /// Server id of my message → (its chat, my send number).
    by_id: BTreeMap<i64, (Chat, u64)>,
    /// My send numbers whose ✓✓ came.
    receipted: HashSet<u64>,
    /// Window permits of sends awaiting their ✓; dropping one frees a slot.
    permits: HashMap<u64, OwnedSemaphorePermit>,
    /// Per sender: send numbers received (for duplicates) and the last one (for order).
    received: HashMap<String, (HashSet<u64>, u64)>,
    duplicates: u64,
    order_violations: u64,
    /// The inbox: the highest seq below which none is missing, and the
    /// seqs seen above it (a gap the broker may still fill).
    contiguous_seq: i64,
    seqs_above: std::collections::BTreeSet<i64>,
    send_to_ack: Samples,
    send_to_deliver: Samples,
    send_to_receipt: Samples,
}

impl Ledger {
    /// Inbox event `seq` arrived: the contiguous seq moves past it once
    /// nothing below it is missing.
    fn saw(&mut self, seq: i64) {
        if seq > self.contiguous_seq {
            self.seqs_above.insert(seq);
        }
        while self.seqs_above.first() == Some(&(self.contiguous_seq + 1)) {
            self.seqs_above.pop_first();
            self.contiguous_seq += 1;
        }
        // Seqs at or below it (a pruned range skipped) are done with.
        while self.seqs_above.first().is_some_and(|&s| s <= self.contiguous_seq) {
            self.seqs_above.pop_first();
        }
    }
}

/// Counters shared by every client.
struct Shared {
    start: Instant,
    measure_from: Instant,
    stop_sending: AtomicBool,
    sent: AtomicU64,
    /// Deliveries owed by what was sent (see [`LoadResult::expected`]).
    expected: AtomicU64,
    received: AtomicU64,
    receipted: AtomicU64,
    receipts_per_second: Mutex<Vec<u64>>,
    /// Message events received in each second of the run.
    deliveries_per_second: Mutex<Vec<u64>>,
}

impl Shared {
    fn second(&self, at: Instant) -> usize {
        at.duration_since(self.start).as_secs() as usize
    }

    /// Counts one event in second `at` of `series`.
    fn count(&self, series: &Mutex<Vec<u64>>, at: Instant) {
        let second = self.second(at);
        let mut per_second = series.lock().unwrap_or_else(|p| p.into_inner());
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }

    /// Mean of `series` per second over `[from, until)` (seconds of the run).
    fn rate(series: &[u64], from: usize, until: usize) -> f64 {
        let total: u64 = series.iter().skip(from).take(until - from).sum();
        total as f64 / (until - from) as f64
    }
}

/// Runs the load against the broker at `mqtt` with these `(user, token)`s.
pub async fn run(
    mqtt: SocketAddr,
    users: &[(String, String)],
    config: &LoadConfig,
) -> anyhow::Result<LoadResult> {
    let names: Arc<Vec<String>> = Arc::new(users.iter().map(|(u, _)| u.clone()).collect());
    let ledgers: Vec<Arc<Mutex<Ledger>>> =
        users.iter().map(|_| Arc::new(Mutex::new(Ledger::default()))).collect();
    let connections = connect_all(mqtt, users, &ledgers).await?;
    // The run's clock starts once everyone is in: connecting a thousand
    // users is not part of the warm-up.
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        measure_from: start + config.warmup,
        stop_sending: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        received: AtomicU64::new(0),
        receipted: AtomicU64::new(0),
        receipts_per_second: Mutex::new(Vec::new()),
        deliveries_per_second: Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for ((client, eventloop), (user, ledger)) in connections.into_iter().zip(names.iter().zip(&ledgers)) {
        tasks.push(drive(user, &client, eventloop, shared.clone(), ledger.clone())?);
        clients.push(client);
    }
    // Sending starts only once every recipient is subscribed: a push
    // published before its recipient subscribes reaches nobody, and these
    // clients do not sync on connect to fetch it (the SDK does).
    let per_user_rate = config.rate.map(|r| r / users.len() as f64);
    let sending_from = tokio::time::Instant::now();
    for (index, client) in clients.into_iter().enumerate() {
        let timer = per_user_rate.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let offset = stagger(index, users.len(), period);
            let mut timer = tokio::time::interval_at(sending_from + offset, period);
            // A user held up by its window sends late, not in a burst.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        tasks.push(tokio::spawn(send_loop(
            client,
            index,
            names.clone(),
            config.clone(),
            timer,
            shared.clone(),
            ledgers[index].clone(),
        )));
    }

    // Progress while it runs.
    let total = config.warmup + config.duration;
    let mut last = (0, 0, Instant::now());
    // (wall clock, bench CPU, server CPU) when measuring began.
    let mut cpu_from = None;
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_from.is_none() && start.elapsed() >= config.warmup {
            cpu_from = Some((
                Instant::now(),
                super::server::cpu_seconds(None),
                config.server_pid.and_then(|pid| super::server::cpu_seconds(Some(pid))),
            ));
        }
        let done = shared.receipted.load(Ordering::Relaxed);
        let received = shared.received.load(Ordering::Relaxed);
        let seconds = last.2.elapsed().as_secs_f64();
        let rate = (done - last.0) as f64 / seconds;
        let deliveries = match config.pattern {
            Pattern::Groups => format!(", {:.0} deliveries/s", (received - last.1) as f64 / seconds),
            Pattern::Pairs | Pattern::Random => String::new(),
        };
        last = (done, received, Instant::now());
        let phase = if start.elapsed() < config.warmup {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{:>4.0}s {phase}] sent {} received {received} ✓✓ {} ({rate:.0}/s{deliveries})",
            start.elapsed().as_secs_f64(),
            shared.sent.load(Ordering::Relaxed),
            done
        );
    }
    let measured_until = Instant::now();
    shared.stop_sending.store(true, Ordering::SeqCst);
    let (bench_cpu_percent, server_cpu_percent) = match cpu_from {
        Some((at, bench, server)) => {
            let wall = measured_until.duration_since(at).as_secs_f64().max(0.001);
            let percent = |from: Option<f64>, to: Option<f64>| Some(100.0 * (to? - from?) / wall);
            (
                percent(bench, super::server::cpu_seconds(None)),
                percent(server, config.server_pid.and_then(|pid| super::server::cpu_seconds(Some(pid)))),
            )
        }
        None => (None, None),
    };

    // Drain: wait for what is in flight to arrive: up to 15 s after the
    // last delivery or ✓✓ came (a group's backlog drains for a while),
    // and never more than DRAIN_MAX in all.
    const QUIET: Duration = Duration::from_secs(15);
    const DRAIN_MAX: Duration = Duration::from_secs(120);
    let drain_started = Instant::now();
    let mut progress = (0, 0, Instant::now());
    while drain_started.elapsed() < DRAIN_MAX && progress.2.elapsed() < QUIET {
        let sent = shared.sent.load(Ordering::Relaxed);
        let received = shared.received.load(Ordering::Relaxed);
        let receipted = shared.receipted.load(Ordering::Relaxed);
        if received >= shared.expected.load(Ordering::Relaxed) && receipted >= sent {
            break;
        }
        if (received, receipted) != (progress.0, progress.1) {
            progress = (received, receipted, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for task in &tasks {
        task.abort();
    }

    let mut result = LoadResult {
        sent: shared.sent.load(Ordering::Relaxed),
        expected: shared.expected.load(Ordering::Relaxed),
        received: shared.received.load(Ordering::Relaxed),
        bench_cpu_percent,
        server_cpu_percent,
        ..LoadResult::default()
    };
    let ledgers: Vec<Ledger> = ledgers
        .into_iter()
        .map(|ledger| std::mem::take(&mut *ledger.lock().unwrap_or_else(|p| p.into_inner())))
        .collect();
    result.lost_sends = lost_sends(&names, &config.groups, &ledgers);
    for ledger in ledgers {
        result.duplicates += ledger.duplicates;
        result.order_violations += ledger.order_violations;
        result.send_to_ack.extend(ledger.send_to_ack);
        result.send_to_deliver.extend(ledger.send_to_deliver);
        result.send_to_receipt.extend(ledger.send_to_receipt);
    }
    result.lost = result.expected.saturating_sub(result.received);
    let series = |series: &Mutex<Vec<u64>>| series.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let per_second = series(&shared.receipts_per_second);
    let from = shared.second(shared.measure_from);
    let until = shared.second(measured_until).max(from + 1);
    result.sustained_per_second = Shared::rate(&per_second, from, until);
    result.deliveries_per_second = Shared::rate(&series(&shared.deliveries_per_second), from, until);
    result.receipts_per_second = per_second;
    Ok(result)
}

/// When user `index` of `users` first sends, into a period they all share:
/// user i at i/n of it, so their sends interleave evenly.
fn stagger(index: usize, users: usize, period: Duration) -> Duration {
    period.mul_f64(index as f64 / users.max(1) as f64)
}

/// Connects every user, a few dozen at a time; in the order of `users`.
async fn connect_all(
    mqtt: SocketAddr,
    users: &[(String, String)],
    ledgers: &[Arc<Mutex<Ledger>>],
) -> anyhow::Result<Vec<(AsyncClient, rumqttc::EventLoop)>> {
    const AT_ONCE: usize = 32;
    let mut connected = Vec::with_capacity(users.len());
    for (users, ledgers) in users.chunks(AT_ONCE).zip(ledgers.chunks(AT_ONCE)) {
        let mut chunk = tokio::task::JoinSet::new();
        for (i, ((user, token), ledger)) in users.iter().zip(ledgers).enumerate() {
            let (user, token, ledger) = (user.clone(), token.clone(), ledger.clone());
            chunk.spawn(async move { (i, connect(mqtt, &user, &token, &ledger).await) });
        }
        let mut done = chunk.join_all().await;
        done.sort_by_key(|(i, _)| *i);
        for (_, connection) in done {
            connected.push(connection?);
        }
    }
    Ok(connected)
}

/// One user's connection, subscribed to its inbox and caught up with it,
/// not yet polled by anyone.
async fn connect(
    mqtt: SocketAddr,
    user: &str,
    token: &str,
    ledger: &Mutex<Ledger>,
) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let mut options = MqttOptions::new(format!("{user}.{DEVICE}"), mqtt.ip().to_string(), mqtt.port());
    options
        .set_credentials(user, token)
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    // As the SDK does: without it, Nagle holds each packet for the
    // server's delayed ACK.
    client::config::send_without_delay(&mut eventloop);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("{user} could not connect: {e}"),
            Err(_) => anyhow::bail!("{user}: no CONNACK within 10 s"),
        }
    }
    let name = UserName::parse(user)?;
    client
        .subscribe(user_topic(&name, "inbox"), QoS::AtLeastOnce)
        .await?;
    loop {
        if let rumqttc::Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await? {
            break;
        }
    }
    catch_up(&client, &mut eventloop, &name, ledger).await?;
    Ok((client, eventloop))
}

/// The task that polls one user's connection: events into its ledger,
/// acks as the SDK sends them.
fn drive(
    user: &str,
    client: &AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    shared: Arc<Shared>,
    ledger: Arc<Mutex<Ledger>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let name = UserName::parse(user)?;
    let me = user.to_owned();
    let acker = client.clone();
    let ack_topic = user_topic(&name, "ack");
    let driver = tokio::spawn(async move {
        let mut acked_seq = 0;
        // When the oldest unacked event must be acked at the latest.
        let mut ack_due: Option<tokio::time::Instant> = None;
        loop {
            let due = ack_due;
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                        if let Ok(event) = serde_json::from_slice::<InboxEvent>(&publish.payload) {
                            on_event(&me, event, &shared, &ledger);
                        }
                        let up_to = ledger.lock().unwrap_or_else(|p| p.into_inner()).contiguous_seq;
                        if up_to - acked_seq >= client::ACK_BURST {
                            ack_due = Some(tokio::time::Instant::now());
                        } else if up_to > acked_seq && ack_due.is_none() {
                            ack_due = Some(tokio::time::Instant::now() + client::ACK_DELAY);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !shared.stop_sending.load(Ordering::Relaxed) {
                            eprintln!("{me}: connection lost: {e}");
                        }
                        return;
                    }
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    ack_due = None;
                    let up_to = ledger.lock().unwrap_or_else(|p| p.into_inner()).contiguous_seq;
                    if up_to > acked_seq {
                        let ack = serde_json::to_vec(&AckRequest { up_to, device: DEVICE.into() })
                            .expect("an ack serializes");
                        if acker.try_publish(&ack_topic, QoS::AtLeastOnce, false, ack).is_ok() {
                            acked_seq = up_to;
                        }
                    }
                }
            }
        }
    });
    Ok(driver)
}

/// Replays what the inbox already holds (a group's `created` event, or a
/// `--target` user's old events) before the load starts, so the seqs
/// the run sees follow on without a gap and the client's acks cover
/// them. Only the seqs are taken from the replay: its messages are not
/// the run's.
async fn catch_up(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    name: &UserName,
    ledger: &Mutex<Ledger>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut after = 0;
    loop {
        let sync = serde_json::to_vec(&SyncRequest { after, limit: None })?;
        client
            .publish(user_topic(name, "sync"), QoS::AtLeastOnce, false, sync)
            .await?;
        let synced = loop {
            let polled = tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .map_err(|_| anyhow::anyhow!("{name}: no answer to sync within 60 s"))??;
            let rumqttc::Event::Incoming(Packet::Publish(publish)) = polled else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<InboxEvent>(&publish.payload) else {
                continue;
            };
            match event.event {
                Event::Synced(synced) => break synced,
                _ => {
                    if let Some(seq) = event.seq {
                        ledger.lock().unwrap_or_else(|p| p.into_inner()).saw(seq);
                    }
                }
            }
        };
        if let Some(pruned) = synced.pruned_through {
            // Pruned by another device before this one saw them.
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.contiguous_seq = ledger.contiguous_seq.max(pruned);
            ledger.saw(pruned);
        }
        if !synced.more {
            return Ok(());
        }
        after = synced.through;
    }
}

/// Deliveries that never happened: each send and recipient that did not
/// get it (every other member, for a group message), and whether the
/// server acked the send (stored it) or never answered.
fn lost_sends(names: &[String], groups: &Plan, ledgers: &[Ledger]) -> Vec<LostSend> {
    let mut lost = Vec::new();
    for (index, (sender, ledger)) in names.iter().zip(ledgers).enumerate() {
        let mut numbers: Vec<_> = ledger.sent_at.iter().collect();
        numbers.sort_by_key(|(n, _)| **n);
        for (n, (_, to)) in numbers {
            let recipients: Vec<usize> = match *to {
                To::User(peer) => vec![peer],
                To::Group(group) => groups.recipients(group, index).collect(),
            };
            for peer in recipients {
                let received = ledgers[peer]
                    .received
                    .get(sender)
                    .is_some_and(|(seen, _)| seen.contains(n));
                if !received {
                    lost.push(LostSend {
                        sender: sender.clone(),
                        peer: names[peer].clone(),
                        client_id: format!("{sender}-{n}"),
                        // A send's window permit is returned when its ✓ comes.
                        acked: !ledger.permits.contains_key(n),
                    });
                }
            }
        }
    }
    lost
}

fn on_event(me: &str, event: InboxEvent, shared: &Shared, ledger: &Mutex<Ledger>) {
    let now = Instant::now();
    let measuring = |sent: Instant| sent >= shared.measure_from;
    let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(seq) = event.seq {
        ledger.saw(seq);
    }
    match event.event {
        Event::Ack(ack) => {
            let Ok(n) = ack
                .client_id
                .rsplit('-')
                .next()
                .unwrap_or("")
                .parse::<u64>()
            else {
                return;
            };
            ledger.permits.remove(&n);
            if let Some(&(sent, _)) = ledger.sent_at.get(&n) {
                if let std::collections::btree_map::Entry::Vacant(slot) = ledger.by_id.entry(ack.id)
                {
                    slot.insert((ack_chat(&ack), n));
                    if measuring(sent) {
                        ledger.send_to_ack.record(now - sent);
                    }
                }
            }
        }
        Event::Message(message) => {
            // Body: "{micros since start}:{n}:padding".
            let mut parts = message.body.splitn(3, ':');
            let (Some(Ok(micros)), Some(Ok(n))) = (
                parts.next().map(str::parse::<u64>),
                parts.next().map(str::parse::<u64>),
            ) else {
                return;
            };
            let sent = shared.start + Duration::from_micros(micros);
            let (seen, last) = ledger.received.entry(message.from.clone()).or_default();
            if !seen.insert(n) {
                ledger.duplicates += 1;
                return;
            }
            let out_of_order = n < *last;
            *last = (*last).max(n);
            if out_of_order {
                ledger.order_violations += 1;
            }
            shared.received.fetch_add(1, Ordering::Relaxed);
            shared.count(&shared.deliveries_per_second, now);
            if measuring(sent) {
                ledger.send_to_deliver.record(now - sent);
            }
        }
        Event::Receipt(receipt) => {
            let chat = receipt_chat(&receipt);
            let covered: Vec<(i64, u64)> = ledger
                .by_id
                .range(..=receipt.up_to)
                .filter(|(_, (of, _))| *of == chat)
                .map(|(id, (_, n))| (*id, *n))
                .collect();
            for (id, n) in covered {
                // Forget receipted ids so the range scan stays short.
                ledger.by_id.remove(&id);
                if ledger.receipted.insert(n) {
                    if let Some(&(sent, _)) = ledger.sent_at.get(&n) {
                        if measuring(sent) {
                            ledger.send_to_receipt.record(now - sent);
                        }
                    }
                    shared.receipted.fetch_add(1, Ordering::Relaxed);
                    shared.count(&shared.receipts_per_second, now);
                }
            }
        }
        Event::Error(error) => eprintln!("{me}: refused: {} ({})", error.message, error.code),
        Event::Synced(_) | Event::Star(_) | Event::Timer(_) | Event::Group(_) | Event::Expired(_) => {}
    }
}

async fn send_loop(
    client: AsyncClient,
    index: usize,
    names: Arc<Vec<String>>,
    config: LoadConfig,
    mut interval: Option<tokio::time::Interval>,
    shared: Arc<Shared>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let me = &names[index];
    let Ok(topic) = UserName::parse(me).map(|name| user_topic(&name, "send")) else {
        return;
    };
    let window = Arc::new(Semaphore::new(config.window));
    let fanout = config.fanout(index);
    let padding = "x".repeat(config.size.saturating_sub(24));
    let mut n: u64 = 0;
    let mut rng_state = index as u64 * 2_654_435_761 + 1;
    while !shared.stop_sending.load(Ordering::Relaxed) {
        if let Some(interval) = interval.as_mut() {
            interval.tick().await;
        }
        // A permit per unacknowledged send; released when its ✓ arrives.
        let Ok(permit) = window.clone().acquire_owned().await else {
            return;
        };
        // Both waits may outlast the run (at a low rate a user's period is
        // long): nothing is sent once it is over.
        if shared.stop_sending.load(Ordering::Relaxed) {
            return;
        }
        let to = match config.pattern {
            Pattern::Pairs => To::User(index ^ 1),
            Pattern::Random => {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let other = (rng_state % (names.len() as u64 - 1)) as usize;
                To::User(if other >= index { other + 1 } else { other })
            }
            Pattern::Groups => To::Group(config.groups.group_of[index]),
        };
        n += 1;
        let now = Instant::now();
        let body = format!(
            "{}:{n}:{padding}",
            now.duration_since(shared.start).as_micros()
        );
        let payload = serde_json::to_vec(&send_request(format!("{me}-{n}"), to, body, &names, &config.groups))
            .expect("a send serializes");
        {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.sent_at.insert(n, (now, to));
            ledger.permits.insert(n, permit);
        }
        if client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            return;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        shared.expected.fetch_add(fanout, Ordering::Relaxed);
    }
}

/// The `send` of message `id` to `to`.
fn send_request(id: String, to: To, body: String, names: &[String], groups: &Plan) -> SendRequest {
    let (to, group) = match to {
        To::User(peer) => (Some(names[peer].clone()), None),
        To::Group(group) => (None, Some(groups.groups[group].id)),
    };
    SendRequest {
        id,
        to,
        group,
        body,
        media: None,
    }
}

/// The chat an ack of mine belongs to.
fn ack_chat(ack: &AckEvent) -> Chat {
    match (ack.group, &ack.to) {
        (Some(group), _) => Chat::Group(group),
        (None, to) => Chat::Peer(to.clone().unwrap_or_default()),
    }
}

/// The chat a receipt covers.
fn receipt_chat(receipt: &ReceiptEvent) -> Chat {
    match (receipt.group, &receipt.peer) {
        (Some(group), _) => Chat::Group(group),
        (None, peer) => Chat::Peer(peer.clone().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_senders_are_spread_evenly_over_one_period() {
        // 1,000/s from 100 users: each sends every 100 ms, one every 1 ms.
        let period = Duration::from_millis(100);
        let starts: Vec<Duration> = (0..100).map(|i| stagger(i, 100, period)).collect();
        assert_eq!(starts[0], Duration::ZERO);
        assert!(starts.windows(2).all(|w| w[1] - w[0] == Duration::from_millis(1)), "{starts:?}");
        assert!(*starts.last().unwrap() < period);
    }
}
