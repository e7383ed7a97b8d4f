//! The connection to either backend, the pool, and migrations.
//!
//! A [`Store`] is opened from a URL: a path or `sqlite://PATH` selects SQLite
//! (bundled, WAL mode, `synchronous=FULL`, so a committed row survives power
//! loss), and `postgres://…` selects PostgreSQL. Queries are written once
//! with diesel's typed DSL and expanded for each backend by [`on_backend!`],
//! which keeps one code path while letting each backend use its own SQL
//! dialect underneath.
//!
//! # SQLite's writer
//! SQLite lets one connection write at a time, so on SQLite the store keeps
//! one dedicated writer connection outside the pool, and every
//! [`Store::transaction`] runs on it, one after another. Readers never take
//! the writer's place in the pool, and the write path never pays for a pool
//! checkout (r2d2 runs `SELECT 1` on each). `synchronous=FULL` stays: a ✓
//! means the message is on disk and survives a power cut. What moves off
//! the commit path is the WAL checkpoint: with
//! [`StoreOptions::background_checkpoints`] no connection checkpoints on
//! commit, and the server calls [`Store::checkpoint`] from a task of its
//! own instead.
//!
//! # The search index's file (SQLite)
//! The search index is derived data (`crate::indexer`), so on SQLite it
//! lives in a file of its own next to the main one ([`search_path`]),
//! written by a second dedicated connection, the indexer's, with
//! `synchronous=NORMAL`. An index pass then never takes the main file's
//! write lock, which every ✓ waits for, and its page writes go to a WAL of
//! their own. Pooled connections attach the file as `search`, so readers
//! reach `search.search_index` (`crate::search_file`) from any of them;
//! the bridge's writer does not attach it (`BEGIN IMMEDIATE` would lock it
//! too). PostgreSQL keeps the index in its one database.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::DeadLetterQuota;
use crate::sealing::Sealer;
use crate::StoreError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Set on every SQLite connection. `synchronous=FULL` keeps the promise of
/// the first tick (a stored message survives a power cut); `busy_timeout`
/// lets writers queue behind each other instead of failing. It comes
/// first: switching a fresh file to WAL takes an exclusive lock, and a
/// connection racing another one there must wait, not fail with
/// "database is locked".
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;
PRAGMA temp_store = MEMORY;
PRAGMA journal_size_limit = 67108864;";

/// The SQLite file that holds the search index of the database at `path`:
/// `bluetick.db` → `bluetick.search.db`, in the same directory. Derived
/// data: losing it loses nothing but time, as the indexer writes it again.
pub fn search_path(path: &str) -> String {
    let path = Path::new(path);
    let stem = path
        .file_stem()
        .map_or_else(|| "bluetick".into(), |s| s.to_string_lossy());
    path.with_file_name(format!("{stem}.search.db"))
        .to_string_lossy()
        .into_owned()
}

/// The pragmas that attach the search file at `path` as `search`.
/// `synchronous=NORMAL`: a power cut may lose the last passes, never
/// corrupt the file (WAL), and a lost pass is written again from the
/// cursor, which rolls back with it.
fn attach_search(path: &str, cache_kib: u32) -> String {
    let quoted = path.replace('\'', "''");
    format!(
        "\nATTACH DATABASE '{quoted}' AS search;
PRAGMA search.journal_mode = WAL;
PRAGMA search.synchronous = NORMAL;
PRAGMA search.cache_size = -{cache_kib};"
    )
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One open connection to either backend. Use [`on_backend!`] to run typed
/// diesel code on it.
pub enum AnyConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection inside `$conn`
/// (a `&mut AnyConnection`). The body is compiled once per backend, so
/// backend-specific diesel features stay available while the query is
/// written once.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite($c) => $body,
            $crate::db::AnyConnection::Postgres($c) => $body,
        }
    };
}

/// Tuning for the connection pool.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool keeps open.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// SQLite: page cache of each connection, in KiB.
    pub sqlite_cache_kib: u32,
    /// SQLite: no connection checkpoints the WAL when it commits; the
    /// owner calls [`Store::checkpoint`] periodically instead (the server
    /// does). Off, SQLite checkpoints on commit every 1,000 pages.
    pub background_checkpoints: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            sqlite_cache_kib: 64 * 1024,
            background_checkpoints: false,
        }
    }
}

