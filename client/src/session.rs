//! The async driver: the MQTT connection, the resend timer, ack debouncing,
//! and the hand-off of inbox events to the app.
//!
//! Two tasks per client:
//!
//! - the **poller** owns rumqttc's [`EventLoop`] and does nothing but poll
//!   it, forwarding CONNACKs, inbox publishes and connection errors as
//!   [`Net`] messages. Polling on after an error makes rumqttc reconnect;
//!   the poller sleeps [`RETRY_PAUSE`] between failures (longer after a
//!   refused CONNACK). Keeping the event loop alone in its task means it is
//!   never cancelled half-way and never waits on the app.
//! - the **driver** ([`Driver::run`]) owns the logic: after every CONNACK it
//!   subscribes to `u/{me}/inbox`, syncs after `last_seq`, resends the whole
//!   outbox and re-acks; it feeds inbox payloads through [`Inbox`], commits
//!   the result to the [`Outbox`] and only then hands events to the app and
//!   schedules the `ack`; every [`HOUSEKEEPING`] it resends sends that have
//!   gone unsettled for `resend_after` and lets the inbox re-sync if it is
//!   stuck. Group changes wait in memory until they are handed to rumqttc;
//!   a group's `create` is handed over again after every CONNACK until its
//!   `created` or error event arrives (the server creates once per id).
//!
//! The driver publishes with `try_publish` only: it never waits for room in
//! rumqttc's request queue, so it keeps reading events even when the queue
//! is full. Anything that did not fit is retried by a timer (unsettled
//! sends, acks) or by the inbox machine (syncs).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::groups::{GroupChange, GroupRequest};
use protocol::messages::{
    AckEvent, AckRequest, ErrorEvent, Event, InboxEvent, ReadRequest, SendRequest, StarRequest,
    SyncRequest,
};
use protocol::{topics, ErrorCode, UserName};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, Outgoing, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::AppEvent;
use crate::config::{publish_size, Config};
use crate::error::ClientError;
use crate::inbox::{Inbox, Timing};
use crate::outbox::{Entry, Outbox, Recipient};

/// Capacity of rumqttc's request queue.
const REQUEST_QUEUE: usize = 10_000;
/// How long [`Client::connect`](crate::Client::connect) waits for the first CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between failed polls.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Pause after a refused CONNACK (a bad token will not fix itself quickly).
const REFUSED_PAUSE: Duration = Duration::from_secs(5);
/// Period of the resend and re-sync checks (shorter if `resend_after` is).
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Ack at most this often… The ✓✓ of every message waits up to this
/// long on the recipient's device: at 50 ms, p99 send → ✓✓ at 5,000
/// messages/s was 85–90 ms. 3 ms still gathers what arrives together (the
/// bridge publishes a committed batch's events at once), so the
/// full-speed bench sent no more acks per message than at 10 or 50 ms and
/// carried as many messages (docs/performance.md, fifth pass).
pub const ACK_DELAY: Duration = Duration::from_millis(3);
/// …unless this many delivered events are unacked.
pub const ACK_BURST: i64 = 100;
/// Most inbox publishes processed (and committed) together.
const MAX_BATCH: usize = 1_000;
/// Most outbox entries handed to rumqttc per resend pass.
const RESEND_BATCH: i64 = 2_000;
/// How many settled client ids are remembered, to report each send once.
const RECENT_SENDS: usize = 4_096;
/// How long close waits for the DISCONNECT to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// State shared by the [`Client`](crate::Client) handle and the driver.
pub(crate) struct Shared {
    pub outbox: Mutex<Outbox>,
    /// The persisted `last_seq`.
    pub last_seq: AtomicI64,
    /// Between a CONNACK and the next connection error.
    pub connected: AtomicBool,
}

/// Requests from the handle to the driver.
pub(crate) enum Command {
    Read { chat: Recipient, up_to: i64 },
    Group(GroupRequest),
    Star { id: i64, starred: bool },
    Close,
}

/// A request where only the newest value matters, waiting to be handed to
/// rumqttc: a newer one for the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Latest {
    /// Read up to this message of a peer or group (only ever moves forward).
    Read(Recipient),
    /// Star state of a message.
    Star(i64),
}

