//! `bluetick serve`: wire the store, the broker and the HTTP API together,
//! run until SIGTERM or SIGINT, then shut down in order.
//!
//! Start-up prints one line per listener on stdout, in this exact format
//! (scripts and tests parse it; logs go to stderr):
//!
//! ```text
//! listening mqtt 127.0.0.1:1883
//! listening ws 127.0.0.1:8083
//! listening tls 127.0.0.1:8883     (only when TLS is configured)
//! listening http 127.0.0.1:8080
//! listening metrics 127.0.0.1:9464
//! ready
//! ```

use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::config::{Config, LogConfig, LogFormat};
use crate::open::{self, open_store_with};
use api::{self as http, AppState};

/// How long shutdown waits for in-flight HTTP requests and session events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only help a person at a terminal; in a log file or
        // a collector they are noise that breaks grep.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(config: Config) -> anyhow::Result<()> {
    return_freed_memory_to_the_system();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bluetick")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    metrics::gauge!("bluetick_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store_with(&config, true)).await??
    };
    {
        // Before any message can arrive: see `start_search_cursor`.
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.start_search_cursor()).await??;
    }
    let checkpoints = tokio::spawn(run_checkpoints(
        store.clone(),
        Duration::from_millis(config.store.checkpoint_interval_ms.max(10)),
    ));
    let stale = {
        let (store, node) = (store.clone(), config.node.clone());
        tokio::task::spawn_blocking(move || store.clear_node_sessions(&node)).await??
    };
    if stale > 0 {
        tracing::info!(count = stale, node = %config.node, "cleared sessions left by an unclean stop");
    }
    let abandoned = {
        let (store, node) = (store.clone(), config.node.clone());
        tokio::task::spawn_blocking(move || store.abandon_runs(&node)).await??
    };
    if abandoned > 0 {
        tracing::warn!(count = abandoned, node = %config.node, "job runs left unfinished by an unclean stop marked failed");
    }
    let heartbeat = jobs::scheduler::heartbeat(
        store.clone(),
        config.node.clone(),
        Duration::from_secs(config.jobs.heartbeat_secs.max(1)),
    );
    // Planned before anything listens, so a bad schedule stops the start.
    let planned = jobs::scheduler::plan(&config.jobs.schedules, &config.jobs.timezone)
        .context("jobs.schedules")?;

    // The bridge's password lives only in this process: it is made fresh at
    // every start and handed to the broker and the bridge directly.
    let service_secret = store::tokens::random_secret();
    let (broker, events) =
        broker::Broker::start(broker_config(&config, &service_secret), store.clone())
            .await
            .context("starting the MQTT broker")?;
    let cluster = match cluster_config(&config, broker.mqtt_addr, &service_secret) {
        Some(settings) => {
            let authenticator = broker.authenticator();
            let revoke: cluster::Revoke = Arc::new(move |hash| authenticator.revoke_hash(hash));
            let cluster = cluster::Cluster::start(settings, revoke)
                .await
                .context("joining the cluster")?;
            Some(Arc::new(cluster))
        }
        None => None,
    };
    let client_id = format!("bluetick-bridge-{}", config.node);
    let endpoint = if config.bridge.in_process {
        let (tx, rx) = broker
            .local_link(&client_id)
            .await
            .context("linking the bridge to the router")?;
        bridge::Endpoint::Local { tx, rx }
    } else {
        bridge::Endpoint::Mqtt(bridge::MqttEndpoint {
            host: broker::loopback_of(broker.mqtt_addr).ip().to_string(),
            port: broker.mqtt_addr.port(),
            username: broker::guard::SERVICE_USER.to_owned(),
            password: service_secret,
            client_id,
        })
    };
    let taps = cluster.as_ref().map(|cluster| {
        let taps = cluster.taps();
        bridge::Taps {
            committed: taps.committed,
            live: taps.live,
        }
    });
    let bridge = bridge::Bridge::start_tapped(bridge_config(&config, store.backend()), store.clone(), endpoint, taps)
        .await
        .context("starting the bridge")?;
    let bridge = Arc::new(bridge);
    let (presence, devices) = (bridge.presence(), cluster.clone());
    let recorder = tokio::spawn(broker::events::record(
        store.clone(),
        config.node.clone(),
        events,
        move |event: broker::ConnectionEvent| {
            let (presence, cluster) = (presence.clone(), devices.clone());
            async move {
                let Some(user) = &event.user else { return };
                if let (Some(cluster), Some(token_hash)) = (&cluster, &event.token_hash) {
                    match event.kind {
                        broker::EventKind::Connected => {
                            cluster.device_connected(user.as_str(), &event.client_id, token_hash)
                        }
                        broker::EventKind::Disconnected => {
                            cluster.device_disconnected(user.as_str(), &event.client_id)
                        }
                    }
                }
                presence.refresh(user.as_str(), event.at_ms).await
            }
        },
    ));

    let http_listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.addr))?;
    let http_addr = http_listener.local_addr()?;
    let metrics_listener = TcpListener::bind(config.http.metrics_addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.http.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let media = Arc::new(api::media_service::MediaService::new(
        open::media_objects(&config)?,
        &config.media,
    ));
    let state = AppState {
        store: store.clone(),
        authenticator: broker.authenticator(),
        presence_policy: broker.presence_policy(),
        accounts: Arc::new(config.auth.account_limits()),
        bridge: bridge.clone(),
        max_body: config.messages.max_body,
        token_ttl: Duration::from_secs(config.auth.token_ttl_days * 86_400),
        device_backup_max_bytes: config.jobs.device_backup_max_bytes,
        device_backups_kept: config.jobs.device_backups_kept,
        shutting_down: shutting_down.clone(),
        media: media.clone(),
        web: Arc::new(http::web::ClientSettings {
            ws_addr: broker.ws_addr,
            ws_url: Some(config.web.ws_url.clone()).filter(|url| !url.is_empty()),
        }),
        cluster: cluster.clone(),
    };
    let app = http::router(state, config.http.max_json_body);
    let limits = http::listener::ConnectionLimits {
        header_timeout: Duration::from_secs(config.http.header_timeout_secs.max(1)),
        max_connections: config.http.max_connections,
    };
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let http_server = tokio::spawn(http::listener::serve(
        http_listener,
        app,
        limits,
        http_stopped.clone(),
    ));
    // Metrics get a small limit of their own: a scraper needs one or two.
    let metrics_server = tokio::spawn(http::listener::serve(
        metrics_listener,
        http::metrics_router(metrics),
        http::listener::ConnectionLimits {
            max_connections: 16,
            ..limits
        },
        http_stopped,
    ));
    let gauges = tokio::spawn(http::refresh_gauges(
        store.clone(),
        Duration::from_secs(config.http.metrics_refresh_secs.max(1)),
    ));

    let indexer = if config.search.indexer_enabled {
        Some(run_indexer(
            &store,
            config.search.index_batch.max(1),
            Duration::from_millis(config.search.index_interval_ms.max(1)),
        )?)
    } else {
        tracing::info!("search.indexer_enabled is false: new messages wait for another node's indexer to become searchable");
        None
    };

    let scheduler = if config.jobs.enabled {
        let context = crate::operations::context(
            &config,
            store.clone(),
            &config.node,
            media.objects.clone(),
            tokio::runtime::Handle::current(),
        );
        jobs::scheduler::spawn(Arc::new(context), planned)
    } else {
        tracing::info!("jobs.enabled is false: no scheduled jobs on this node");
        Vec::new()
    };

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening mqtt {}", broker.mqtt_addr)?;
        if let Some(ws) = broker.ws_addr {
            writeln!(out, "listening ws {ws}")?;
        }
        if let Some(tls) = broker.tls_addr {
            writeln!(out, "listening tls {tls}")?;
        }
        writeln!(out, "listening http {http_addr}")?;
        writeln!(out, "listening metrics {metrics_addr}")?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    tracing::info!(mqtt = %broker.mqtt_addr, ws = ?broker.ws_addr, tls = ?broker.tls_addr, http = %http_addr, backend = ?store.backend(), "bluetick is serving");

    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down: no new connections, draining");
    shutting_down.store(true, Ordering::SeqCst);
    broker.stop_accepting();
    let _ = stop_http.send(true);
    match tokio::time::timeout(DRAIN_TIMEOUT, http_server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP requests still running after the drain timeout"),
    }
    metrics_server.abort();
    gauges.abort();
    // A job cut off here keeps its lease until it expires and its run
    // stays `running` until this node starts again (then marked failed).
    for task in scheduler {
        task.abort();
    }
    heartbeat.abort();
    // The indexer stops after its current pass commits; the next start
    // resumes from the cursor.
    if let Some(indexer) = indexer {
        tokio::task::spawn_blocking(move || indexer.stop()).await?;
    }
    checkpoints.abort();
    // The process is about to drop every MQTT connection; the session rows
    // go with them rather than waiting for the next start to clear them.
    // Anything the bridge has not committed stays unacknowledged; clients
    // resend it to the next server.
    bridge.stop();
    recorder.abort();
    if let Some(cluster) = &cluster {
        cluster.stop();
    }
    let closing = store.clone();
    let node = config.node.clone();
    tokio::task::spawn_blocking(move || {
        closing.clear_node_sessions(&node)?;
        closing.close()
    })
    .await??;
    tracing::info!("store closed; bye");
    Ok(())
}

