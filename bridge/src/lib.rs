//! The chat logic of bluetick: a client of the broker between the broker
//! and the store.
//!
//! # How a message moves
//! 1. A client publishes `{"id","to","body"}` to `u/alice/send` at QoS 1.
//!    The bridge is subscribed to `u/+/send` (and `ack`, `read`, `sync`,
//!    `star`, `group`). With the embedded broker it is a local link of the router,
//!    in process ([`link`]): the driver reads deliveries from the link and
//!    admits them, in delivery order, into the worker's bounded queue,
//!    waiting for room (back-pressure, never a drop); nothing is owed back.
//!    Against a broker reached over MQTT the driver polls the connection
//!    and hands each publish to the intake, never waiting itself.
//! 2. Over MQTT, the intake admits publishes, in delivery order, into the
//!    worker's bounded queue, waiting for room. With
//!    [`AckPolicy::OnArrival`] it PUBACKs each one as it is admitted, so
//!    the broker's limit of 100 unacknowledged deliveries does not make the
//!    bridge stop and wait while it commits.
//! 3. The worker takes that publish and whatever else is queued or arrives
//!    within the linger (up to `max_batch`), decodes and validates each
//!    ([`request`]), and commits the whole batch in one transaction
//!    ([`batch`]): new messages (one multi-row insert), their message
//!    events for recipients, acks for senders, inbox acks with their
//!    delivered receipts (one store call for the batch), read receipts,
//!    error events and dead letters; group changes ([`groups`]) and group
//!    sends, stored once and fanned out to every member's inbox in the
//!    same multi-row statements. Text sends are applied before media
//!    sends, keeping each sender→recipient pair in order. A commit that
//!    fails is retried while the database is away, and split to isolate a
//!    poison request when it fails deterministically (`commit.rs`).
//! 4. The worker hands the committed batch to the one publisher and starts
//!    on the next batch. The publisher sends each batch's inbox events to
//!    `u/{user}/inbox` at QoS 1 in commit order (the sender's `ack` event is
//!    its ✓: only ever after the commit; in process, a batch's events reach
//!    the router with one wakeup), then starts the batch's `sync`
//!    answers (a few at once, off the commit path). Against an external
//!    broker ([`AckPolicy::AfterCommit`]) it PUBACKs the batch's publishes
//!    first, so nothing is acknowledged until stored.
//!
//! Typing and devices' own presence messages (`u/+/typing`,
//! `u/+/presence`) never reach the worker: the driver hands them to
//! `live.rs` as they arrive (rate-limited per user, presence coalesced per
//! user), and the bridge reads them at QoS 0; when the bridge is behind
//! (more than `shed_above` requests queued) they are shed. Over MQTT,
//! every QoS 1 publish is acknowledged from one place (the intake, or the
//! publisher after commit), in delivery order, because the broker
//! disconnects a client whose PUBACKs come out of order. A send over its
//! user's quota ([`quota`]) is answered with a retryable `rate_limited`
//! error event without touching the store.
//!
//! Because the store is the truth, every loss between broker and client is
//! recovered by the client: it resends a `send` until its ack event
//! arrives (duplicates are removed on (sender, client id)), and syncs its
//! inbox from the last seq it holds.
//!
//! The bridge knows the broker only through [`link`] (receive deliveries,
//! publish, acknowledge), so it runs unchanged in process beside the
//! embedded broker or as an MQTT client of an external one.
//!
//! A refused payload kept as a dead letter can be run through the same
//! commit again, without a running server ([`replay`], `bluetick dlq
//! replay`).

pub mod batch;
mod commit;
pub mod config;
pub mod groups;
pub mod link;
mod live;
pub mod presence;
pub mod quota;
pub mod replay;
pub mod request;