/// What the poller reports.
enum Net {
    Connected { session_present: bool },
    Lost { reason: String, refused: bool },
    Inbox(Publish),
    DisconnectSent,
}

/// What [`start`] hands back to [`Client::connect`](crate::Client::connect).
pub(crate) struct Started {
    pub shared: Arc<Shared>,
    pub mqtt: AsyncClient,
    pub commands: mpsc::UnboundedSender<Command>,
    pub driver: JoinHandle<()>,
    pub events: mpsc::UnboundedReceiver<AppEvent>,
}

/// Locks the outbox; a panic elsewhere while holding it left SQLite
/// consistent (the transaction rolled back), so poisoning is ignored.
pub(crate) fn lock(outbox: &Mutex<Outbox>) -> MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wall-clock Unix milliseconds, for the outbox timestamps.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// JSON for one of our own request payloads (structs of strings and
/// integers, which always serialize).
macro_rules! encode {
    ($request:expr) => {
        serde_json::to_vec(&$request).expect("request payloads always serialize")
    };
}
pub(crate) use encode;

/// Connects, waits for the first CONNACK, and starts the poller and driver.
pub(crate) async fn start(
    config: &Config,
    me: UserName,
    client_id: &str,
    mut outbox: Outbox,
) -> Result<Started, ClientError> {
    let last_seq = outbox.last_seq()?;
    let (mqtt, mut eventloop) = AsyncClient::new(config.mqtt_options(client_id)?, REQUEST_QUEUE);
    crate::config::send_without_delay(&mut eventloop);
    let session_present = first_connack(&mut eventloop, config).await?;
    let topics = Topics::new(&me);

    let (net_tx, net_rx) = mpsc::unbounded_channel();
    // Queued before the poller starts, so it is the first thing the driver sees.
    let _ = net_tx.send(Net::Connected { session_present });
    let poller = AbortOnDrop(tokio::spawn(poll(eventloop, net_tx, topics.inbox.clone())));

    let shared = Arc::new(Shared {
        outbox: Mutex::new(outbox),
        last_seq: AtomicI64::new(last_seq),
        connected: AtomicBool::new(false),
    });
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (app_tx, app_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let timing = Timing {
        idle_sync: config.idle_sync,
        ..Timing::default()
    };
    let driver = Driver {
        shared: Arc::clone(&shared),
        mqtt: mqtt.clone(),
        topics,
        device: config.device.clone(),
        resend_after: config.resend_after,
        max_packet_size: config.max_packet_size,
        inbox: Inbox::with_limits(last_seq, timing, crate::inbox::DEFAULT_BUFFER_CAP, now),
        net: net_rx,
        commands: commands_rx,
        app: app_tx,
        _poller: poller,
        acked: 0,
        ack_due: None,
        latest: HashMap::new(),
        group_changes: VecDeque::new(),
        creates: Vec::new(),
        recent: Recent::default(),
    };
    tracing::info!(client_id, last_seq, "connected");
    let driver = tokio::spawn(driver.run());
    Ok(Started {
        shared,
        mqtt,
        commands: commands_tx,
        driver,
        events: app_rx,
    })
}

/// Polls until the first CONNACK. A refusal is final (except "server
/// unavailable", which is retried); anything else is retried until
/// [`CONNECT_TIMEOUT`].
async fn first_connack(eventloop: &mut EventLoop, config: &Config) -> Result<bool, ClientError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut last_error = String::from("no answer");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, eventloop.poll()).await {
            Err(_) => break,
            Ok(Ok(rumqttc::Event::Incoming(Packet::ConnAck(ack)))) => {
                return Ok(ack.session_present)
            }
            Ok(Ok(_)) => {}
            Ok(Err(ConnectionError::ConnectionRefused(code)))
                if code != ConnectReturnCode::ServiceUnavailable =>
            {
                return Err(ClientError::Refused(describe_refusal(code).into()));
            }
            Ok(Err(e)) => {
                last_error = e.to_string();
                let pause = RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }
    Err(ClientError::Unreachable {
        addr: format!("{}:{}", config.host, config.port),
        secs: CONNECT_TIMEOUT.as_secs(),
        last_error,
    })
}