/// How long a caller waits for a connection while the database is known
/// to be unreachable: long enough for a database that just came back to
/// take a new connection, short enough that a client at the other end (an
/// MQTT CONNECT, an HTTP request, `/readyz`) hears "unavailable" promptly
/// instead of after the full acquire timeout.
const OUTAGE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens connections for the pool; knows the backend from the URL, so a
/// PostgreSQL outage never falls back to creating a SQLite file.
#[derive(Debug)]
pub struct Manager {
    backend: Backend,
    url: String,
    /// Run on each new SQLite connection.
    sqlite_pragmas: String,
    /// Whether the last attempt to open a connection failed.
    unreachable: Arc<AtomicBool>,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        let connected = self.open();
        self.unreachable
            .store(connected.is_err(), Ordering::Relaxed);
        connected
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        on_backend!(conn, c => c.batch_execute("SELECT 1")).map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

impl Manager {
    fn open(&self) -> Result<AnyConnection, r2d2::Error> {
        match self.backend {
            Backend::Sqlite => open_sqlite(&self.url, &self.sqlite_pragmas),
            Backend::Postgres => PgConnection::establish(&self.url)
                .map(AnyConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
        }
    }
}

fn open_sqlite(url: &str, pragmas: &str) -> Result<AnyConnection, r2d2::Error> {
    let mut conn = SqliteConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
    // Switching a fresh file to WAL upgrades to an exclusive lock. When two
    // connections do it at once, SQLite refuses one at once with "database
    // is locked" instead of letting it wait `busy_timeout` (the wait could
    // deadlock), so that one tries again, briefly and a bounded number of
    // times; a file already in WAL mode never gets here twice.
    let mut attempts = 0;
    loop {
        match conn.batch_execute(pragmas) {
            Ok(()) => return Ok(AnyConnection::Sqlite(conn)),
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked") && attempts < PRAGMA_ATTEMPTS =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(5 * u64::from(attempts)));
            }
            Err(e) => return Err(r2d2::Error::QueryError(e)),
        }
    }
}

/// Tries of a new SQLite connection's pragmas while another connection
/// holds the lock they need (about 2 s of waiting in all).
const PRAGMA_ATTEMPTS: u32 = 28;

/// SQLite's one writer connection (see the module doc).
struct Writer {
    /// `None` after a transaction panicked: it may have been left open,
    /// so the next user opens a fresh connection.
    conn: Mutex<Option<AnyConnection>>,
    url: String,
    pragmas: String,
}

impl Writer {
    fn lock(&self) -> Result<WriterGuard<'_>, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        });
        self.conn.clear_poison();
        if guard.is_none() {
            *guard = Some(open_sqlite(&self.url, &self.pragmas)?);
        }
        Ok(WriterGuard(guard))
    }
}

/// The writer, held: one transaction at a time.
struct WriterGuard<'a>(MutexGuard<'a, Option<AnyConnection>>);

impl WriterGuard<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        self.0
            .as_mut()
            .expect("Writer::lock opens the connection before handing it out")
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // A transaction that panicked may still be open, holding SQLite's
        // write lock for every other connection: closing the connection
        // rolls it back, and the next transaction opens a fresh one.
        if std::thread::panicking() {
            *self.0 = None;
        }
    }
}

/// The connection a transaction runs on.
enum WriteConn<'a> {
    /// SQLite: the one writer.
    Writer(WriterGuard<'a>),
    /// PostgreSQL: any pooled connection; the server orders writers.
    Pooled(PooledConn),
}

impl WriteConn<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Writer(writer) => writer.conn(),
            WriteConn::Pooled(pooled) => pooled,
        }
    }
}

