-- Disappearing messages and archival: each chat's timer, and the indexes
-- that let expiry and archival find their rows without scanning.

-- A chat's disappearing-message timer. The pair is stored in name order
-- (user_a < user_b), so each chat has one row whoever set it.
CREATE TABLE chat_timers (
    user_a  TEXT   NOT NULL,
    user_b  TEXT   NOT NULL,
    seconds BIGINT NOT NULL,
    set_by  TEXT   NOT NULL,
    set_at  BIGINT NOT NULL,
    PRIMARY KEY (user_a, user_b)
);

-- Which inbox events point at a message: archival moves only messages no
-- event points at, and expiry turns such events into tombstones.
CREATE INDEX inbox_message ON inbox(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX messages_expires ON messages(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX messages_archive_expires ON messages_archive(expires_at) WHERE expires_at IS NOT NULL;