use protocol::messages::{ErrorEvent, Event, InboxEvent, Rejection, SyncedEvent};
use protocol::{topics, ErrorCode, UserName};
use link::{Delivery, Outbox};
use rumqttc::{AsyncClient, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use batch::{Committed, Outcome};
pub use groups::GroupRules;
pub use link::{Endpoint, MqttEndpoint};
pub use presence::Tracker;
use quota::Buckets;
pub use request::Request;

/// How the bridge batches and what it allows.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Largest message body accepted, in bytes.
    pub max_body: usize,
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// Largest MQTT packet, in bytes (must admit `max_body` plus JSON);
    /// for [`Endpoint::Mqtt`].
    pub max_packet_size: usize,
    /// Sends one user may make per second, sustained; more are refused
    /// with a retryable `rate_limited` error event.
    pub sends_per_second: f64,
    /// Sends one user may make in a burst.
    pub send_burst: f64,
    /// Shortest time between two applications of one user's device
    /// presence messages; those in between are coalesced (the last wins).
    pub presence_interval: Duration,
    /// When a client's publish is acknowledged to the broker
    /// ([`Endpoint::Mqtt`]; in process nothing is acknowledged).
    pub ack: AckPolicy,
    /// How long the worker waits for more requests before committing a
    /// batch that is not full (at most a few milliseconds).
    pub linger: Duration,
    /// Requests queued for the worker above which the bridge counts as
    /// behind and sheds typing and device presence.
    pub shed_above: usize,
    /// The limits of group changes (`[groups]`).
    pub groups: GroupRules,
}

/// When the bridge acknowledges (PUBACKs) a publish the broker delivered.
///
/// Either way a client's ✓ is its `ack` inbox event, sent only after the
/// commit; the PUBACK only tells the broker it may forget the publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// As soon as the publish is admitted into the worker's bounded queue.
    /// For the embedded broker: it lives and dies with the bridge, so a
    /// later PUBACK would protect nothing that the client's resend (until
    /// its ack event) does not, and acking early lifts the broker's limit
    /// of 100 unacknowledged deliveries that made the bridge stop and wait
    /// during every commit.
    OnArrival,
    /// Only after the batch holding it commits. For an external broker,
    /// which outlives the bridge and redelivers what was not acknowledged.
    AfterCommit,
}

/// Why the bridge could not start or serve a request.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    #[error("the bridge has stopped")]
    Stopped,
}

/// A request handed in without MQTT (HTTP sends, dead-letter replays).
struct Submission {
    request: Request,
    reply: oneshot::Sender<Outcome>,
}

enum Input {
    Delivered(Delivery),
    Submitted(Submission),
    /// A QoS 1 publish the driver has already handled (ephemeral traffic):
    /// only its PUBACK is owed, and it must go out in delivery order.
    Handled(Delivery),
}

/// A running bridge.
pub struct Bridge {
    submissions: mpsc::Sender<Input>,
    tasks: Vec<JoinHandle<()>>,
    presence: Arc<Tracker>,
}

/// Every topic filter the bridge subscribes to.
pub fn filters() -> Vec<String> {
    request::LEAVES
        .iter()
        .chain(EPHEMERAL_LEAVES.iter())
        .map(|leaf| format!("u/+/{leaf}"))
        .collect()
}

/// Leaves handled as they arrive, never stored: typing and devices' own
/// presence messages.
const EPHEMERAL_LEAVES: [&str; 2] = ["typing", "presence"];

/// Where the bridge hands what it publishes locally to be copied to other
/// nodes too (cluster mode). Each is offered with `try_send`, never
/// awaited: a full tap drops it; inbox events are recovered by sync, and
/// typing is ephemeral anyway.
#[derive(Clone)]
pub struct Taps {
    /// Each committed batch's inbox events, (user, event), in commit order,
    /// once published locally.
    pub committed: mpsc::Sender<Vec<(String, InboxEvent)>>,
    /// Typing events, (recipient, `u/{recipient}/live` payload), whether or
    /// not the recipient is online here: only nodes where it is connected
    /// deliver them.
    pub live: mpsc::Sender<(String, Vec<u8>)>,
}

impl Bridge {
    /// Connects, subscribes, and starts the worker. Returns once the
    /// subscriptions are in place, so nothing published afterwards is missed.
    pub async fn start(
        config: BridgeConfig,
        store: Store,
        endpoint: Endpoint,
    ) -> Result<Bridge, BridgeError> {
        Bridge::start_tapped(config, store, endpoint, None).await
    }

