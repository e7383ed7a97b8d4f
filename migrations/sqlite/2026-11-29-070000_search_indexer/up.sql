-- The search indexer and a leaner write path (issue 13).

-- How far the search indexer has read `messages` (and the archive) by id:
-- every message with an id at or below `through` is in `search_terms`.
-- One row per indexer; the send path no longer writes the index, a
-- background task does, in its own transactions, and resumes from here
-- after a restart. Messages that exist now were indexed when sent.
CREATE TABLE search_cursor (
    indexer TEXT   PRIMARY KEY,
    through BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO search_cursor (indexer, through)
    SELECT 'search', MAX(COALESCE((SELECT MAX(id) FROM messages), 0),
                         COALESCE((SELECT MAX(id) FROM messages_archive), 0));

-- search_terms holds small rows looked up only by their key: WITHOUT
-- ROWID keeps one B-tree per row instead of two.
CREATE TABLE search_terms_new (
    user_name  TEXT   NOT NULL,
    term       BLOB   NOT NULL,
    message_id BIGINT NOT NULL,
    peer       TEXT   NOT NULL,
    PRIMARY KEY (user_name, term, message_id)
) WITHOUT ROWID;
INSERT INTO search_terms_new (user_name, term, message_id, peer)
    SELECT user_name, term, message_id, peer FROM search_terms;
DROP TABLE search_terms;
ALTER TABLE search_terms_new RENAME TO search_terms;
CREATE INDEX search_terms_message ON search_terms(message_id);

-- Chat timers: small rows read by key on every send batch, and by
-- `user_b` too (`timers_among` asks for either side of the pair), which
-- without this index scanned the table.
CREATE TABLE chat_timers_new (
    user_a  TEXT   NOT NULL,
    user_b  TEXT   NOT NULL,
    seconds BIGINT NOT NULL,
    set_by  TEXT   NOT NULL,
    set_at  BIGINT NOT NULL,
    PRIMARY KEY (user_a, user_b)
) WITHOUT ROWID;
INSERT INTO chat_timers_new (user_a, user_b, seconds, set_by, set_at)
    SELECT user_a, user_b, seconds, set_by, set_at FROM chat_timers;
DROP TABLE chat_timers;
ALTER TABLE chat_timers_new RENAME TO chat_timers;
CREATE INDEX chat_timers_user_b ON chat_timers(user_b);

-- Most messages carry no media: index only those that do, instead of a
-- NULL key per text message.
DROP INDEX messages_media;
CREATE INDEX messages_media ON messages(media_id, recipient) WHERE media_id IS NOT NULL;
DROP INDEX messages_archive_media;
CREATE INDEX messages_archive_media ON messages_archive(media_id, recipient) WHERE media_id IS NOT NULL;
