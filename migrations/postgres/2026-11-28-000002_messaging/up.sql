-- Messaging: messages (bodies sealed with the message key), each user's
-- inbox of seq-numbered events, per-device inbox acks, and dead letters.

-- The last seq handed out in this user's inbox; seqs are gap-free.
ALTER TABLE users ADD COLUMN inbox_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender       TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    client_id    TEXT    NOT NULL,
    body         BYTEA   NOT NULL,  -- XChaCha20-Poly1305: nonce || ciphertext
    sent_at      BIGINT  NOT NULL,
    delivered_at BIGINT,
    read_at      BIGINT,
    expires_at   BIGINT,
    UNIQUE (sender, client_id)
);
CREATE INDEX messages_pair ON messages(sender, recipient, id);
CREATE INDEX messages_recipient ON messages(recipient, id);

-- Events waiting for a user's devices: message and ack events point at a
-- message; receipt and error events carry their JSON (never a body).
CREATE TABLE inbox (
    user_name  TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    message_id BIGINT,
    payload    TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, seq)
);

-- How far each device of a user has stored its inbox.
CREATE TABLE devices (
    user_name TEXT   NOT NULL,
    device    TEXT   NOT NULL,
    acked_seq BIGINT NOT NULL,
    acked_at  BIGINT NOT NULL,
    PRIMARY KEY (user_name, device)
);

-- Refused client payloads (sealed, since they may hold a body), for
-- operators to list and replay.
CREATE TABLE dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name   TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BYTEA   NOT NULL,
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    replayed_at BIGINT
);
