//! Chat load: many users on real MQTT connections speaking the client
//! protocol, timing each message from send to ✓, to the recipient, and to
//! ✓✓ back at the sender.
//!
//! The bench clients are deliberately lean (no outbox on disk, no resend):
//! anything the system loses shows up as loss instead of being repaired,
//! which is what a bench must report.

use protocol::messages::{Event, InboxEvent};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::stats::Samples;

/// Who talks to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Pattern {
    /// Users in fixed pairs, each writing to the other.
    Pairs,
    /// Each message to a random other user.
    Random,
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
}

/// What one run measured.
#[derive(Default)]
pub struct LoadResult {
    pub sent: u64,
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
}

/// A send whose message never reached its recipient.
#[derive(Debug, Clone, Serialize)]
pub struct LostSend {
    pub sender: String,
    pub peer: String,
    /// The client message id, `{sender}-{n}`.
    pub client_id: String,
    /// Whether the server's ack (✓) came, which means it was stored.
    pub acked: bool,
}

/// One user's view of the run.
#[derive(Default)]
struct Ledger {
    /// My send number → when I sent it, and to whom (index in the names).
    sent_at: HashMap<u64, (Instant, usize)>,
    /// Server id of my message → (peer, my send number).
    by_id: BTreeMap<i64, (String, u64)>,
    /// My send numbers whose ✓✓ came.
    receipted: HashSet<u64>,
    /// Window permits of sends awaiting their ✓; dropping one frees a slot.
    permits: HashMap<u64, OwnedSemaphorePermit>,
    /// Per sender: send numbers received (for duplicates) and the last one (for order).
    received: HashMap<String, (HashSet<u64>, u64)>,
    duplicates: u64,
    order_violations: u64,
    highest_seq: i64,
    send_to_ack: Samples,
    send_to_deliver: Samples,
    send_to_receipt: Samples,
}

/// Counters shared by every client.
struct Shared {
    start: Instant,
    measure_from: Instant,
    stop_sending: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    receipted: AtomicU64,
    receipts_per_second: Mutex<Vec<u64>>,
}

impl Shared {
    fn second(&self, at: Instant) -> usize {
        at.duration_since(self.start).as_secs() as usize
    }
}

/// Runs the load against the broker at `mqtt` with these `(user, token)`s.
pub async fn run(
    mqtt: SocketAddr,
    users: &[(String, String)],
    config: &LoadConfig,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        measure_from: start + config.warmup,
        stop_sending: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        receipted: AtomicU64::new(0),
        receipts_per_second: Mutex::new(Vec::new()),
    });
    let names: Arc<Vec<String>> = Arc::new(users.iter().map(|(u, _)| u.clone()).collect());
    let mut ledgers = Vec::new();
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for (user, token) in users {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (client, driver) = connect(mqtt, user, token, shared.clone(), ledger.clone()).await?;
        tasks.push(driver);
        clients.push(client);
        ledgers.push(ledger);
    }
    // Sending starts only once every recipient is subscribed: a push
    // published before its recipient subscribes reaches nobody, and these
    // clients do not sync on connect to fetch it (the SDK does).
    let per_user_rate = config.rate.map(|r| r / users.len() as f64);
    for (index, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(send_loop(
            client,
            index,
            names.clone(),
            config.clone(),
            per_user_rate,
            shared.clone(),
            ledgers[index].clone(),
        )));
    }

    // Progress while it runs.
    let total = config.warmup + config.duration;
    let mut last = (0, Instant::now());
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = shared.receipted.load(Ordering::Relaxed);
        let rate = (done - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (done, Instant::now());
        let phase = if start.elapsed() < config.warmup {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{:>4.0}s {phase}] sent {} received {} ✓✓ {} ({rate:.0}/s)",
            start.elapsed().as_secs_f64(),
            shared.sent.load(Ordering::Relaxed),
            shared.received.load(Ordering::Relaxed),
            done
        );
    }
    let measured_until = Instant::now();
    shared.stop_sending.store(true, Ordering::SeqCst);

    // Drain: wait for what is in flight to arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < drain_deadline {
        let sent = shared.sent.load(Ordering::Relaxed);
        if shared.received.load(Ordering::Relaxed) >= sent
            && shared.receipted.load(Ordering::Relaxed) >= sent
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for task in &tasks {
        task.abort();
    }

    let mut result = LoadResult {
        sent: shared.sent.load(Ordering::Relaxed),
        received: shared.received.load(Ordering::Relaxed),
        ..LoadResult::default()
    };
    let ledgers: Vec<Ledger> = ledgers
        .into_iter()
        .map(|ledger| std::mem::take(&mut *ledger.lock().unwrap_or_else(|p| p.into_inner())))
        .collect();
    result.lost_sends = lost_sends(&names, &ledgers);
    for ledger in ledgers {
        result.duplicates += ledger.duplicates;
        result.order_violations += ledger.order_violations;
        result.send_to_ack.extend(ledger.send_to_ack);
        result.send_to_deliver.extend(ledger.send_to_deliver);
        result.send_to_receipt.extend(ledger.send_to_receipt);
    }
    result.lost = result.sent.saturating_sub(result.received);
    let per_second = shared
        .receipts_per_second
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let from = shared.second(shared.measure_from);
    let until = shared.second(measured_until).max(from + 1);
    let in_window: u64 = per_second.iter().skip(from).take(until - from).sum();
    result.sustained_per_second = in_window as f64 / (until - from) as f64;
    result.receipts_per_second = per_second;
    Ok(result)
}

