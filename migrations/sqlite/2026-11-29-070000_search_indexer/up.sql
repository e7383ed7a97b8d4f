-- The search indexer and a leaner write path (issue 13).
--
-- No table here is WITHOUT ROWID, though search_terms and chat_timers
-- would fit it: backups read every table in pages by rowid (see
-- store/src/snapshot.rs).

-- How far the search indexer has read `messages` (and the archive) by id:
-- every message with an id at or below `through` is in `search_terms`.
-- One row per indexer; the send path no longer writes the index, a
-- background task does, in its own transactions, and resumes from here
-- after a restart. The row is made by the server before it takes
-- messages (`Store::start_search_cursor`), at the newest message id then:
-- messages stored before this version were indexed when sent. Not here,
-- so a restore (which migrates, then loads a backup's rows) finds the
-- table empty, and a backup from before this version gets its cursor at
-- its own newest message.
CREATE TABLE search_cursor (
    indexer TEXT   PRIMARY KEY,
    through BIGINT NOT NULL
);

-- `timers_among` asks for either side of the pair; without this index the
-- `user_b` half scanned the table.
CREATE INDEX chat_timers_user_b ON chat_timers(user_b);

-- Most messages carry no media: index only those that do, instead of a
-- NULL key per text message.
DROP INDEX messages_media;
CREATE INDEX messages_media ON messages(media_id, recipient) WHERE media_id IS NOT NULL;
DROP INDEX messages_archive_media;
CREATE INDEX messages_archive_media ON messages_archive(media_id, recipient) WHERE media_id IS NOT NULL;
