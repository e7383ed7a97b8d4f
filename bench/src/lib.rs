//! `bluetick bench`: end-to-end chat load against a server the bench
//! starts itself, with raw-relay baselines in the same run; and
//! `bluetick bench connections`, many idle connections at once; and
//! `bluetick bench history`, read latency of history and search.
//!
//! - `load`: the chat clients and what they time;
//! - `groups`: the groups of `--pattern groups`, created over HTTP first;
//! - `relay`: the raw QoS 1 relay baseline;
//! - `connections`: idle connections and memory per connection;
//! - `history`: history, chat list and search latency over a big corpus;
//! - `server`: the processes under test (bluetick, Mosquitto);
//! - `target`: users for a server already running elsewhere (`--target`);
//! - `stats`, `report`: percentiles, the table, JSON and SVG.
//!
//! All traffic stays on loopback, and every loop is bounded by the
//! configured duration or count.

mod connections;
mod groups;
mod history;
mod load;
mod relay;
mod report;
mod server;
mod stats;
mod target;

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use store::{Store, StoreOptions};

use load::{LoadConfig, Pattern};
use report::Report;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Hold many idle connections, each a user logged in by token with its
    /// inbox subscribed; report connect rate and times, and memory per
    /// connection.
    Connections(ConnectionsArgs),
    /// Latency of history pages, the chat list and search over many stored
    /// messages.
    History(history::HistoryArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// Users, each on its own MQTT connection (even, for pairs).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Who writes to whom.
    #[arg(long, value_enum, default_value_t = Pattern::Pairs)]
    pattern: Pattern,
    /// With `--pattern groups`: members per group (`--users` is a multiple
    /// of it); each message is delivered to the other N − 1.
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Messages per second over all users; 0 sends as fast as it goes.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Most unacknowledged sends per user.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Database for the server under test (default: SQLite in a fresh
    /// directory); a `postgres://` URL benches PostgreSQL.
    #[arg(long = "store-url")]
    store_url: Option<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench.json")]
    json: PathBuf,
    /// Where to write the SVG charts.
    #[arg(long, default_value = "bench.svg")]
    svg: PathBuf,
    /// Publisher/subscriber pairs in the relay baselines.
    #[arg(long, default_value_t = 4)]
    relay_pairs: usize,
    /// Seconds each relay baseline runs; 0 skips the baselines.
    #[arg(long, default_value_t = 10)]
    relay_seconds: u64,
    /// Bench a server that is already running, at this MQTT address
    /// (plain TCP), instead of starting one. Needs `--target-http`.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<std::net::SocketAddr>,
    /// That server's HTTP API, for users, tokens and its metrics.
    #[arg(long, value_name = "HOST:PORT", requires = "target")]
    target_http: Option<std::net::SocketAddr>,
    /// With `--target`: log in these users (`name:password` a line; the
    /// first `--users` are used) instead of registering new ones.
    #[arg(long, value_name = "FILE", requires = "target")]
    credentials: Option<PathBuf>,
}

#[derive(Args)]
struct ConnectionsArgs {
    /// Connections to open, each as its own user.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Connects started per second (a storm at a fixed rate); without it,
    /// a burst as fast as they go.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to hold them before measuring memory.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Keepalive the connections announce (they stay silent).
    #[arg(long, default_value_t = 600)]
    keepalive: u16,
    /// Database for the server under test (default: SQLite).
    #[arg(long = "store-url")]
    store_url: Option<String>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let fds = connections::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.what {
            Some(BenchWhat::Connections(c)) => bench_connections(c, fds).await,
            Some(BenchWhat::History(h)) => history::run(h).await,
            None => bench_load(args.load).await,
        }
    })
}

/// The server's database, opened by the bench to register its users.
fn bench_store(database_url: &str, max_connections: u32) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections,
        ..Default::default()
    };
    Ok(Store::open(database_url, &options)?)
}

