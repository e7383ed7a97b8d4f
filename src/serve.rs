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
//! ready
//! ```

use anyhow::Context;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::commands::open_store;
use crate::config::{Config, LogConfig, LogFormat};
use crate::http::{self, AppState};

/// How long shutdown waits for in-flight HTTP requests and session events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(config: Config) -> anyhow::Result<()> {
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
        tokio::task::spawn_blocking(move || open_store(&config)).await??
    };
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
    let bridge = bridge::Bridge::start(
        bridge_config(&config, broker.mqtt_addr, service_secret),
        store.clone(),
    )
    .await
    .context("starting the bridge")?;
    let bridge = Arc::new(bridge);
    let recorder = tokio::spawn(track_connections(
        store.clone(),
        config.node.clone(),
        events,
        bridge.presence(),
    ));

    let http_listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.addr))?;
    let http_addr = http_listener.local_addr()?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let media = Arc::new(crate::media::MediaService::open(&config)?);
    let state = AppState {
        store: store.clone(),
        metrics,
        authenticator: broker.authenticator(),
        presence_policy: broker.presence_policy(),
        login_throttle: Arc::new(http::throttle::LoginThrottle::new(
            config.auth.max_login_failures.max(1),
            Duration::from_secs(config.auth.login_window_secs),
        )),
        bridge: bridge.clone(),
        max_body: config.messages.max_body,
        token_ttl: Duration::from_secs(config.auth.token_ttl_days * 86_400),
        device_backup_max_bytes: config.jobs.device_backup_max_bytes,
        device_backups_kept: config.jobs.device_backups_kept,
        shutting_down: shutting_down.clone(),
        media: media.clone(),
    };
    let app = http::router(state, config.http.max_json_body);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_server = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });

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
        writeln!(out, "ready")?;
        out.flush()?;
    }
    tracing::info!(mqtt = %broker.mqtt_addr, ws = ?broker.ws_addr, tls = ?broker.tls_addr, http = %http_addr, backend = ?store.backend(), "bluetick is serving");

    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down: no new connections, draining");
    shutting_down.store(true, Ordering::SeqCst);
    broker.stop_accepting();
    let _ = stop_http.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, http_server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP requests still running after the drain timeout"),
    }
    // A job cut off here keeps its lease until it expires and its run
    // stays `running` until this node starts again (then marked failed).
    for task in scheduler {
        task.abort();
    }
    heartbeat.abort();
    // The process is about to drop every MQTT connection; the session rows
    // go with them rather than waiting for the next start to clear them.
    // Anything the bridge has not committed stays unacknowledged; clients
    // resend it to the next server.
    bridge.stop();
    recorder.abort();
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

/// Keeps the `sessions` table and presence true to the guard's connect and
/// disconnect events, in the order they happened.
async fn track_connections(
    store: store::Store,
    node: String,
    mut events: tokio::sync::mpsc::UnboundedReceiver<broker::ConnectionEvent>,
    presence: Arc<bridge::Tracker>,
) {
    while let Some(event) = events.recv().await {
        if event.user.is_empty() {
            continue;
        }
        let (user, at) = (event.user.clone(), event.at_ms);
        let (writer, node) = (store.clone(), node.clone());
        match tokio::task::spawn_blocking(move || broker::events::apply(&writer, &node, event))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not update the sessions table"),
            Err(e) => tracing::warn!(error = %e, "sessions writer task failed"),
        }
        presence.refresh(&user, at).await;
    }
}

fn bridge_config(
    config: &Config,
    broker: std::net::SocketAddr,
    secret: String,
) -> bridge::BridgeConfig {
    let host = match broker.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    bridge::BridgeConfig {
        host,
        port: broker.port(),
        username: broker::guard::SERVICE_USER.to_owned(),
        password: secret,
        client_id: format!("bluetick-bridge-{}", config.node),
        max_body: config.messages.max_body,
        max_batch: config.bridge.max_batch,
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
    }
}

fn broker_config(config: &Config, service_secret: &str) -> broker::BrokerConfig {
    let mqtt = &config.mqtt;
    broker::BrokerConfig {
        mqtt_addr: mqtt.addr,
        ws_addr: mqtt.ws_enabled.then_some(mqtt.ws_addr),
        tls: config.tls(),
        max_connections: mqtt.max_connections,
        max_packet_size: mqtt.max_packet_size,
        max_inflight: mqtt.max_inflight,
        connect_timeout: Duration::from_secs(mqtt.connect_timeout_secs),
        ws_handshake_timeout: Duration::from_secs(mqtt.ws_handshake_timeout_secs),
        segment_size: mqtt.segment_size,
        segment_count: mqtt.segment_count,
        auth_cache_ttl: Duration::from_secs(config.auth.cache_ttl_secs),
        dev_open: config.dev_open,
        node: config.node.clone(),
        service_secret: Some(service_secret.to_owned()),
        service_filters: bridge::filters(),
        service_segment_size: config.bridge.segment_size,
        service_segment_count: config.bridge.segment_count,
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