/// Reports failed connection attempts at WARN, at most once per
/// [`CONNECT_ERROR_EVERY`]. r2d2's own handler logs every attempt at
/// ERROR, and during an outage it retries several times a second: one line
/// now and then says all there is to say, and the next success ends it.
#[derive(Debug, Default)]
struct ConnectErrors {
    last_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

const CONNECT_ERROR_EVERY: Duration = Duration::from_secs(10);

impl r2d2::HandleError<r2d2::Error> for ConnectErrors {
    fn handle_error(&self, error: r2d2::Error) {
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= CONNECT_ERROR_EVERY) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(%error, "cannot connect to the database; retrying");
        }
    }
}

/// A pooled connection.
pub type PooledConn = PooledConnection<Manager>;

/// The database behind bluetick: a pool of connections to one backend.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    /// Shared with the pool's manager: set while the database refuses new
    /// connections, so callers fail fast (see [`OUTAGE_ACQUIRE_TIMEOUT`]).
    unreachable: Arc<AtomicBool>,
    /// Seals message bodies at rest; messaging needs it, accounts do not.
    sealer: Option<Arc<Sealer>>,
    /// How much of refused payloads [`Tx::dead_letter`] keeps.
    dead_letter_quota: DeadLetterQuota,
    /// SQLite: the connection every transaction runs on.
    writer: Option<Arc<Writer>>,
    /// SQLite: the indexer's connection, the only writer of the search
    /// index's file (see the module doc).
    search: Option<Arc<Writer>>,
}

/// One open transaction; every store function that takes a `Tx` runs
/// inside it, so a batch of them commits or rolls back as one.
pub struct Tx<'a> {
    pub(crate) conn: &'a mut AnyConnection,
    sealer: Option<&'a Sealer>,
    pub(crate) dead_letter_quota: DeadLetterQuota,
}

impl Tx<'_> {
    pub(crate) fn sealer(&self) -> Result<&Sealer, StoreError> {
        self.sealer
            .ok_or_else(|| StoreError::Key("no message key configured".into()))
    }
}

