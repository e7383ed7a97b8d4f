//! Operator subcommands that work on the store directly, with or without a
//! running server.

use anyhow::Context;
use clap::Subcommand;
use protocol::presence::Privacy;
use std::time::Duration;
use store::{Store, StoreOptions};

use crate::config::Config;
use crate::open::{open_store, redacted};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Register a user.
    Add {
        name: String,
        /// The user's password (8-256 bytes).
        #[arg(long)]
        password: String,
    },
    /// Show or change a user's privacy settings.
    Privacy {
        name: String,
        /// Who may see last seen: everyone, contacts or nobody.
        #[arg(long)]
        last_seen: Option<String>,
        /// Send and receive read receipts: on or off.
        #[arg(long)]
        read_receipts: Option<String>,
    },
    /// Write a user's messages and media references to a zip of JSON.
    Export {
        name: String,
        /// Where to write it (default: NAME-export.zip).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Issue a fresh token for a user and print it, alone, on stdout.
    Token {
        name: String,
        /// Lifetime in days (default: auth.token_ttl_days).
        #[arg(long)]
        ttl_days: Option<u64>,
    },
}

pub fn migrate(config: &Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let store = Store::open(&url, &StoreOptions::default())
        .with_context(|| format!("opening {}", redacted(config)))?;
    let applied = store.migrate().context("applying migrations")?;
    if applied.is_empty() {
        println!("schema is up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}

pub fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    if let UserCommand::Export { name, output } = command {
        return crate::operations::export_user(config, &name, output);
    }
    let store = open_store(config)?;
    match command {
        UserCommand::Add { name, password } => {
            let user = store.create_user(&name, &password)?;
            eprintln!("user {user} added");
        }
        UserCommand::Privacy {
            name,
            last_seen,
            read_receipts,
        } => {
            let last_seen = last_seen
                .map(|v| {
                    Privacy::parse(&v).with_context(|| {
                        format!("--last-seen {v:?}: use everyone, contacts or nobody")
                    })
                })
                .transpose()?;
            let read_receipts = read_receipts
                .map(|v| match v.as_str() {
                    "on" => Ok(true),
                    "off" => Ok(false),
                    _ => anyhow::bail!("--read-receipts {v:?}: use on or off"),
                })
                .transpose()?;
            let user = protocol::UserName::parse(&name)?;
            let settings = store.update_settings(user.as_str(), last_seen, read_receipts)?;
            let receipts = if settings.read_receipts { "on" } else { "off" };
            println!(
                "last_seen={} read_receipts={receipts}",
                settings.last_seen.as_str()
            );
        }
        UserCommand::Token { name, ttl_days } => {
            let user = protocol::UserName::parse(&name)?;
            let days = ttl_days.unwrap_or(config.auth.token_ttl_days);
            let issued = store.issue_token(&user, Duration::from_secs(days * 86_400))?;
            println!("{}", issued.token);
        }
        UserCommand::Export { .. } => unreachable!("handled above"),
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List refused client payloads, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run a refused payload through the pipeline again, as if its sender
    /// had just published it. Events it produces reach devices at their
    /// next sync.
    Replay { id: i64 },
}

pub fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    match command {
        DlqCommand::List { limit } => {
            let letters = store.dead_letters(limit)?;
            if letters.is_empty() {
                eprintln!("no dead letters");
            }
            for letter in letters {
                let replayed = letter
                    .replayed_at
                    .map(|t| format!(" replayed_at={t}"))
                    .unwrap_or_default();
                let payload = String::from_utf8_lossy(&letter.payload);
                let preview: String = payload.chars().take(120).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}B{replayed}\t{preview}",
                    letter.id,
                    letter.created_at,
                    letter.user,
                    letter.topic,
                    letter.code,
                    letter.reason,
                    letter.size
                );
            }
        }
        DlqCommand::Replay { id } => {
            match bridge::replay::replay(
                &store,
                id,
                config.messages.max_body,
                config.groups.rules(),
            )? {
                Some(bridge::Outcome::Stored(ack)) => {
                    println!("dead letter {id}: stored as message {}", ack.id)
                }
                Some(bridge::Outcome::Refused(rejection)) => {
                    println!(
                        "dead letter {id}: refused again ({}: {})",
                        rejection.code, rejection.message
                    )
                }
                _ => println!("dead letter {id}: applied"),
            }
        }
    }
    Ok(())
}

/// `bluetick chat`, with `--as` minting tokens from this config's store.
pub fn chat(config: &Config, args: chat::ChatArgs) -> anyhow::Result<()> {
    let mint_token = |name: &str| -> anyhow::Result<String> {
        let store = open_store(config)?;
        let user = protocol::UserName::parse(name)?;
        Ok(store.issue_token(&user, chat::CHAT_TOKEN_TTL)?.token)
    };
    let local = chat::Local {
        mqtt_addr: config.mqtt.addr,
        tls_addr: config.mqtt.tls_addr,
        data_dir: &config.data_dir,
        mint_token: &mint_token,
        http_addr: config.http.addr,
    };
    chat::run(&local, args)
}
