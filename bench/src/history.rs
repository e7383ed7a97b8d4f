//! `bluetick bench history`: read latency of the HTTP history, chat list
//! and search over a large stored corpus.
//!
//! The corpus is written straight into the server's database with the
//! server's key (through the same store code the bridge uses, blind index
//! included), because this bench measures reads, not the send path. Bodies
//! are drawn from a synthetic vocabulary with a skewed (Zipf-like) word
//! frequency, so common words match many messages and rare ones few.
//! Every request is a fresh HTTP connection, timed from connect to the last
//! byte.

use anyhow::Context;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use store::messages::NewMessage;
use store::{Sealer, Store, StoreOptions};

use super::server::{self, http_get};
use super::stats::Samples;

#[derive(Args)]
pub struct HistoryArgs {
    /// Messages to store before measuring.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Users the messages are spread over (each talks to 5 peers).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Timed requests of each kind.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Database for the server under test (default: SQLite in a fresh
    /// directory); a `postgres://` URL benches PostgreSQL.
    #[arg(long = "store-url")]
    store_url: Option<String>,
}

/// Distinct words in the vocabulary.
const VOCABULARY: usize = 5_000;
/// Words per message body.
const WORDS_PER_BODY: usize = 12;
/// Messages written per transaction while seeding.
const SEED_BATCH: usize = 1_000;

/// Word `rank` of the vocabulary: pronounceable, unique, ASCII.
fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "su", "ta", "ve", "ri", "po", "da", "zu", "fe", "gi", "ho", "ju",
        "by",
    ];
    let mut n = rank + 16;
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    out
}

