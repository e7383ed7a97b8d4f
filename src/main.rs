//! `bluetick`: the binary that assembles the crates.
//!
//! # Layout
//! - `config`: the one typed configuration (file, environment, flags),
//!   composed of the sections the crates own (`[mqtt]` in `broker`,
//!   `[http]`/`[auth]`/`[web]`/`[media]` in `api`, `[jobs]` in `jobs`).
//! - `open`: the store, message key and media object store, opened from
//!   the configuration.
//! - `serve`: wires store, broker, bridge, HTTP API (`api`, with the media
//!   service) and jobs into a running server and shuts it down cleanly.
//! - `commands`: the operator subcommands (`migrate`, `config`, `user`,
//!   `dlq`, and `chat`, which runs the `chat` crate).
//! - `operations`: `job`, `restore` and `user export`, on the `jobs` crate.
//!
//! `bluetick bench` is the `bench` crate. Logic that could live in a
//! library crate does: this crate parses arguments, wires, and prints.

mod commands;
mod config;
mod open;
mod operations;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use config::Config;

/// A WhatsApp-style chat backend that speaks MQTT.
#[derive(Parser)]
#[command(name = "bluetick", version, about)]
struct Cli {
    /// Config file (default: ./bluetick.toml if it exists).
    #[arg(long, global = true, env = config::CONFIG_FILE_VAR)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

/// Flags that override the config file and environment, so that scripts
/// and tests can run many servers side by side.
#[derive(Args, Default)]
struct Overrides {
    /// Directory for the SQLite database and local files.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `postgres://…` for PostgreSQL (default: SQLite under the data dir).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// MQTT over TCP (port 0 picks a free port).
    #[arg(long, global = true)]
    mqtt_addr: Option<SocketAddr>,
    /// MQTT over WebSocket at /mqtt (port 0 picks a free port).
    #[arg(long, global = true)]
    ws_addr: Option<SocketAddr>,
    /// HTTP API, health and metrics (port 0 picks a free port).
    #[arg(long, global = true)]
    http_addr: Option<SocketAddr>,
    /// Accept anonymous MQTT clients with no topic ACL. Never in production.
    #[arg(long, global = true)]
    dev_open: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: embedded MQTT broker, HTTP API, store.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Manage users.
    #[command(subcommand)]
    User(commands::UserCommand),
    /// Chat from the terminal (interactive, `send` or `listen`).
    Chat(chat::ChatArgs),
    /// Measure end-to-end chat load (and `bench connections`).
    Bench(bench::BenchArgs),
    /// Inspect and replay refused client payloads (dead letters).
    #[command(subcommand)]
    Dlq(commands::DlqCommand),
    /// List, inspect and run the operations jobs (backup, cleanup, …).
    #[command(subcommand)]
    Job(operations::JobCommand),
    /// Restore a backup (a file, or a key such as backups/bluetick-….zip)
    /// into an empty database.
    Restore { backup: String },
}

impl Overrides {
    fn apply(self, config: &mut Config) {
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(url) = self.database_url {
            config.database_url = Some(url);
        }
        if let Some(addr) = self.mqtt_addr {
            config.mqtt.addr = addr;
        }
        if let Some(addr) = self.ws_addr {
            config.mqtt.ws_addr = addr;
        }
        if let Some(addr) = self.http_addr {
            config.http.addr = addr;
        }
        if self.dev_open {
            config.dev_open = true;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bluetick: {e}");
            return ExitCode::from(2);
        }
    };
    cli.overrides.apply(&mut config);
    serve::init_logging(&config.log);
    let result = match cli.command {
        Command::Serve => serve::run(config),
        Command::Migrate => commands::migrate(&config),
        Command::Config => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::User(command) => commands::user(&config, command),
        Command::Dlq(command) => commands::dlq(&config, command),
        Command::Job(command) => operations::job(&config, command),
        Command::Restore { backup } => operations::restore(&config, &backup),
        Command::Chat(args) => commands::chat(&config, args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bluetick: {e:#}");
            ExitCode::FAILURE
        }
    }
}
