-- Logouts, for every node: each server follows this table and closes its
-- live MQTT connections that used a revoked token. Rows older than a day
-- are removed by cleanup (every connection has sent a packet by then).
CREATE TABLE token_revocations (
    token_hash TEXT   PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX token_revocations_at ON token_revocations(revoked_at);
