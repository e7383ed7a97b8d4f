-- History: the archive beside the hot messages table, one view that reads
-- both, stars, and the blind search index.

-- Messages moved out of `messages` by the archival job, unchanged (same id,
-- same sealed body). Nothing but that job and expiry write here.
CREATE TABLE messages_archive (
    id           BIGINT  PRIMARY KEY,
    sender       TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    client_id    TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    sent_at      BIGINT  NOT NULL,
    delivered_at BIGINT,
    read_at      BIGINT,
    expires_at   BIGINT
);
CREATE INDEX messages_archive_pair ON messages_archive(sender, recipient, id);
CREATE INDEX messages_archive_recipient ON messages_archive(recipient, id);

-- Every message, hot or archived: what history, stars and search read, so
-- archival never changes what a user sees.
CREATE VIEW message_history AS
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at
      FROM messages
    UNION ALL
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at
      FROM messages_archive;

-- A user's starred messages (either participant may star).
CREATE TABLE stars (
    user_name  TEXT   NOT NULL,
    message_id BIGINT NOT NULL,
    starred_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, message_id)
);
CREATE INDEX stars_message ON stars(message_id);

-- The blind index: one row per distinct word of a message, for each
-- participant. `term` is HMAC-SHA256(index key, user || word) cut to 16
-- bytes; no readable word is stored.
CREATE TABLE search_terms (
    user_name  TEXT   NOT NULL,
    term       BLOB   NOT NULL,
    message_id BIGINT NOT NULL,
    peer       TEXT   NOT NULL,
    PRIMARY KEY (user_name, term, message_id)
);
CREATE INDEX search_terms_message ON search_terms(message_id);