/// Registers `count` users named `{prefix}_{i}` and returns (user, token).
async fn provision(
    database_url: &str,
    data_dir: &std::path::Path,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let store = bench_store(database_url, 4)?;
    let _ = data_dir;
    let mut tasks = Vec::new();
    for chunk in (0..count)
        .collect::<Vec<_>>()
        .chunks(count.div_ceil(2).max(1))
    {
        let (store, chunk, prefix) = (store.clone(), chunk.to_vec(), prefix.to_owned());
        tasks.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<Vec<(String, String)>> {
                let mut users = Vec::new();
                for i in chunk {
                    let user = store.create_user(&format!("{prefix}_{i}"), "bench password")?;
                    let token = store.issue_token(&user, Duration::from_secs(86_400))?;
                    users.push((user.to_string(), token.token));
                }
                Ok(users)
            },
        ));
    }
    let mut users = Vec::new();
    for task in tasks {
        users.extend(task.await??);
    }
    users.sort_by_key(|(name, _)| {
        name.rsplit('_')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
    });
    Ok(users)
}

fn run_prefix() -> String {
    format!("b{:05x}", rand::random::<u32>() & 0xfffff)
}

async fn bench_load(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    anyhow::ensure!(
        args.pattern != Pattern::Pairs || args.users % 2 == 0,
        "--pattern pairs needs an even --users"
    );
    anyhow::ensure!(
        args.pattern != Pattern::Groups
            || (args.group_size >= 2 && args.users.is_multiple_of(args.group_size)),
        "--pattern groups needs --group-size of at least 2 dividing --users (one group per N users)"
    );
    let mut local = None;
    let (store_name, mqtt, http, users) = match args.target {
        Some(mqtt) => {
            let http = args
                .target_http
                .context("--target needs --target-http (users, tokens and metrics come from it)")?;
            eprintln!("benching the server at {mqtt} (HTTP {http}); getting {} users…", args.users);
            let (credentials, prefix, count) = (args.credentials.clone(), run_prefix(), args.users);
            let users = tokio::task::spawn_blocking(move || {
                target::provision(http, credentials.as_deref(), &prefix, count)
            })
            .await??;
            (format!("running server at {mqtt}"), mqtt, Some(http), users)
        }
        None => {
            let store_name = if args
                .store_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres"))
            {
                "postgresql"
            } else {
                "sqlite"
            };
            eprintln!("starting a bluetick server ({store_name})…");
            let server = server::bluetick(args.store_url.as_deref(), false, &[])?;
            eprintln!("registering {} users…", args.users);
            // One password hash for all: a thousand users for a big
            // group are registered in a second, not a minute.
            let users = provision_many(&server.database_url, &run_prefix(), args.users).await?;
            let (mqtt, http) = (server.mqtt, server.http);
            local = Some(server);
            (store_name.to_owned(), mqtt, http, users)
        }
    };
    let groups = match args.pattern {
        Pattern::Groups => {
            let http = http.context("--pattern groups creates its groups over HTTP; the server has no HTTP listener")?;
            eprintln!(
                "creating {} groups of {}…",
                args.users / args.group_size.max(1),
                args.group_size
            );
            let (users, size) = (users.clone(), args.group_size);
            tokio::task::spawn_blocking(move || groups::create(http, &users, size)).await??
        }
        Pattern::Pairs | Pattern::Random => groups::Plan::default(),
    };
    let config = LoadConfig {
        pattern: args.pattern,
        rate: (args.rate > 0.0).then_some(args.rate),
        size: args.size,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        window: args.window.max(1),
        server_pid: local.as_ref().map(|server| server.pid()),
        groups: std::sync::Arc::new(groups),
    };
    let result = load::run(mqtt, &users, &config).await?;
    let server_rss = local.as_ref().and_then(|server| server.rss_bytes());
    // A running target's metrics listener is private; only a server the
    // bench started tells its broker's skips.
    let broker_drops = local
        .as_ref()
        .and_then(|server| server.metrics)
        .map(|metrics| server::metric(metrics, "bluetick_broker_cursor_jumps_total"))
        .unwrap_or(0.0) as u64;
    if let Some(server) = local
        .as_mut()
        .filter(|_| result.lost + result.duplicates + result.order_violations > 0)
    {
        // Keep the evidence: the server's log and database outlive the run.
        let kept = server.keep_data_dir();
        eprintln!(
            "the run was not clean; the server's log and database are kept in {}",
            kept.display()
        );
        for line in server::log_problems(&kept.join(launch::LOG_FILE), 20) {
            eprintln!("  server: {line}");
        }
    }
    drop(local);

    let mut relays = Vec::new();
    if args.relay_seconds > 0 {
        let seconds = Duration::from_secs(args.relay_seconds);
        eprintln!("baseline: raw QoS 1 relay through the embedded broker…");
        let embedded = server::bluetick(None, true, &[])?;
        relays.push(
            relay::run(
                "embedded rumqttd",
                embedded.mqtt,
                args.relay_pairs,
                args.size,
                seconds,
            )
            .await?,
        );
        drop(embedded);
        eprintln!("baseline: raw QoS 1 relay through Mosquitto…");
        match server::mosquitto() {
            Ok(mosquitto) => relays.push(
                relay::run(
                    "mosquitto",
                    mosquitto.addr,
                    args.relay_pairs,
                    args.size,
                    seconds,
                )
                .await?,
            ),
            Err(e) => eprintln!("!!! no Mosquitto baseline: {e:#}"),
        }
    }

    // 20 round-width buckets up to about the p99; slower ones share the last.
    let bucket_ms = report::nice_ceiling(result.send_to_deliver.percentiles().p99_ms / 20.0).max(0.5);
    let report = Report {
        store: store_name,
        users: args.users,
        pattern: format!("{:?}", args.pattern).to_lowercase(),
        group_size: (args.pattern == Pattern::Groups).then_some(args.group_size),
        rate: config.rate,
        size: args.size,
        duration_secs: args.duration as f64,
        sent: result.sent,
        expected: result.expected,
        received: result.received,
        lost: result.lost,
        lost_after_ack: result.lost_sends.iter().filter(|l| l.acked).count() as u64,
        lost_sends: result.lost_sends.clone(),
        duplicates: result.duplicates,
        order_violations: result.order_violations,
        sustained_messages_per_second: result.sustained_per_second,
        deliveries_per_second: result.deliveries_per_second,
        send_to_ack: result.send_to_ack.percentiles(),
        send_to_deliver: result.send_to_deliver.percentiles(),
        send_to_delivered_receipt: result.send_to_receipt.percentiles(),
        server_rss_bytes: server_rss,
        bench_cpu_percent: result.bench_cpu_percent,
        server_cpu_percent: result.server_cpu_percent,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        broker_drops,
        relays,
        throughput_series: result.receipts_per_second.clone(),
        histogram_bucket_ms: bucket_ms,
        deliver_histogram: result.send_to_deliver.histogram(bucket_ms, 25),
    };
    print!("{}", report.table());
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    std::fs::write(&args.svg, report.svg()?)
        .with_context(|| format!("writing {}", args.svg.display()))?;
    println!("wrote {} and {}", args.json.display(), args.svg.display());
    anyhow::ensure!(
        report.is_clean(),
        "messages were lost, duplicated or reordered (see above)"
    );
    Ok(())
}

