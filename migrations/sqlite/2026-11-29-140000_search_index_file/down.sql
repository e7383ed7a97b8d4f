CREATE TABLE main.search_cursor (
    indexer TEXT   PRIMARY KEY,
    through BIGINT NOT NULL
);
CREATE TABLE main.search_terms (
    user_name  TEXT   NOT NULL,
    term       BLOB   NOT NULL,
    message_id BIGINT NOT NULL,
    peer       TEXT   NOT NULL,
    PRIMARY KEY (user_name, term, message_id)
) WITHOUT ROWID;
CREATE INDEX main.search_terms_message ON search_terms(message_id);