    /// [`Bridge::start`], with what it publishes also handed to `taps`.
    pub async fn start_tapped(
        config: BridgeConfig,
        store: Store,
        endpoint: Endpoint,
        taps: Option<Taps>,
    ) -> Result<Bridge, BridgeError> {
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (outbox, mqtt) = match endpoint {
            Endpoint::Local { tx, rx } => (Outbox::Local(tx), Err(rx)),
            Endpoint::Mqtt(at) => {
                let (client, eventloop) = mqtt_client(&at, &config);
                (Outbox::Mqtt(client.clone()), Ok((at, client, eventloop)))
            }
        };
        let presence = Arc::new(Tracker::new(outbox.clone(), store.clone()));
        let desk = Arc::new(live::PresenceDesk::new(config.presence_interval));
        let applier = tokio::spawn(desk.clone().apply(store.clone(), presence.clone()));
        let live = Live {
            desk,
            typing: Buckets::new(live::TYPING_PER_SECOND, live::TYPING_BURST),
            typing_out: live::TypingOut {
                outbox: outbox.clone(),
                tracker: presence.clone(),
                tap: taps.as_ref().map(|taps| taps.live.clone()),
                store: store.clone(),
                lookups: Arc::new(tokio::sync::Semaphore::new(live::GROUP_TYPING_LOOKUPS)),
            },
            backlog: input_tx.clone(),
            shed_above: config.shed_above,
        };
        let (mut tasks, from) = match mqtt {
            Err(rx) => {
                let driver = tokio::spawn(drive_local(outbox.clone(), rx, input_tx.clone(), ready_tx, live));
                (vec![driver], "the router".to_owned())
            }
            Ok((at, client, eventloop)) => {
                let (arrivals_tx, arrivals_rx) = mpsc::unbounded_channel();
                let driver =
                    tokio::spawn(drive_mqtt(client, eventloop, arrivals_tx, ready_tx, live));
                let intake = tokio::spawn(admit(
                    outbox.clone(),
                    arrivals_rx,
                    input_tx.clone(),
                    config.ack,
                ));
                (vec![driver, intake], format!("{}:{}", at.host, at.port))
            }
        };
        tasks.push(applier);
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                for task in &tasks {
                    task.abort();
                }
                return Err(BridgeError::Connect(format!(
                    "no SUBACK from {from} within 10 s"
                )));
            }
        }
        let (done_tx, done_rx) = mpsc::channel(PUBLISH_QUEUE);
        let tap = taps.map(|taps| taps.committed);
        tasks.push(tokio::spawn(publish(outbox, store.clone(), done_rx, tap)));
        tasks.push(tokio::spawn(work(store, input_rx, config, done_tx)));
        Ok(Bridge {
            submissions: input_tx,
            tasks,
            presence,
        })
    }

    /// Runs a request through the same pipeline as an MQTT publish and
    /// waits for its outcome.
    pub async fn submit(&self, request: Request) -> Result<Outcome, BridgeError> {
        let (reply, outcome) = oneshot::channel();
        self.submissions
            .send(Input::Submitted(Submission { request, reply }))
            .await
            .map_err(|_| BridgeError::Stopped)?;
        outcome.await.map_err(|_| BridgeError::Stopped)
    }

    /// The presence tracker, to be told about connects and disconnects.
    pub fn presence(&self) -> Arc<Tracker> {
        self.presence.clone()
    }

    /// Stops the bridge's tasks. Requests not yet committed stay
    /// unacknowledged, so clients resend them.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The MQTT client of [`Endpoint::Mqtt`] and its event loop.
fn mqtt_client(at: &MqttEndpoint, config: &BridgeConfig) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(&at.client_id, &at.host, at.port);
    options
        .set_credentials(&at.username, &at.password)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        // The whole packet-id space: rumqttc stops reading its request
        // channel once this many of the bridge's publishes await a
        // PUBACK, and the bridge's own PUBACKs wait in that channel;
        // with a window of 1,000 that stalled the full-speed bench.
        .set_inflight(u16::MAX)
        .set_max_packet_size(config.max_packet_size, config.max_packet_size);
    AsyncClient::new(options, 10_000)
}