async fn bench_connections(args: ConnectionsArgs, fds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        fds as usize > args.count + 1_000,
        "the open-file limit is {fds}; raise it (ulimit -Hn) to hold {} connections",
        args.count
    );
    anyhow::ensure!(
        args.rate.is_none_or(|rate| rate > 0.0),
        "--rate must be positive"
    );
    let limit = (args.count + 1_000).to_string();
    let server = server::bluetick(
        args.store_url.as_deref(),
        false,
        &[("BLUETICK_MQTT__MAX_CONNECTIONS", &limit)],
    )?;
    eprintln!("registering {} users…", args.count);
    let users = provision_many(&server.database_url, &run_prefix(), args.count).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let plan = connections::Plan {
        rate: args.rate,
        keepalive: args.keepalive,
        hold: Duration::from_secs(args.hold),
    };
    let result = connections::run(server.mqtt, server.pid(), &users, &plan).await?;
    print!("{}", result.table());
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Registers `count` users named `{prefix}_{i}`, with a token each, fast:
/// they share one password hash (one argon2 run for all), written in
/// transactions of a few thousand. Returns (user, token) in order.
async fn provision_many(
    database_url: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    const PER_TRANSACTION: usize = 2_000;
    let store = bench_store(database_url, 2)?;
    let prefix = prefix.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, String)>> {
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}_{i}")).collect();
        let mut users = Vec::with_capacity(count);
        for chunk in names.chunks(PER_TRANSACTION) {
            let issued =
                store.create_users_with_tokens(chunk, "bench password", Duration::from_secs(86_400))?;
            users.extend(
                issued
                    .into_iter()
                    .map(|(user, token)| (user.to_string(), token.token)),
            );
        }
        Ok(users)
    })
    .await?
}
