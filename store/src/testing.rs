//! Fresh, empty databases for tests, on either backend, and the one harness
//! every crate's tests share: [`open`] for a migrated store and
//! [`on_both_backends!`](crate::on_both_backends) to run a test on both.
//!
//! SQLite databases live in a temporary directory. PostgreSQL databases are
//! created on the server named by `BT_TEST_POSTGRES_URL` ([`POSTGRES_URL_VAR`];
//! an admin URL such as `postgres://postgres@127.0.0.1:5433/postgres`, which
//! the README's test command sets after starting a throwaway cluster) and
//! dropped again when the [`TestDatabase`] is dropped. A test never falls
//! back to SQLite when PostgreSQL was asked for: a missing URL is a loud
//! failure.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Backend, Sealer, Store, StoreOptions};

/// Environment variable naming the PostgreSQL server used by tests.
pub const POSTGRES_URL_VAR: &str = "BT_TEST_POSTGRES_URL";

/// The message key (hex) stores opened by [`open`] seal bodies with.
pub const TEST_KEY_HEX: &str = "abababababababababababababababababababababababababababababababab";

/// A fresh database on `backend` and a migrated store on it with default
/// options, sealing message bodies with [`TEST_KEY_HEX`].
pub fn open(backend: Backend) -> (TestDatabase, Store) {
    open_with(backend, &StoreOptions::default())
}

/// [`open`] with `options` (a small pool, say).
pub fn open_with(backend: Backend, options: &StoreOptions) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&db.url, options)
        .expect("open store")
        .with_sealer(Sealer::from_hex(TEST_KEY_HEX).expect("test key"));
    store.migrate().expect("migrate");
    (db, store)
}

/// Runs each listed test once on SQLite (`mod sqlite`) and once on
/// PostgreSQL (`mod postgres`), in one of two forms:
///
/// - `name(store) { … }`: a plain `#[test]` given a migrated store from
///   [`open`](crate::testing::open) (the store crate's and the bridge's tests);
/// - `async fn name(backend) { … }`: a `#[tokio::test]` on two worker threads
///   given the [`Backend`](crate::Backend), for tests that start a server
///   on it (the binary's end-to-end tests; the caller depends on tokio).
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block)*) => {
        mod sqlite {
            use super::*;
            $($(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let $backend = $crate::Backend::Sqlite; $body })*
        }
        mod postgres {
            use super::*;
            $($(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let $backend = $crate::Backend::Postgres; $body })*
        }
    };
    ($($name:ident($store:ident) $body:block)*) => {
        mod sqlite {
            use super::*;
            $(#[test] fn $name() { let (_db, $store) = $crate::testing::open($crate::Backend::Sqlite); $body })*
        }
        mod postgres {
            use super::*;
            $(#[test] fn $name() { let (_db, $store) = $crate::testing::open($crate::Backend::Postgres); $body })*
        }
    };
}

/// An empty database that exists until this value is dropped.
pub struct TestDatabase {
    /// URL to hand to [`crate::Store::open`] or `--database-url`.
    pub url: String,
    /// Keeps the SQLite directory alive.
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) of a PostgreSQL database to drop.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// Creates an empty database on `backend`.
    pub fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("bluetick.db").display());
                TestDatabase {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set: run the README's test command \
                         (scripts/test), which starts PostgreSQL and sets it"
                    )
                });
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "bt_test_{}_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    crate::clock::now_ms() % 1_000_000
                );
                let mut conn = PgConnection::establish(&admin)
                    .unwrap_or_else(|e| panic!("connect to {admin}: {e}"));
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap_or_else(|e| panic!("create database {name}: {e}"));
                // A query (`?target_session_attrs=read-write` after a
                // multi-host list, as scripts/cluster-test sets) is kept.
                let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
                let query = if query.is_empty() { String::new() } else { format!("?{query}") };
                let url = match base.rsplit_once('/') {
                    Some((server, _db)) => format!("{server}/{name}{query}"),
                    None => panic!("{POSTGRES_URL_VAR} must end in /DATABASE"),
                };
                TestDatabase {
                    url,
                    _dir: None,
                    postgres: Some((admin, name)),
                }
            }
        }
    }
}

impl TestDatabase {
    /// The backend this database is on.
    pub fn backend(&self) -> Backend {
        if self.url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The same database for a second server, without owning it: dropping
    /// the share leaves the database to its owner.
    pub fn share(&self) -> TestDatabase {
        TestDatabase {
            url: self.url.clone(),
            _dir: None,
            postgres: None,
        }
    }

    /// Takes the PostgreSQL database away from its clients, as a database
    /// outage would: open connections are terminated and new ones refused
    /// until [`TestDatabase::accept_connections`]. PostgreSQL only.
    pub fn refuse_connections(&self) {
        let (admin, name) = self.owned_postgres("refuse connections");
        let mut conn =
            PgConnection::establish(admin).unwrap_or_else(|e| panic!("connect to {admin}: {e}"));
        conn.batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .unwrap_or_else(|e| panic!("take {name} away: {e}"));
    }

    /// Ends the outage [`TestDatabase::refuse_connections`] began.
    pub fn accept_connections(&self) {
        let (admin, name) = self.owned_postgres("accept connections");
        let mut conn =
            PgConnection::establish(admin).unwrap_or_else(|e| panic!("connect to {admin}: {e}"));
        conn.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .unwrap_or_else(|e| panic!("give {name} back: {e}"));
    }

    fn owned_postgres(&self, what: &str) -> (&str, &str) {
        match &self.postgres {
            Some((admin, name)) => (admin, name),
            None => panic!("only the owner of a PostgreSQL test database can {what}"),
        }
    }

    /// Destroys every table and row, as a lost disk would, leaving an
    /// empty database under the same URL. No connection may be open.
    pub fn wipe(&self) {
        match &self.postgres {
            Some((admin, name)) => {
                let mut conn = PgConnection::establish(admin)
                    .unwrap_or_else(|e| panic!("connect to {admin}: {e}"));
                for statement in [
                    format!("DROP DATABASE {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name}"),
                ] {
                    conn.batch_execute(&statement)
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
            }
            None => {
                let path = self.url.trim_start_matches("sqlite://");
                let search = crate::db::search_path(path);
                for (path, suffix) in [path, search.as_str()]
                    .into_iter()
                    .flat_map(|path| ["", "-wal", "-shm"].map(|suffix| (path, suffix)))
                {
                    let file = format!("{path}{suffix}");
                    match std::fs::remove_file(&file) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            panic!("remove {file}: {e}")
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                // A failure only leaves a database in a throwaway cluster.
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Records an upload of `owner` with content hash `sha256`, as the media
/// service does after storing the object: what the row tests start from.
pub fn record_upload(store: &Store, owner: &str, sha256: &str) -> crate::media::Recorded {
    let id = crate::media::new_media_id();
    store
        .record_media(&crate::media::NewMedia {
            id: &id,
            owner,
            object_key: &format!("media/{owner}/{id}"),
            size: 10,
            sha256,
            content_type: "image/png",
        })
        .expect("record an upload")
}