/// Whether `filter` is one of the ephemeral leaves' filters.
fn is_ephemeral(filter: &str) -> bool {
    EPHEMERAL_LEAVES
        .iter()
        .any(|leaf| filter.strip_suffix(leaf).is_some_and(|f| f.ends_with('/')))
}

fn subscriptions() -> Vec<SubscribeFilter> {
    filters()
        .into_iter()
        .map(|filter| {
            // Ephemeral traffic is QoS 0 to the bridge: nothing to
            // acknowledge, and nothing the bridge's persistent session
            // replays after a reconnect.
            let qos = if is_ephemeral(&filter) {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            SubscribeFilter::new(filter, qos)
        })
        .collect()
}

/// What the driver needs for ephemeral traffic.
struct Live {
    /// Devices' presence messages, coalesced and applied by one task.
    desk: Arc<live::PresenceDesk>,
    /// Typing events per user.
    typing: Buckets,
    /// Where typing goes (and, in cluster mode, the tap to other nodes).
    typing_out: live::TypingOut,
    /// The worker's queue, only to see how far behind the bridge is.
    backlog: mpsc::Sender<Input>,
    /// Queued requests above which ephemeral traffic is shed.
    shed_above: usize,
}

impl Live {
    /// Handles typing and presence publishes at once, without blocking;
    /// returns what the worker must see: any other publish, or a handled
    /// QoS 1 publish whose PUBACK is owed in order.
    fn take(&self, delivery: Delivery) -> Option<Input> {
        let Some((user, leaf)) = request::split_topic(&delivery.topic) else {
            return Some(Input::Delivered(delivery));
        };
        let queued = self.backlog.max_capacity() - self.backlog.capacity();
        if EPHEMERAL_LEAVES.contains(&leaf) && queued > self.shed_above {
            // Behind: typing and device presence go first, so the bridge
            // spends itself on messages. Both are ephemeral by contract.
            let class = if leaf == "typing" { "typing" } else { "presence" };
            metrics::counter!("bluetick_bridge_shed_total", "class" => class).increment(1);
            return delivery.owed.is_some().then_some(Input::Handled(delivery));
        }
        match leaf {
            "typing" => live::typing(&self.typing_out, &self.typing, &user, &delivery.payload),
            "presence" => self.desk.offer(&user, &delivery.payload),
            _ => return Some(Input::Delivered(delivery)),
        }
        delivery.owed.is_some().then_some(Input::Handled(delivery))
    }
}

/// Reads the router's deliveries to the bridge's local link forever and
/// admits them, in delivery order, into the worker's bounded queue.
///
/// Waiting for room here is the back-pressure: the router stops forwarding
/// to a link whose buffer is full (it sends `Unschedule`, and forwards
/// again after `wake`), and never waits on the link itself, so nothing
/// here can wait on the bridge's own publishes.
async fn drive_local(
    outbox: Outbox,
    mut rx: rumqttd::local::LinkRx,
    input: mpsc::Sender<Input>,
    ready: oneshot::Sender<()>,
    live: Live,
) {
    if let Outbox::Local(tx) = &outbox {
        // QoS 0, see `link`. The router answers with a SUBACK before it
        // forwards anything published after the subscription.
        let mut tx = tx.clone();
        for filter in filters() {
            if let Err(e) = tx.subscribe(filter) {
                tracing::error!(error = %e, "bridge could not subscribe");
                return;
            }
        }
    }
    let mut ready = Some(ready);
    loop {
        let notification = match rx.next().await {
            Ok(Some(notification)) => notification,
            // A wakeup whose notifications an earlier read already took.
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "the router closed the bridge's link");
                return;
            }
        };
        match notification {
            rumqttd::Notification::Forward(forward) => {
                let Some(delivery) = Delivery::from_local(forward.publish) else {
                    continue;
                };
                let Some(admitted) = live.take(delivery) else {
                    continue;
                };
                if input.send(admitted).await.is_err() {
                    return;
                }
            }
            // The buffer was full and the router paused forwarding to this
            // link: ask for more now that it is drained.
            rumqttd::Notification::Unschedule if rx.wake().await.is_err() => return,
            // The SUBACKs, then the PUBACKs of the bridge's own QoS 1
            // publishes, which need nothing.
            rumqttd::Notification::DeviceAck(_) => {
                if let Some(ready) = ready.take() {
                    // Start waits for this with a deadline; if it gave up,
                    // no one listens.
                    let _ = ready.send(());
                }
            }
            rumqttd::Notification::Disconnect(..) => {
                tracing::error!("the router disconnected the bridge's link");
                return;
            }
            _ => {}
        }
    }
}