/// A word rank with frequency falling off like 1/rank.
fn skewed_rank(rng: &mut StdRng) -> usize {
    let x: f64 = rng.gen();
    ((VOCABULARY as f64).powf(x) as usize).saturating_sub(1)
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 6, "--users must be at least 6");
    eprintln!("starting a bluetick server…");
    let server = server::bluetick(args.store_url.as_deref(), false, &[])?;
    let http = server.http.context("the server has no HTTP listener")?;
    let users = super::provision(
        &server.database_url,
        server.data_dir.path(),
        &super::run_prefix(),
        args.users,
    )
    .await?;
    let store = Store::open(&server.database_url, &StoreOptions::default())?.with_sealer(
        Sealer::load_or_create(&server.data_dir.path().join("message.key"))?,
    );
    let names: Vec<String> = users.iter().map(|(name, _)| name.clone()).collect();
    let messages = args.messages;
    let seeded = tokio::task::spawn_blocking(move || seed(&store, &names, messages)).await??;
    eprintln!("stored {messages} messages in {seeded:.1?}");
    // Search reads the index, which the server's indexer writes after the
    // fact: wait until it has every seeded message (ids 1..=messages).
    let indexing = Instant::now();
    let deadline = indexing + Duration::from_secs(600);
    let metrics = server.metrics.context("the server has no metrics listener")?;
    while server::metric(metrics, "bluetick_search_indexed_through") < messages as f64 {
        anyhow::ensure!(Instant::now() < deadline, "the search indexer did not catch up in 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "indexed in {:.1?} after the last was stored ({:.0} messages/s over seeding and catching up)",
        indexing.elapsed(),
        messages as f64 / (seeded + indexing.elapsed()).as_secs_f64()
    );

    let mut rng = StdRng::seed_from_u64(7);
    let peer_of = |user: usize, rng: &mut StdRng| (user + rng.gen_range(1..=5)) % users.len();
    // (what, latencies, mean items per page)
    let mut kinds: Vec<(&str, Samples, f64)> = Vec::new();
    let mut time = |name: &'static str, paths: Vec<(String, usize)>| -> anyhow::Result<()> {
        let mut samples = Samples::default();
        let mut items = 0;
        let requests = paths.len().max(1);
        for (path, user) in paths {
            let started = Instant::now();
            let (status, body) = http_get(http, &path, Some(&users[user].1))?;
            samples.record(started.elapsed());
            anyhow::ensure!(status == 200, "{path}: {status} {body}");
            let page: serde_json::Value = serde_json::from_str(&body)?;
            items += page["items"].as_array().map_or(0, Vec::len);
        }
        kinds.push((name, samples, items as f64 / requests as f64));
        Ok(())
    };
    let newest_pages = (0..args.queries)
        .map(|_| {
            let user = rng.gen_range(0..users.len());
            let peer = &users[peer_of(user, &mut rng)].0;
            (format!("/v1/chats/{peer}/messages?limit=50"), user)
        })
        .collect();
    time("history, newest page (50)", newest_pages)?;
    let deep_pages = (0..args.queries)
        .map(|_| {
            let user = rng.gen_range(0..users.len());
            let peer = &users[peer_of(user, &mut rng)].0;
            let before = rng.gen_range(1..=messages as i64);
            (
                format!("/v1/chats/{peer}/messages?limit=50&before={before}"),
                user,
            )
        })
        .collect();
    time("history, older page (50)", deep_pages)?;
    let chat_lists = (0..args.queries)
        .map(|_| ("/v1/chats".to_owned(), rng.gen_range(0..users.len())))
        .collect();
    time("chat list", chat_lists)?;
    let one_word = (0..args.queries)
        .map(|_| {
            let q = word(skewed_rank(&mut rng));
            (
                format!("/v1/search?q={q}&limit=50"),
                rng.gen_range(0..users.len()),
            )
        })
        .collect();
    time("search, one word", one_word)?;
    let two_words = (0..args.queries)
        .map(|_| {
            let (a, b) = (word(skewed_rank(&mut rng)), word(skewed_rank(&mut rng)));
            (
                format!("/v1/search?q={a}+{b}&limit=50"),
                rng.gen_range(0..users.len()),
            )
        })
        .collect();
    time("search, two words", two_words)?;
    let common = (0..args.queries)
        .map(|_| {
            let user = rng.gen_range(0..users.len());
            let peer = &users[peer_of(user, &mut rng)].0;
            (
                format!("/v1/search?q={}&peer={peer}&limit=50", word(0)),
                user,
            )
        })
        .collect();
    time("search, commonest word, one chat", common)?;

    let backend = if server.database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "\nHTTP read latency over {messages} stored messages, {} users, {backend} ({} requests each)\n",
        users.len(),
        args.queries
    );
    println!("| request | items/page | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, samples, items) in &kinds {
        let p = samples.percentiles();
        println!(
            "| {name} | {items:.1} | {:.2} | {:.2} | {:.2} |",
            p.p50_ms, p.p99_ms, p.max_ms
        );
    }
    Ok(())
}

/// Writes `count` messages between each user and their next five users.
fn seed(store: &Store, names: &[String], count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    let mut written = 0;
    let mut last_report = Instant::now();
    while written < count {
        let batch = SEED_BATCH.min(count - written);
        store.transaction(|tx| -> Result<(), store::StoreError> {
            for n in written..written + batch {
                let sender = rng.gen_range(0..names.len());
                let recipient = (sender + rng.gen_range(1..=5)) % names.len();
                let body: Vec<String> = (0..WORDS_PER_BODY)
                    .map(|_| word(skewed_rank(&mut rng)))
                    .collect();
                tx.store_message(&NewMessage {
                    sender: &names[sender],
                    recipient: &names[recipient],
                    client_id: &format!("seed-{n}"),
                    body: &body.join(" "),
                    media: None,
                    sent_at: store::clock::now_ms(),
                    expires_at: None,
                })?;
            }
            Ok(())
        })?;
        written += batch;
        if last_report.elapsed() > Duration::from_secs(5) || written == count {
            let rate = written as f64 / started.elapsed().as_secs_f64();
            eprintln!("  seeded {written}/{count} ({rate:.0} msg/s)");
            last_report = Instant::now();
        }
    }
    Ok(started.elapsed())
}