/// Makes freed large allocations go back to the system at once.
///
/// glibc raises its mmap threshold after the first large block is freed,
/// so later argon2 blocks (about 19 MiB each) come from the heap arenas,
/// which keep them: 40 concurrent logins left the process 720 MB bigger
/// for good. A fixed threshold keeps every block of 1 MiB or more in its
/// own mapping, unmapped when freed, and a cap on arenas keeps the many
/// blocking-pool threads from each holding a heap of their own.
fn return_freed_memory_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets allocator parameters; it is called
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, (2 * cores) as libc::c_int);
        }
    }
}

/// Starts the search indexer's thread (`store::indexer::Follower`), which
/// reports each pass here: to the metrics, and failures to the log.
fn run_indexer(store: &store::Store, batch: usize, interval: Duration) -> std::io::Result<store::indexer::Follower> {
    // The failure counter says how many times; the log says what, at most
    // once per 10 s.
    let warnings = broker::ratelog::RateLimitedLog::default();
    store.follow_messages(batch, interval, move |pass| match pass {
        Ok(pass) => {
            metrics::counter!("bluetick_search_indexed_total").increment(pass.indexed as u64);
            metrics::counter!("bluetick_search_unindexable_total").increment(pass.unreadable as u64);
            metrics::gauge!("bluetick_search_indexed_through").set(pass.through as f64);
            metrics::gauge!("bluetick_search_index_lag_messages")
                .set((pass.newest - pass.through).max(0) as f64);
        }
        Err(error) => {
            metrics::counter!("bluetick_search_index_errors_total").increment(1);
            warnings.note(|held_back| tracing::warn!(%error, held_back, "search indexer pass failed; retrying"));
        }
    })
}