/// Polls the MQTT connection forever: hands publishes to the intake and
/// resubscribes after every reconnect.
///
/// It never waits for anyone: the same connection carries the worker's
/// PUBACKs and inbox publishes, so a driver blocked on a full queue while
/// the worker blocks on a full request channel would deadlock. The
/// `arrivals` channel has no capacity limit of its own because the broker
/// bounds it: what waits there is not yet acknowledged, and the broker
/// sends at most its in-flight limit (100 for rumqttd, at most 65,535 for
/// any broker) of unacknowledged publishes.
async fn drive_mqtt(
    client: AsyncClient,
    mut eventloop: EventLoop,
    arrivals: mpsc::UnboundedSender<Input>,
    ready: oneshot::Sender<()>,
    live: Live,
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => {
                let Some(owed) = live.take(Delivery::from_mqtt(publish)) else {
                    continue;
                };
                if arrivals.send(owed).is_err() {
                    return;
                }
            }
            Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("bridge connected to the broker");
                if let Err(e) = client.try_subscribe_many(subscriptions()) {
                    tracing::error!(error = %e, "bridge could not subscribe");
                }
            }
            Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("bluetick_bridge_disconnects_total").increment(1);
                tracing::warn!(error = %e, "bridge lost the broker; reconnecting");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Admits publishes into the worker's bounded queue in delivery order,
/// waiting for room (back-pressure: nothing is dropped). Under
/// [`AckPolicy::OnArrival`] it acknowledges each publish once it is
/// admitted, and ephemeral ones at once; being the only one that does, it
/// keeps PUBACKs in delivery order.
async fn admit(
    outbox: Outbox,
    mut arrivals: mpsc::UnboundedReceiver<Input>,
    input: mpsc::Sender<Input>,
    policy: AckPolicy,
) {
    while let Some(arrival) = arrivals.recv().await {
        let Ok(room) = input.reserve().await else {
            return;
        };
        match (policy, arrival) {
            (AckPolicy::OnArrival, Input::Delivered(delivery)) => {
                outbox.ack(&delivery).await;
                room.send(Input::Delivered(delivery));
            }
            (AckPolicy::OnArrival, Input::Handled(delivery)) => {
                outbox.ack(&delivery).await;
            }
            (_, arrival) => room.send(arrival),
        }
    }
}

/// Requests queued for the worker, at most.
pub const INPUT_QUEUE: usize = 10_000;
/// Most `sync` answers being read and published at once; more wait.
const SYNC_CONCURRENCY: usize = 8;
/// Committed batches waiting for the publisher; the worker commits the
/// next batch meanwhile and waits when this many are queued.
const PUBLISH_QUEUE: usize = 4;

/// One committed batch, handed from the worker to the publisher.
struct Done {
    /// PUBACKs owed ([`AckPolicy::AfterCommit`] only), in delivery order.
    acks: Vec<Delivery>,
    /// Inbox events, in commit order.
    events: Vec<(String, InboxEvent)>,
    /// Sends over their user's quota, answered without a seq.
    limited: Vec<(UserName, Rejection)>,
    /// `sync` requests to answer from the store once this batch is out.
    syncs: Vec<(UserName, i64, usize)>,
}

