-- Accounts, their access tokens, and the live MQTT sessions (the seed's
-- UserSessions). Times are Unix milliseconds in BIGINT on both backends.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

-- Tokens are stored as the SHA-256 of the token, never the token itself.
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX tokens_user_id ON tokens(user_id);
CREATE INDEX tokens_expires_at ON tokens(expires_at);

-- One row per live MQTT connection, written from the guard's events.
CREATE TABLE sessions (
    connection_id TEXT   PRIMARY KEY,
    user_name     TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    node          TEXT   NOT NULL,
    connected_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user_name ON sessions(user_name);
CREATE INDEX sessions_node ON sessions(node);