/// SQLite: checkpoints the WAL every `interval`, so commits never do.
async fn run_checkpoints(store: store::Store, interval: Duration) {
    if store.backend() != store::Backend::Sqlite {
        return;
    }
    // The failure counter says how many times; the log says what, at most
    // once per 10 s.
    let warnings = broker::ratelog::RateLimitedLog::default();
    loop {
        tokio::time::sleep(interval).await;
        let store = store.clone();
        let done = tokio::task::spawn_blocking(move || store.checkpoint()).await;
        if !matches!(done, Ok(Ok(()))) {
            metrics::counter!("bluetick_sqlite_checkpoint_errors_total").increment(1);
            warnings.note(|held_back| {
                tracing::warn!(held_back, outcome = ?done.map(|r| r.err().map(|e| e.to_string())), "WAL checkpoint failed; retrying")
            });
        }
    }
}

/// The cluster link's settings, or `None` when `cluster.nats_urls` is
/// empty (one node, no NATS).
fn cluster_config(
    config: &Config,
    broker: std::net::SocketAddr,
    secret: &str,
) -> Option<cluster::ClusterConfig> {
    let nats_urls = config.cluster.urls();
    if nats_urls.is_empty() {
        return None;
    }
    let node = match config.cluster.node.as_str() {
        "" => config.node.clone(),
        named => named.to_owned(),
    };
    Some(cluster::ClusterConfig {
        nats_urls,
        node,
        broker: cluster::LocalBroker {
            host: broker::loopback_of(broker).ip().to_string(),
            port: broker.port(),
            username: broker::guard::SERVICE_USER.to_owned(),
            password: secret.to_owned(),
            max_packet_size: config.mqtt.max_packet_size,
        },
        queue: config.cluster.queue.max(1),
        presence_replicas: config.cluster.presence_replicas,
    })
}