/// The worker: gather a batch, commit it, hand it to the publisher, and
/// go on with the next batch while that one is published.
async fn work(
    store: Store,
    mut input: mpsc::Receiver<Input>,
    config: BridgeConfig,
    publisher: mpsc::Sender<Done>,
) {
    let quota = Buckets::new(config.sends_per_second, config.send_burst);
    while let Some(first) = input.recv().await {
        let inputs = gather(first, &mut input, config.max_batch, config.linger).await;
        let mut requests = Vec::with_capacity(inputs.len());
        // Every QoS 1 publish of the batch, in delivery order: the broker
        // drops a client whose PUBACKs come out of order.
        let mut acks = Vec::new();
        let mut replies = Vec::new();
        // Sends over their user's quota: answered without touching the store.
        let mut limited = Vec::new();
        for input in inputs {
            match input {
                Input::Delivered(delivery) => {
                    let topic = &delivery.topic;
                    match request::decode(topic, &delivery.payload, config.max_body) {
                        Some(request) => match over_quota(&quota, &request) {
                            Some((user, rejection)) => limited.push((user, rejection)),
                            None => {
                                replies.push(None);
                                requests.push(request);
                            }
                        },
                        None => {
                            tracing::warn!(%topic, "bridge got a publish it does not serve; dropped")
                        }
                    }
                    if config.ack == AckPolicy::AfterCommit && delivery.owed.is_some() {
                        acks.push(delivery);
                    }
                }
                Input::Submitted(Submission { request, reply }) => {
                    match over_quota(&quota, &request) {
                        // The HTTP caller may have given up; the refusal stands.
                        Some((_, rejection)) => drop(reply.send(Outcome::Refused(rejection))),
                        None => {
                            replies.push(Some(reply));
                            requests.push(request);
                        }
                    }
                }
                Input::Handled(delivery) => acks.push(delivery),
            }
        }
        let requests = Arc::new(requests);
        let committed = if requests.is_empty() {
            Committed::default()
        } else {
            commit::commit_until_done(&store, requests.clone(), config.groups).await
        };
        for (reply, outcome) in replies.into_iter().zip(committed.outcomes) {
            if let Some(reply) = reply {
                // The HTTP caller may have given up; the outcome stands.
                let _ = reply.send(outcome);
            }
        }
        let syncs = requests
            .iter()
            .filter_map(|request| match request {
                Request::Sync { user, after, limit } => Some((user.clone(), *after, *limit)),
                _ => None,
            })
            .collect();
        let done = Done {
            acks,
            events: committed.events,
            limited,
            syncs,
        };
        if publisher.send(done).await.is_err() {
            return;
        }
    }
}