async fn connect(
    mqtt: SocketAddr,
    user: &str,
    token: &str,
    shared: Arc<Shared>,
    ledger: Arc<Mutex<Ledger>>,
) -> anyhow::Result<(AsyncClient, tokio::task::JoinHandle<()>)> {
    let mut options = MqttOptions::new(format!("{user}.bench"), mqtt.ip().to_string(), mqtt.port());
    options
        .set_credentials(user, token)
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("{user} could not connect: {e}"),
            Err(_) => anyhow::bail!("{user}: no CONNACK within 10 s"),
        }
    }
    client
        .subscribe(format!("u/{user}/inbox"), QoS::AtLeastOnce)
        .await?;
    loop {
        if let rumqttc::Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await? {
            break;
        }
    }
    let me = user.to_owned();
    let acker = client.clone();
    let driver = tokio::spawn(async move {
        let mut acked_seq = 0;
        let mut ack_tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                        if let Ok(event) = serde_json::from_slice::<InboxEvent>(&publish.payload) {
                            on_event(&me, event, &shared, &ledger);
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
                _ = ack_tick.tick() => {
                    let highest = ledger.lock().unwrap_or_else(|p| p.into_inner()).highest_seq;
                    if highest > acked_seq {
                        acked_seq = highest;
                        let ack = serde_json::json!({ "up_to": highest, "device": "bench" }).to_string();
                        let _ = acker.try_publish(format!("u/{me}/ack"), QoS::AtLeastOnce, false, ack);
                    }
                }
            }
        }
    });
    Ok((client, driver))
}

/// Sends whose message never reached the recipient, and whether the
/// server acked each (stored it) or never answered.
fn lost_sends(names: &[String], ledgers: &[Ledger]) -> Vec<LostSend> {
    let mut lost = Vec::new();
    for (sender, ledger) in names.iter().zip(ledgers) {
        let mut numbers: Vec<_> = ledger.sent_at.iter().collect();
        numbers.sort_by_key(|(n, _)| **n);
        for (n, (_, peer)) in numbers {
            let received = ledgers[*peer]
                .received
                .get(sender)
                .is_some_and(|(seen, _)| seen.contains(n));
            if !received {
                lost.push(LostSend {
                    sender: sender.clone(),
                    peer: names[*peer].clone(),
                    client_id: format!("{sender}-{n}"),
                    // A send's window permit is returned when its ✓ comes.
                    acked: !ledger.permits.contains_key(n),
                });
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
        ledger.highest_seq = ledger.highest_seq.max(seq);
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
                    slot.insert((ack.to.clone(), n));
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
            if measuring(sent) {
                ledger.send_to_deliver.record(now - sent);
            }
        }
        Event::Receipt(receipt) => {
            let covered: Vec<u64> = ledger
                .by_id
                .range(..=receipt.up_to)
                .filter(|(_, (peer, _))| *peer == receipt.peer)
                .map(|(_, (_, n))| *n)
                .collect();
            for n in covered {
                if ledger.receipted.insert(n) {
                    if let Some(&(sent, _)) = ledger.sent_at.get(&n) {
                        if measuring(sent) {
                            ledger.send_to_receipt.record(now - sent);
                        }
                    }
                    shared.receipted.fetch_add(1, Ordering::Relaxed);
                    let second = shared.second(now);
                    let mut per_second = shared
                        .receipts_per_second
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if per_second.len() <= second {
                        per_second.resize(second + 1, 0);
                    }
                    per_second[second] += 1;
                }
            }
            // Forget receipted ids so the range scan stays short.
            let done: Vec<i64> = ledger
                .by_id
                .range(..=receipt.up_to)
                .filter(|(_, (p, _))| *p == receipt.peer)
                .map(|(id, _)| *id)
                .collect();
            for id in done {
                ledger.by_id.remove(&id);
            }
        }
        Event::Error(error) => eprintln!("{me}: refused: {} ({})", error.message, error.code),
        Event::Synced(_) | Event::Star(_) | Event::Timer(_) | Event::Expired(_) => {}
    }
}

async fn send_loop(
    client: AsyncClient,
    index: usize,
    names: Arc<Vec<String>>,
    config: LoadConfig,
    rate: Option<f64>,
    shared: Arc<Shared>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let me = &names[index];
    let window = Arc::new(Semaphore::new(config.window));
    let mut interval =
        rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r.max(0.001))));
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
        let peer_index = match config.pattern {
            Pattern::Pairs => index ^ 1,
            Pattern::Random => {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let other = (rng_state % (names.len() as u64 - 1)) as usize;
                if other >= index {
                    other + 1
                } else {
                    other
                }
            }
        };
        let peer = &names[peer_index];
        n += 1;
        let now = Instant::now();
        let body = format!(
            "{}:{n}:{padding}",
            now.duration_since(shared.start).as_micros()
        );
        let payload =
            serde_json::json!({ "id": format!("{me}-{n}"), "to": peer, "body": body }).to_string();
        {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.sent_at.insert(n, (now, peer_index));
            ledger.permits.insert(n, permit);
        }
        if client
            .publish(format!("u/{me}/send"), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            return;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
}
