-- The blind index as a WITHOUT ROWID table (issue 13): its primary key is
-- the table, so each index row is written into two B-trees (the key and
-- `search_terms_message`) instead of three (the rowid table, its primary
-- key index and `search_terms_message`). Backups leave this table out (it
-- is derived from `messages`; see store/src/snapshot.rs), which is what lets
-- it drop its rowid.
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