impl Store {
    /// Opens a pool on `url`: a file path or `sqlite://PATH` for SQLite,
    /// `postgres://…` or `postgresql://…` for PostgreSQL.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let (backend, target) = parse_url(url)?;
        let search_file = search_path(&target);
        if backend == Backend::Sqlite {
            for file in [&target, &search_file] {
                create_private_file(Path::new(file))
                    .map_err(|e| StoreError::Migration(format!("cannot create {file}: {e}")))?;
            }
        }
        let mut sqlite_pragmas = format!(
            "{SQLITE_PRAGMAS}\nPRAGMA cache_size = -{};",
            options.sqlite_cache_kib
        );
        if options.background_checkpoints {
            sqlite_pragmas.push_str("\nPRAGMA wal_autocheckpoint = 0;");
        }
        let writer = (backend == Backend::Sqlite).then(|| {
            Arc::new(Writer {
                conn: Mutex::new(None),
                url: target.clone(),
                pragmas: sqlite_pragmas.clone(),
            })
        });
        let attach = attach_search(&search_file, options.sqlite_cache_kib);
        let search = (backend == Backend::Sqlite).then(|| {
            Arc::new(Writer {
                conn: Mutex::new(None),
                url: target.clone(),
                // No `wal_autocheckpoint = 0`: this connection commits only
                // to the search file, and checkpointing it there costs the
                // indexer, never a ✓.
                pragmas: format!(
                    "{SQLITE_PRAGMAS}\nPRAGMA cache_size = -{};{attach}",
                    options.sqlite_cache_kib
                ),
            })
        });
        let unreachable = Arc::new(AtomicBool::new(false));
        let manager = Manager {
            backend,
            url: target,
            sqlite_pragmas: format!("{sqlite_pragmas}{attach}"),
            unreachable: unreachable.clone(),
        };
        let pool = Pool::builder()
            .max_size(options.max_connections)
            .min_idle(Some(1))
            .connection_timeout(options.acquire_timeout)
            // A SQLite connection is a file handle: nothing to test. A
            // PostgreSQL one may have lost its server.
            .test_on_check_out(backend == Backend::Postgres)
            .error_handler(Box::new(ConnectErrors::default()))
            .build(manager)?;
        Ok(Store {
            pool,
            backend,
            unreachable,
            sealer: None,
            dead_letter_quota: DeadLetterQuota::default(),
            writer,
            search,
        })
    }

    /// The same store, keeping refused payloads within `quota`.
    pub fn with_dead_letter_quota(mut self, quota: DeadLetterQuota) -> Store {
        self.dead_letter_quota = quota;
        self
    }

    /// The same store, sealing message bodies with `sealer`.
    pub fn with_sealer(mut self, sealer: Sealer) -> Store {
        self.sealer = Some(Arc::new(sealer));
        self
    }

    pub(crate) fn sealer(&self) -> Result<&Sealer, StoreError> {
        self.sealer
            .as_deref()
            .ok_or_else(|| StoreError::Key("no message key configured".into()))
    }

    /// Runs `work` in one transaction: committed if it returns `Ok`, rolled
    /// back if it returns `Err`. On SQLite it runs on the one writer
    /// connection (transactions queue for it) and starts `IMMEDIATE`, so a
    /// write outside a transaction elsewhere cannot make it fail midway.
    /// `work` must not start another transaction: on SQLite that waits for
    /// the writer it holds.
    pub fn transaction<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_synced(true, work)
    }

    /// [`Store::transaction`] whose commit does not wait for the disk, for
    /// data that can be recomputed (the search index). On SQLite the
    /// writer runs it under `synchronous=NORMAL` and goes back to `FULL`
    /// after it. In WAL mode that loses nothing anyone was promised: the
    /// commit is in the WAL in order, and the next `FULL` commit (the
    /// bridge's, before its ✓) syncs the WAL with it; a power cut before
    /// then rolls it back whole, as if it had not run. On PostgreSQL the
    /// transaction runs with `synchronous_commit = off`, for the same
    /// reason: its WAL records are flushed by the next synchronous commit,
    /// and a crash before that loses the transaction whole, never half.
    pub fn transaction_unsynced<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_synced(false, |tx| {
            if let AnyConnection::Postgres(c) = &mut *tx.conn {
                c.batch_execute("SET LOCAL synchronous_commit = off")
                    .map_err(StoreError::from)?;
            }
            work(tx)
        })
    }

    /// A transaction on the search index (`crate::indexer`): on SQLite on
    /// the indexer's own connection, which writes only the search file, so
    /// it never waits for the bridge's writer nor holds it up; on
    /// PostgreSQL [`Store::transaction_unsynced`]. On SQLite the main file
    /// is read in the same transaction (a snapshot taken at its first
    /// read), and the search file's write lock is taken first, so that
    /// expiry, which deletes terms after its own commit, is ordered with
    /// the pass: see `indexer`'s invariant.
    pub(crate) fn index_transaction<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(search) = &self.search else {
            return self.transaction_unsynced(work);
        };
        let mut held = search.lock()?;
        let conn = held.conn();
        on_backend!(&mut *conn, c => AnsiTransactionManager::begin_transaction_sql(
            c,
            "BEGIN DEFERRED",
        ))
        .map_err(StoreError::from)?;
        // A write that changes nothing, to take the search file's lock
        // before the main file is read (a deferred BEGIN takes none).
        let locked = on_backend!(&mut *conn, c => c.batch_execute(
            "UPDATE search.search_cursor SET through = through WHERE 0 = 1",
        ));
        if let Err(error) = locked {
            let _ = rollback(conn);
            return Err(StoreError::from(error).into());
        }
        self.finish_transaction(conn, work)
    }

    fn transaction_synced<T, E: From<StoreError>>(
        &self,
        synced: bool,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut held = match &self.writer {
            Some(writer) => WriteConn::Writer(writer.lock()?),
            None => WriteConn::Pooled(self.conn()?),
        };
        let relaxed = !synced && matches!(held, WriteConn::Writer(_));
        if relaxed {
            on_backend!(held.conn(), c => c.batch_execute("PRAGMA synchronous = NORMAL"))
                .map_err(StoreError::from)?;
        }
        let result = self.run_transaction(held.conn(), work);
        if relaxed {
            let reset =
                on_backend!(held.conn(), c => c.batch_execute("PRAGMA synchronous = FULL"));
            if let (Err(error), WriteConn::Writer(writer)) = (reset, &mut held) {
                // The writer must never commit a ✓ unsynced: a connection
                // that cannot say FULL again is closed; the next user opens
                // a fresh one with the pragmas of every connection.
                tracing::warn!(%error, "could not reset synchronous=FULL; reopening the writer");
                *writer.0 = None;
            }
        }
        result
    }

    /// The body of [`Store::transaction`] on a held connection.
    fn run_transaction<T, E: From<StoreError>>(
        &self,
        conn: &mut AnyConnection,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        begin(conn).map_err(StoreError::from)?;
        self.finish_transaction(conn, work)
    }

    /// Runs `work` in the transaction open on `conn`, then commits it or
    /// rolls it back.
    fn finish_transaction<T, E: From<StoreError>>(
        &self,
        conn: &mut AnyConnection,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let result = work(&mut Tx {
            conn: &mut *conn,
            sealer: self.sealer.as_deref(),
            dead_letter_quota: self.dead_letter_quota,
        });
        match result {
            Ok(value) => match commit(conn) {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = rollback(conn);
                    Err(StoreError::from(e).into())
                }
            },
            Err(e) => {
                // The caller's error is the one worth reporting; a failed
                // rollback leaves nothing committed either way.
                let _ = rollback(conn);
                Err(e)
            }
        }
    }

    /// SQLite: copies committed pages from the WAL into the database file,
    /// all of them, so that the writer's next transaction starts the WAL
    /// over from its beginning. A no-op on PostgreSQL. See
    /// [`StoreOptions::background_checkpoints`].
    ///
    /// A `PASSIVE` checkpoint copies what was committed when it began and
    /// waits for nobody; but SQLite rewinds the WAL only once a checkpoint
    /// has copied every frame, and under steady load some commit always
    /// lands while one runs. Checkpoints beside the writer alone never got
    /// there: at 5,000 messages/s the WAL grew by 90 MB/s for as long as
    /// the load lasted, every commit appending to an ever longer file.
    /// So the bulk is copied beside the writer (commits go on), up to
    /// [`CHECKPOINT_ROUNDS`] times while the rest is large, and the rest,
    /// what was committed meanwhile, while holding the writer: commits wait
    /// for that short copy only.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let mut frames = 0;
        for _ in 0..CHECKPOINT_ROUNDS {
            let copied = passive_checkpoint(&mut *self.conn()?)?;
            frames = copied.frames;
            if copied.left() <= CHECKPOINT_REST_FRAMES {
                break;
            }
        }
        if frames > WAL_REWIND_FRAMES {
            passive_checkpoint(writer.lock()?.conn())?;
        }
        Ok(())
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection from the pool. While the database is unreachable this
    /// gives up after [`OUTAGE_ACQUIRE_TIMEOUT`] rather than the configured
    /// acquire timeout: under an outage nothing is gained by queueing.
    pub fn conn(&self) -> Result<PooledConn, StoreError> {
        if self.unreachable.load(Ordering::Relaxed) {
            return Ok(self.pool.get_timeout(OUTAGE_ACQUIRE_TIMEOUT)?);
        }
        Ok(self.pool.get()?)
    }

    /// Applies every pending migration and returns the names it applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let applied: Vec<String> = match &mut *conn {
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            AnyConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| StoreError::Migration(e.to_string()))?
        .iter()
        .map(|v| v.to_string())
        .collect();
        if let AnyConnection::Sqlite(c) = &mut *conn {
            crate::search_file::create(c)
                .map_err(|e| StoreError::Migration(format!("the search index's file: {e}")))?;
        }
        Ok(applied)
    }

    /// Checks that the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => c.batch_execute("SELECT 1"))?;
        Ok(())
    }

    /// Flushes what only a clean close would flush: on SQLite the WAL is
    /// checkpointed into the main file. Safe to call more than once.
    pub fn close(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            let mut conn = self.conn()?;
            on_backend!(&mut *conn, c => c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)"))?;
        }
        Ok(())
    }
}

