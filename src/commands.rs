//! Operator subcommands that work on the store directly, with or without a
//! running server.

use anyhow::Context;
use clap::Subcommand;
use protocol::presence::Privacy;
use std::sync::Arc;
use std::time::Duration;
use store::{Sealer, Store, StoreOptions};

use crate::config::{Config, MediaStoreKind};

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

/// Opens the configured store with its message key and brings its schema
/// up to date.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    open_store_with(config, false)
}

/// [`open_store`], with SQLite's WAL checkpoints left to the caller's
/// background task (`bluetick serve` runs one) instead of commits.
pub fn open_store_with(config: &Config, background_checkpoints: bool) -> anyhow::Result<Store> {
    private_data_dir(config)?;
    let url = config.database_url();
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        sqlite_cache_kib: config.store.cache_mib.saturating_mul(1024),
        background_checkpoints,
        ..StoreOptions::default()
    };
    let store = Store::open(&url, &options)
        .with_context(|| format!("opening the database at {}", redacted(config)))?;
    for name in store.migrate().context("applying migrations")? {
        tracing::info!(migration = %name, "migration applied");
    }
    Ok(store
        .with_sealer(message_key(config, true)?)
        .with_dead_letter_quota(config.dead_letters.quota()))
}

/// Creates the data directory, or narrows an existing one, to 0700
/// whatever the umask: it holds the database, the message key and backups.
fn private_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    store::db::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

/// The configured message key: `messages.key`, else the key file, which is
/// created if missing only when `create` is set (a restore must use the
/// key of the server that took the backup, never a fresh one).
pub fn message_key(config: &Config, create: bool) -> anyhow::Result<Sealer> {
    if let Some(hex) = &config.messages.key {
        return Sealer::from_hex(hex).context("messages.key");
    }
    let path = config.key_file();
    if !create && !path.exists() {
        anyhow::bail!(
            "no message key at {}: restore needs the message key of the server that took the backup (set messages.key or copy its key file there)",
            path.display()
        );
    }
    Ok(Sealer::load_or_create(&path)?)
}

/// The object store `media.store` names (media and, unless
/// `jobs.backup_dir` is set, backups).
pub fn media_objects(config: &Config) -> anyhow::Result<Arc<dyn objects::ObjectStore>> {
    let media = &config.media;
    Ok(match media.store {
        MediaStoreKind::Local => {
            let dir = config.media_dir();
            Arc::new(
                objects::Local::open(&dir)
                    .with_context(|| format!("opening the media directory {}", dir.display()))?,
            )
        }
        MediaStoreKind::S3 => {
            anyhow::ensure!(
                !media.s3_endpoint.is_empty() && !media.s3_bucket.is_empty(),
                "media.store = \"s3\" needs media.s3_endpoint and media.s3_bucket"
            );
            Arc::new(
                objects::S3::open(&objects::S3Config {
                    endpoint: media.s3_endpoint.clone(),
                    bucket: media.s3_bucket.clone(),
                    region: media.s3_region.clone(),
                    access_key: media.s3_access_key.clone(),
                    secret_key: media.s3_secret_key.clone(),
                    path_style: media.s3_path_style,
                    prefix: media.s3_prefix.clone(),
                })
                .context("configuring the S3 media store")?,
            )
        }
    })
}

pub fn redacted(config: &Config) -> String {
    match &config.database_url {
        Some(_) => "the configured database_url".to_owned(),
        None => config.database_url(),
    }
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
            match bridge::replay::replay(&store, id, config.messages.max_body)? {
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
    };
    chat::run(&local, args)
}