fn describe_refusal(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "success (unexpected refusal)",
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or token",
        ConnectReturnCode::NotAuthorized => "not authorized",
    }
}

/// The poller task: see the module docs.
async fn poll(mut eventloop: EventLoop, net: mpsc::UnboundedSender<Net>, inbox_topic: String) {
    loop {
        let report = match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(Packet::ConnAck(ack))) => Some(Net::Connected {
                session_present: ack.session_present,
            }),
            Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic == inbox_topic {
                    Some(Net::Inbox(publish))
                } else {
                    tracing::debug!(topic = %publish.topic, "ignoring a publish outside the inbox");
                    None
                }
            }
            Ok(rumqttc::Event::Incoming(Packet::SubAck(suback))) => {
                if suback.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::error!(topic = %inbox_topic, "the server refused the inbox subscription");
                }
                None
            }
            Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = net.send(Net::DisconnectSent);
                return;
            }
            Ok(_) => None,
            Err(e) => {
                let refused = matches!(e, ConnectionError::ConnectionRefused(_));
                let reason = match &e {
                    ConnectionError::ConnectionRefused(code) => describe_refusal(*code).to_owned(),
                    other => other.to_string(),
                };
                if net.send(Net::Lost { reason, refused }).is_err() {
                    return;
                }
                tokio::time::sleep(if refused { REFUSED_PAUSE } else { RETRY_PAUSE }).await;
                None
            }
        };
        if let Some(report) = report {
            if net.send(report).is_err() {
                return;
            }
        }
    }
}

/// Aborts the task when dropped, so the poller never outlives its driver.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The topics a client publishes and subscribes to.
struct Topics {
    inbox: String,
    send: String,
    ack: String,
    read: String,
    sync: String,
    star: String,
    group: String,
}

impl Topics {
    fn new(me: &UserName) -> Topics {
        Topics {
            inbox: topics::user_topic(me, "inbox"),
            send: topics::user_topic(me, "send"),
            ack: topics::user_topic(me, "ack"),
            read: topics::user_topic(me, "read"),
            sync: topics::user_topic(me, "sync"),
            star: topics::user_topic(me, "star"),
            group: topics::user_topic(me, "group"),
        }
    }
}

/// Client ids of my sends settled lately, and whether the app learnt of
/// the settlement from a seq-less ack. Lets a later copy of the ack (with or
/// without a seq) be recognised as mine and reported only once.
#[derive(Default)]
struct Recent {
    order: VecDeque<String>,
    via_seqless: HashMap<String, bool>,
}

impl Recent {
    fn get(&self, client_id: &str) -> Option<bool> {
        self.via_seqless.get(client_id).copied()
    }

    fn insert(&mut self, client_id: String, via_seqless: bool) {
        if self
            .via_seqless
            .insert(client_id.clone(), via_seqless)
            .is_none()
        {
            self.order.push_back(client_id);
            if self.order.len() > RECENT_SENDS {
                if let Some(oldest) = self.order.pop_front() {
                    self.via_seqless.remove(&oldest);
                }
            }
        }
    }
}

/// Does this error end the life of the send it names? The retryable codes
/// (a server failure, an outage, a quota) do not: the send stays in the
/// outbox and is resent after `resend_after`.
fn final_error(error: &ErrorEvent) -> bool {
    !error.code.is_retryable()
}

/// The client id an event settles in the outbox, if any.
fn settles(event: &Event) -> Option<&str> {
    match event {
        Event::Ack(ack) => Some(&ack.client_id),
        Event::Error(error) if final_error(error) => error.client_id.as_deref(),
        _ => None,
    }
}