/// Creates `dir` and any missing parents readable by the owner only
/// (0700; a umask can only remove bits, and owner bits are never masked in
/// practice). An existing directory is left as it is: it may be shared,
/// like `/tmp`.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes sure the SQLite file at `path` exists and is readable by the
/// owner only (0600), in a private directory. SQLite gives the `-wal` and
/// `-shm` files it creates the database file's mode, so they are private
/// too. An empty file is a new database to SQLite.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            create_private_dir(parent)?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn begin(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
    }
}

fn commit(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    on_backend!(conn, c => AnsiTransactionManager::commit_transaction(c))
}

fn rollback(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    on_backend!(conn, c => AnsiTransactionManager::rollback_transaction(c))
}

/// Most `PASSIVE` checkpoints beside the writer in one [`Store::checkpoint`].
const CHECKPOINT_ROUNDS: usize = 3;

/// Frames left uncopied few enough to stop checkpointing beside the
/// writer.
const CHECKPOINT_REST_FRAMES: i64 = 256;

/// WAL frames (16 MiB of 4 KiB pages) above which a checkpoint finishes
/// while holding the writer, so that the WAL starts over. Small and often:
/// what the writer waits for is the copy of what was committed during the
/// checkpoint beside it, plus a fsync of the database file. Rare and big
/// was much worse: at 1 GiB each rewind stalled commits for about 400 ms
/// (the WAL's truncation back to `journal_size_limit` among it), and at
/// 64 MiB with checkpoints once a second p99 send → recipient at 5,000
/// messages/s went from about 25 ms to 60–100 ms. With checkpoints every
/// 250 ms (`store.checkpoint_interval_ms`) and this bound it stayed at
/// 22–27 ms, and the WAL file under 64 MiB.
const WAL_REWIND_FRAMES: i64 = 4_096;