fn bridge_config(config: &Config, backend: store::Backend) -> bridge::BridgeConfig {
    bridge::BridgeConfig {
        max_body: config.messages.max_body,
        max_batch: config.bridge.max_batch_for(backend),
        max_packet_size: config.mqtt.max_packet_size,
        sends_per_second: config.quotas.sends_per_second,
        send_burst: f64::from(config.quotas.send_burst),
        presence_interval: Duration::from_millis(config.quotas.presence_interval_ms),
        // The broker is embedded: it lives and dies with the bridge, so a
        // PUBACK on arrival loses nothing a client's resend does not cover.
        ack: if config.bridge.ack_on_arrival {
            bridge::AckPolicy::OnArrival
        } else {
            bridge::AckPolicy::AfterCommit
        },
        linger: Duration::from_micros(config.bridge.linger_us.min(2_000)),
        shed_above: config.bridge.shed_above,
        groups: config.groups.rules(),
    }
}

fn broker_config(config: &Config, service_secret: &str) -> broker::BrokerConfig {
    let mqtt = &config.mqtt;
    broker::BrokerConfig {
        mqtt_addr: mqtt.addr,
        ws_addr: mqtt.ws_enabled.then_some(mqtt.ws_addr),
        tls: config.mqtt.tls(),
        max_connections: mqtt.max_connections,
        max_packet_size: mqtt.max_packet_size,
        max_inflight: mqtt.max_inflight,
        connect_timeout: Duration::from_secs(mqtt.connect_timeout_secs),
        ws_handshake_timeout: Duration::from_secs(mqtt.ws_handshake_timeout_secs),
        segment_size: mqtt.segment_size,
        segment_count: mqtt.segment_count,
        auth_cache_ttl: Duration::from_secs(config.auth.cache_ttl_secs),
        auth_cache_capacity: broker::CacheCapacity {
            valid: config.auth.cache_capacity,
            invalid: config.auth.negative_cache_capacity,
        },
        dev_open: config.dev_open,
        node: config.node.clone(),
        service_secret: Some(service_secret.to_owned()),
        service_filters: bridge::filters(),
        service_segment_size: config.bridge.segment_size,
        service_segment_count: config.bridge.segment_count,
        event_queue_capacity: mqtt.event_queue_capacity,
        listen_backlog: mqtt.listen_backlog,
        login: broker::LoginLimits {
            max_pending: mqtt.max_pending_logins,
            max_pending_per_address: mqtt.max_pending_logins_per_address,
            timeout: Duration::from_secs(mqtt.login_timeout_secs),
        },
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
