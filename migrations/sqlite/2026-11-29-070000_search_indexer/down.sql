DROP INDEX messages_archive_media;
CREATE INDEX messages_archive_media ON messages_archive(media_id, recipient);
DROP INDEX messages_media;
CREATE INDEX messages_media ON messages(media_id, recipient);

CREATE TABLE chat_timers_old (
    user_a  TEXT   NOT NULL,
    user_b  TEXT   NOT NULL,
    seconds BIGINT NOT NULL,
    set_by  TEXT   NOT NULL,
    set_at  BIGINT NOT NULL,
    PRIMARY KEY (user_a, user_b)
);
INSERT INTO chat_timers_old SELECT user_a, user_b, seconds, set_by, set_at FROM chat_timers;
DROP TABLE chat_timers;
ALTER TABLE chat_timers_old RENAME TO chat_timers;

CREATE TABLE search_terms_old (
    user_name  TEXT   NOT NULL,
    term       BLOB   NOT NULL,
    message_id BIGINT NOT NULL,
    peer       TEXT   NOT NULL,
    PRIMARY KEY (user_name, term, message_id)
);
INSERT INTO search_terms_old SELECT user_name, term, message_id, peer FROM search_terms;
DROP TABLE search_terms;
ALTER TABLE search_terms_old RENAME TO search_terms;
CREATE INDEX search_terms_message ON search_terms(message_id);

DROP TABLE search_cursor;