/// The driver task: see the module docs.
struct Driver {
    shared: Arc<Shared>,
    mqtt: AsyncClient,
    topics: Topics,
    device: String,
    resend_after: Duration,
    max_packet_size: usize,
    inbox: Inbox,
    net: mpsc::UnboundedReceiver<Net>,
    commands: mpsc::UnboundedReceiver<Command>,
    app: mpsc::UnboundedSender<AppEvent>,
    _poller: AbortOnDrop,
    /// The last `up_to` published in an ack on this connection.
    acked: i64,
    /// When the pending ack is to be published.
    ack_due: Option<Instant>,
    /// Reads (→ up_to) and stars (→ 1 or 0) not yet handed to rumqttc.
    latest: HashMap<Latest, i64>,
    /// Group changes not yet handed to rumqttc, in the order asked.
    group_changes: VecDeque<GroupRequest>,
    /// Group creates handed over but not yet answered (`created` or an
    /// error naming their id): handed over again after every CONNACK.
    creates: Vec<GroupRequest>,
    recent: Recent,
}

impl Driver {
    async fn run(mut self) {
        let housekeeping = HOUSEKEEPING
            .min(self.resend_after / 2)
            .max(Duration::from_millis(20));
        let mut next_housekeeping = Instant::now() + housekeeping;
        loop {
            let wake = match self.ack_due {
                Some(due) => due.min(next_housekeeping),
                None => next_housekeeping,
            };
            tokio::select! {
                net = self.net.recv() => match net {
                    Some(net) => self.on_net(net),
                    None => {
                        tracing::error!("the MQTT poller stopped");
                        break;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(Command::Read { chat, up_to }) => self.on_read(chat, up_to),
                    Some(Command::Group(request)) => {
                        self.group_changes.push_back(request);
                        self.flush_latest();
                    }
                    Some(Command::Star { id, starred }) => {
                        self.latest.insert(Latest::Star(id), i64::from(starred));
                        self.flush_latest();
                    }
                    Some(Command::Close) | None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            if self.app.is_closed() {
                tracing::info!("the app dropped its event receiver; stopping");
                break;
            }
            let now = Instant::now();
            if self.ack_due.is_some_and(|due| now >= due) {
                self.publish_ack();
            }
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + housekeeping;
            }
        }
        self.shutdown().await;
    }

    fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    fn emit(&self, event: AppEvent) {
        // A closed receiver stops the loop right after this iteration.
        let _ = self.app.send(event);
    }

    fn on_net(&mut self, net: Net) {
        match net {
            Net::Connected { session_present } => self.on_connected(session_present),
            Net::Lost { reason, refused } => self.on_lost(&reason, refused),
            Net::Inbox(publish) => {
                let mut batch = vec![publish];
                let mut other = None;
                while batch.len() < MAX_BATCH {
                    match self.net.try_recv() {
                        Ok(Net::Inbox(publish)) => batch.push(publish),
                        Ok(net) => {
                            other = Some(net);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.on_inbox(batch);
                if let Some(net) = other {
                    self.on_net(net);
                }
            }
            Net::DisconnectSent => {}
        }
    }

    /// After every CONNACK: subscribe, sync, resend everything, re-ack.
    fn on_connected(&mut self, session_present: bool) {
        let now = Instant::now();
        self.shared.connected.store(true, Ordering::SeqCst);
        tracing::debug!(session_present, "CONNACK");
        self.emit(AppEvent::Connection(true));
        if let Err(e) = self
            .mqtt
            .try_subscribe(&self.topics.inbox, QoS::AtLeastOnce)
        {
            tracing::error!("cannot queue the inbox subscription: {e}");
        }
        let after = self.inbox.sync_now(now);
        self.publish_sync(after);
        let entries = lock(&self.shared.outbox).all(RESEND_BATCH);
        match entries {
            Ok(entries) => {
                if !entries.is_empty() {
                    tracing::info!(count = entries.len(), "resending the outbox after CONNACK");
                }
                self.resend(entries);
            }
            Err(e) => tracing::error!("cannot read the outbox: {e}"),
        }
        // Creates unanswered on the old connection go again, first.
        for create in self.creates.drain(..).rev() {
            self.group_changes.push_front(create);
        }
        self.flush_latest();
        // The last ack may have been lost with the old connection.
        self.acked = 0;
        self.publish_ack();
    }

    fn on_lost(&mut self, reason: &str, refused: bool) {
        self.ack_due = None;
        if self.shared.connected.swap(false, Ordering::SeqCst) {
            tracing::warn!("connection lost: {reason}; reconnecting");
            self.emit(AppEvent::Connection(false));
        } else if refused {
            tracing::warn!("reconnect refused: {reason}");
        } else {
            tracing::debug!("reconnect failed: {reason}");
        }
    }

    /// Runs a burst of inbox publishes through the seq machine, commits, and
    /// delivers.
    fn on_inbox(&mut self, batch: Vec<Publish>) {
        let now = Instant::now();
        let mut deliver = Vec::new();
        let mut faults = Vec::new();
        let mut sync_after = None;
        for publish in batch {
            match serde_json::from_slice::<InboxEvent>(&publish.payload) {
                Ok(event) => {
                    let accepted = self.inbox.accept(event, now);
                    if let Some(fault) = accepted.fault {
                        tracing::warn!("refusing an inbox event: {fault}");
                        faults.push(fault);
                    }
                    if let Some(skipped) = &accepted.skipped {
                        tracing::warn!(
                            "inbox events {}..={} were pruned by the server before this device \
                             acked them; skipping",
                            skipped.start(),
                            skipped.end()
                        );
                    }
                    deliver.extend(accepted.deliver);
                    sync_after = accepted.sync_after.or(sync_after);
                }
                Err(e) => {
                    let shown = &publish.payload[..publish.payload.len().min(200)];
                    tracing::warn!(
                        payload = %String::from_utf8_lossy(shown),
                        "skipping a malformed inbox event: {e}"
                    );
                }
            }
        }
        if !deliver.is_empty() && !self.deliver(deliver, now) {
            return;
        }
        for fault in faults {
            self.emit(AppEvent::ServerFault(fault));
        }
        if let Some(after) = sync_after {
            self.publish_sync(after);
        }
    }

    /// Commits what `events` settle together with the new `last_seq`, then
    /// hands them to the app and schedules the ack. On a failed commit the
    /// seq machine is rewound to the persisted `last_seq` (it re-syncs) and
    /// nothing is delivered.
    fn deliver(&mut self, events: Vec<InboxEvent>, now: Instant) -> bool {
        if self.app.is_closed() {
            return false;
        }
        let settle: Vec<String> = events
            .iter()
            .filter_map(|e| settles(&e.event).map(str::to_owned))
            .collect();
        let last = self.inbox.last_seq();
        let committed = lock(&self.shared.outbox).commit_delivery(&settle, last);
        let found = match committed {
            Ok(found) => found,
            Err(e) => {
                tracing::error!("cannot store delivered inbox events; will fetch them again: {e}");
                let persisted = self.shared.last_seq.load(Ordering::SeqCst);
                self.inbox.rewind(persisted, now);
                return false;
            }
        };
        self.shared.last_seq.store(last, Ordering::SeqCst);
        let mut found = found.into_iter();
        for event in events {
            let was_pending = settles(&event.event).is_some() && found.next().unwrap_or(false);
            let app_event = match event.event {
                Event::Message(message) => Some(AppEvent::Message(message)),
                Event::Ack(ack) => self.on_ack(ack, event.seq.is_some(), was_pending),
                Event::Receipt(receipt) => Some(AppEvent::Receipt(receipt)),
                Event::Star(star) => Some(AppEvent::Star(star)),
                Event::Timer(timer) => Some(AppEvent::Timer(timer)),
                Event::Group(change) => {
                    if change.change == GroupChange::Created {
                        self.answered_create(change.client_id.as_deref());
                    }
                    Some(AppEvent::Group(change))
                }
                Event::Expired(expired) => Some(AppEvent::Expired(expired)),
                Event::Error(error) => {
                    if error.on == "group" {
                        self.answered_create(error.client_id.as_deref());
                    }
                    if was_pending {
                        tracing::info!(client_id = ?error.client_id, code = %error.code, "send refused");
                    }
                    Some(AppEvent::Rejected(error))
                }
                Event::Synced(_) => None,
            };
            if let Some(app_event) = app_event {
                self.emit(app_event);
            }
        }
        if !settle.is_empty() {
            // Settled heads make room: the next send to each of those peers
            // goes out now rather than at the next housekeeping tick.
            self.send_due();
        }
        self.schedule_ack(now);
        true
    }

    /// Which ack events reach the app: my pending sends once each; acks of
    /// my other devices' sends (with a seq) as `own: false`; repeats not.
    fn on_ack(&mut self, ack: AckEvent, with_seq: bool, was_pending: bool) -> Option<AppEvent> {
        if was_pending {
            self.recent.insert(ack.client_id.clone(), !with_seq);
            return Some(AppEvent::Sent { ack, own: true });
        }
        match (with_seq, self.recent.get(&ack.client_id)) {
            (true, None) => Some(AppEvent::Sent { ack, own: false }),
            (true, Some(_)) | (false, _) => {
                tracing::debug!(client_id = %ack.client_id, "repeated ack");
                None
            }
        }
    }

    fn schedule_ack(&mut self, now: Instant) {
        let last = self.shared.last_seq.load(Ordering::SeqCst);
        if last <= self.acked {
            return;
        }
        if last - self.acked >= ACK_BURST {
            self.publish_ack();
        } else if self.ack_due.is_none() {
            self.ack_due = Some(now + ACK_DELAY);
        }
    }

    /// Acks the persisted (so delivered) `last_seq`, if connected.
    fn publish_ack(&mut self) {
        self.ack_due = None;
        let up_to = self.shared.last_seq.load(Ordering::SeqCst);
        if !self.connected() || up_to <= 0 || up_to <= self.acked {
            return;
        }
        let payload = encode!(AckRequest {
            up_to,
            device: self.device.clone()
        });
        match self
            .mqtt
            .try_publish(&self.topics.ack, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => self.acked = up_to,
            Err(e) => tracing::debug!("ack not queued, retrying later: {e}"),
        }
    }

    fn publish_sync(&mut self, after: i64) {
        if !self.connected() {
            return;
        }
        tracing::debug!(after, "sync");
        let payload = encode!(SyncRequest {
            after,
            limit: Some(self.inbox.sync_window())
        });
        if let Err(e) = self
            .mqtt
            .try_publish(&self.topics.sync, QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!("sync not queued, retrying later: {e}");
        }
    }

    /// A create's `created` or error event arrived: it is not sent again.
    fn answered_create(&mut self, client_id: Option<&str>) {
        if let Some(client_id) = client_id {
            self.creates
                .retain(|create| create.client_id() != Some(client_id));
            self.group_changes
                .retain(|create| create.client_id() != Some(client_id));
        }
    }

    fn on_read(&mut self, chat: Recipient, up_to: i64) {
        let entry = self.latest.entry(Latest::Read(chat)).or_insert(up_to);
        *entry = (*entry).max(up_to);
        self.flush_latest();
    }

    fn flush_latest(&mut self) {
        if !self.connected() {
            return;
        }
        let mut done = Vec::new();
        for (key, &value) in &self.latest {
            let (topic, payload) = match key {
                Latest::Read(chat) => {
                    let (peer, group) = chat.fields();
                    (
                        &self.topics.read,
                        encode!(ReadRequest {
                            peer,
                            group,
                            up_to: value
                        }),
                    )
                }
                Latest::Star(id) => (
                    &self.topics.star,
                    encode!(StarRequest {
                        id: *id,
                        starred: value != 0
                    }),
                ),
            };
            match self
                .mqtt
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => done.push(key.clone()),
                Err(e) => {
                    tracing::debug!("request not queued, retrying later: {e}");
                    break;
                }
            }
        }
        for key in done {
            self.latest.remove(&key);
        }
        while let Some(request) = self.group_changes.front() {
            match self.mqtt.try_publish(
                &self.topics.group,
                QoS::AtLeastOnce,
                false,
                encode!(request),
            ) {
                Ok(()) => {
                    if let Some(request) = self.group_changes.pop_front() {
                        if request.client_id().is_some() {
                            self.creates.push(request);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("group change not queued, retrying later: {e}");
                    break;
                }
            }
        }
    }

    /// Every [`HOUSEKEEPING`] while connected: inbox re-syncs, due resends,
    /// acks and reads that did not fit in the queue.
    fn housekeeping(&mut self, now: Instant) {
        if !self.connected() {
            return;
        }
        if let Some(after) = self.inbox.tick(now) {
            self.publish_sync(after);
        }
        self.send_due();
        self.schedule_ack(now);
        self.flush_latest();
    }

    /// Publishes every peer head that is due: never sent yet (it just became
    /// the head) or unsettled for `resend_after`.
    fn send_due(&mut self) {
        let resend_after = i64::try_from(self.resend_after.as_millis()).unwrap_or(i64::MAX);
        let due = lock(&self.shared.outbox).due(now_ms(), resend_after, RESEND_BATCH);
        match due {
            Ok(due) => {
                let resends = due.iter().filter(|e| e.attempts > 0).count();
                if resends > 0 {
                    tracing::info!(count = resends, "resending unsettled sends");
                }
                self.resend(due);
            }
            Err(e) => tracing::error!("cannot read the outbox: {e}"),
        }
    }

    /// Hands outbox entries to rumqttc and records the attempt. Stops at the
    /// first one that does not fit in the queue (it stays due).
    fn resend(&mut self, entries: Vec<Entry>) {
        if !self.connected() {
            return;
        }
        let mut queued = Vec::new();
        let mut too_large = Vec::new();
        for entry in entries {
            let (to, group) = entry.recipient().fields();
            let payload = encode!(SendRequest {
                id: entry.client_id.clone(),
                to,
                group,
                body: entry.body,
                // Written by this SDK from a MediaRef; unreadable JSON would
                // mean a damaged file, and the server then refuses the send.
                media: entry
                    .media
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok()),
            });
            let size = publish_size(&self.topics.send, payload.len());
            if size > self.max_packet_size {
                too_large.push((entry.client_id, size));
                continue;
            }
            match self
                .mqtt
                .try_publish(&self.topics.send, QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => queued.push(entry.client_id),
                Err(e) => {
                    tracing::debug!("request queue full; the rest of the outbox waits: {e}");
                    break;
                }
            }
        }
        let mut outbox = lock(&self.shared.outbox);
        if let Err(e) = outbox.mark_sent(&queued, now_ms()) {
            tracing::error!("cannot record resends: {e}");
        }
        // Only possible if max_packet_size shrank since the send was stored:
        // the broker would drop the connection on every attempt.
        let mut rejected = Vec::new();
        for (client_id, size) in too_large {
            match outbox.settle(&client_id) {
                Ok(_) => rejected.push(ErrorEvent {
                    client_id: Some(client_id),
                    on: "send".into(),
                    code: ErrorCode::BodyTooLarge,
                    message: format!(
                        "the send needs a {size}-byte packet; max_packet_size is {}",
                        self.max_packet_size
                    ),
                }),
                Err(e) => tracing::error!("cannot drop an oversized send: {e}"),
            }
        }
        drop(outbox);
        for error in rejected {
            tracing::warn!(client_id = ?error.client_id, "dropping a send too large to publish");
            self.emit(AppEvent::Rejected(error));
        }
    }

    /// Final ack, DISCONNECT, and wait (briefly) for it to be written.
    async fn shutdown(mut self) {
        if self.connected() {
            self.publish_ack();
            match self.mqtt.try_disconnect() {
                Ok(()) => {
                    let wait = async {
                        while let Some(net) = self.net.recv().await {
                            if matches!(net, Net::DisconnectSent | Net::Lost { .. }) {
                                break;
                            }
                        }
                    };
                    if tokio::time::timeout(CLOSE_WAIT, wait).await.is_err() {
                        tracing::debug!("DISCONNECT not written within {CLOSE_WAIT:?}");
                    }
                }
                Err(e) => tracing::debug!("cannot queue DISCONNECT: {e}"),
            }
        }
        self.shared.connected.store(false, Ordering::SeqCst);
        tracing::info!(
            last_seq = self.shared.last_seq.load(Ordering::SeqCst),
            "client closed"
        );
    }
}
