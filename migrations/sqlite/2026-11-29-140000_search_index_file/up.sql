-- The search index moves to a SQLite file of its own (issue 13): it is
-- derived data, written by the indexer's own connection, so its passes
-- never take the main file's write lock that every ✓ waits for. The
-- tables are made in that file by `Store::migrate` (store/src/db.rs,
-- SQLITE_SEARCH_SCHEMA), with the cursor at 0: the indexer writes the
-- index again from every message. Backups never carried these tables.
DROP TABLE main.search_terms;
DROP TABLE main.search_cursor;
