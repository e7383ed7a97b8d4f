use protocol::NameError;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user name or password breaks the naming rules.
    #[error(transparent)]
    Invalid(#[from] NameError),
    /// Registration of a name that already exists.
    #[error("user name is already taken")]
    NameTaken,
    /// A name that is not registered.
    #[error("no such user")]
    UnknownUser,
    /// Wrong password, or a token that is unknown, revoked or expired.
    #[error("wrong credentials")]
    BadCredentials,
    /// The database URL names no backend we know.
    #[error("unsupported database URL {0:?}: use a SQLite path, sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// No connection could be had from the pool in time.
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// The message key is missing, malformed, or does not open a value.
    #[error("message key: {0}")]
    Key(String),
    /// A stored value is not what the schema promises.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// SQLite's writer connection could not be opened.
    #[error("cannot open the database writer: {0}")]
    Writer(#[from] diesel::r2d2::Error),
    /// Hashing a password failed (never expected in practice).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl StoreError {
    /// Whether the same work would fail the same way if tried again: a
    /// constraint the data breaks, or a value that cannot be read or
    /// sealed. Everything else (no connection, a lost connection, a busy
    /// database, an unknown error) may pass on a retry.
    pub fn is_deterministic(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match self {
            StoreError::Database(Error::DatabaseError(kind, _)) => matches!(
                kind,
                Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::NotNullViolation
                    | Kind::CheckViolation
            ),
            StoreError::Database(Error::SerializationError(_) | Error::DeserializationError(_)) => {
                true
            }
            StoreError::Corrupt(_) | StoreError::Key(_) => true,
            _ => false,
        }
    }
}