/// The batch that starts with `first`: whatever else is queued, and what
/// arrives within `linger`, up to `max` inputs.
async fn gather(
    first: Input,
    input: &mut mpsc::Receiver<Input>,
    max: usize,
    linger: Duration,
) -> Vec<Input> {
    let mut inputs = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while inputs.len() < max {
        match input.try_recv() {
            Ok(next) => inputs.push(next),
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, input.recv()).await {
                    Ok(Some(next)) => inputs.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    inputs
}

/// The one publisher: takes committed batches in commit order, so each
/// user's inbox events go out in seq order; PUBACKs (after-commit policy),
/// then inbox events, then quota refusals; then starts the batch's `sync`
/// answers, at most [`SYNC_CONCURRENCY`] at once, off the commit path.
async fn publish(
    outbox: Outbox,
    store: Store,
    mut batches: mpsc::Receiver<Done>,
    tap: Option<mpsc::Sender<Vec<(String, InboxEvent)>>>,
) {
    let replays = Arc::new(tokio::sync::Semaphore::new(SYNC_CONCURRENCY));
    while let Some(done) = batches.recv().await {
        for delivery in &done.acks {
            outbox.ack(delivery).await;
        }
        publish_events(&outbox, &done.events).await;
        if let (Some(tap), false) = (&tap, done.events.is_empty()) {
            if tap.try_send(done.events).is_err() {
                metrics::counter!("bluetick_bridge_tap_dropped_total").increment(1);
            }
        }
        for (user, rejection) in done.limited {
            // Not stored: the sender is connected (it just published), and a
            // lost refusal only means the SDK resends a little later.
            let refusal = InboxEvent {
                seq: None,
                event: Event::Error(ErrorEvent {
                    client_id: rejection.client_id,
                    on: "send".to_owned(),
                    code: rejection.code,
                    message: rejection.message,
                }),
            };
            publish_event(&outbox, user.as_str(), &refusal).await;
        }
        for (user, after, limit) in done.syncs {
            // The semaphore is never closed, so acquiring cannot fail.
            let Ok(turn) = replays.clone().acquire_owned().await else {
                return;
            };
            let (outbox, store) = (outbox.clone(), store.clone());
            tokio::spawn(async move {
                replay(&outbox, &store, &user, after, limit).await;
                drop(turn);
            });
        }
    }
}

/// A send over its user's quota: the user and the refusal. Counted for
/// operators; the sender is told to retry.
fn over_quota(quota: &Buckets, request: &Request) -> Option<(UserName, Rejection)> {
    let (Request::Send { sender, send, .. } | Request::GroupSend { sender, send, .. }) = request
    else {
        return None;
    };
    if quota.allow(sender.as_str(), std::time::Instant::now()) {
        return None;
    }
    metrics::counter!("bluetick_sends_rate_limited_total").increment(1);
    Some((
        sender.clone(),
        Rejection {
            client_id: Some(send.id.clone()),
            code: ErrorCode::RateLimited,
            message: "over your send quota; resend later".to_owned(),
        },
    ))
}

/// The topic and payload of an inbox event; `None` (logged) if it does not
/// serialize.
fn inbox_message(user: &str, event: &InboxEvent) -> Option<(String, Vec<u8>)> {
    match serde_json::to_vec(event) {
        Ok(payload) => Some((format!("{}{user}/inbox", topics::USER_PREFIX), payload)),
        Err(e) => {
            tracing::error!(error = %e, "inbox event does not serialize");
            None
        }
    }
}

async fn publish_event(outbox: &Outbox, user: &str, event: &InboxEvent) {
    if let Some((topic, payload)) = inbox_message(user, event) {
        outbox.publish(topic, payload, false).await;
    }
}

/// Publishes inbox events in order (in process: one wakeup for all).
async fn publish_events(outbox: &Outbox, events: &[(String, InboxEvent)]) {
    let messages = events
        .iter()
        .filter_map(|(user, event)| inbox_message(user, event))
        .collect();
    outbox.publish_all(messages).await;
}

/// Answers `sync {after, limit}`: up to `limit` events, then a `synced`
/// marker saying whether more remain and whether events this device never
/// fetched were pruned.
async fn replay(outbox: &Outbox, store: &Store, user: &UserName, after: i64, limit: usize) {
    let (reader, name) = (store.clone(), user.to_string());
    let read = move || -> Result<_, store::StoreError> {
        let floor = reader.prune_floor(&name)?;
        Ok((reader.inbox_after(&name, after.max(floor), limit)?, floor))
    };
    let (events, floor) = match tokio::task::spawn_blocking(read).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::error!(error = %e, user = %user, "sync failed; the client will ask again");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "sync task failed");
            return;
        }
    };
    let pruned_through = (floor > after).then_some(floor);
    let through = events
        .last()
        .and_then(|e| e.seq)
        .unwrap_or(after.max(floor));
    let more = events.len() == limit;
    // Messages a device got by sync rather than live: in a cluster, the
    // share the bus did not deliver (docs/scaling.md).
    let messages = events
        .iter()
        .filter(|e| matches!(e.event, Event::Message(_)))
        .count();
    metrics::counter!("bluetick_bridge_replayed_messages_total").increment(messages as u64);
    let events: Vec<_> = events.into_iter().map(|e| (user.to_string(), e)).collect();
    publish_events(outbox, &events).await;
    let marker = InboxEvent {
        seq: None,
        event: Event::Synced(SyncedEvent {
            through,
            more,
            pruned_through,
        }),
    };
    publish_event(outbox, user.as_str(), &marker).await;
}
