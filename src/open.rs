//! Opening what the subcommands and `serve` work on, from the
//! configuration: the store with its message key (and the private data
//! directory it lives in), and the media object store.

use anyhow::Context;
use std::sync::Arc;
use store::{Sealer, Store, StoreOptions};

use crate::config::{Config, MediaStoreKind};

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