/// What a checkpoint found in the WAL.
struct Checkpointed {
    /// Frames in the WAL.
    frames: i64,
    /// Of them, copied into the database file.
    copied: i64,
}

impl Checkpointed {
    /// Frames left uncopied: committed after the checkpoint began, or
    /// held by a reader's snapshot.
    fn left(&self) -> i64 {
        self.frames - self.copied
    }
}

/// Runs a `PASSIVE` checkpoint on `conn`.
fn passive_checkpoint(conn: &mut AnyConnection) -> Result<Checkpointed, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        log: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        checkpointed: i32,
    }
    let AnyConnection::Sqlite(c) = conn else {
        return Ok(Checkpointed { frames: 0, copied: 0 });
    };
    let row: Row =
        diesel::RunQueryDsl::get_result(diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)"), c)?;
    // -1 when the database is not in WAL mode.
    Ok(Checkpointed {
        frames: i64::from(row.log.max(0)),
        copied: i64::from(row.checkpointed.max(0)),
    })
}

fn parse_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok((Backend::Sqlite, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file opened by several connections at once (the
    /// pool, the writer and the checkpointer at start): every one of them
    /// opens. Switching a new file to WAL takes an exclusive lock, so a
    /// connection that did so before its `busy_timeout` was set failed
    /// at once with "database is locked".
    #[test]
    fn connections_opening_a_fresh_database_together_all_succeed() {
        for round in 0..30 {
            let dir = std::env::temp_dir().join(format!(
                "bluetick-fresh-{}-{round}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let url = dir.join("bluetick.db").to_string_lossy().into_owned();
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (url, start) = (url.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        open_sqlite(&url, SQLITE_PRAGMAS).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {:?}", opened.err());
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn urls_select_the_backend() {
        assert_eq!(
            parse_url("data/b.db").unwrap(),
            (Backend::Sqlite, "data/b.db".into())
        );
        assert_eq!(
            parse_url("sqlite:///tmp/b.db").unwrap(),
            (Backend::Sqlite, "/tmp/b.db".into())
        );
        assert_eq!(parse_url("postgres://u@h/db").unwrap().0, Backend::Postgres);
        assert_eq!(
            parse_url("postgresql://u@h/db").unwrap().0,
            Backend::Postgres
        );
        assert!(matches!(
            parse_url("mysql://x"),
            Err(StoreError::UnsupportedUrl(_))
        ));
        assert!(matches!(parse_url(""), Err(StoreError::UnsupportedUrl(_))));
    }
}
