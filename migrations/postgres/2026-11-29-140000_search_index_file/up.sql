-- SQLite moves its search index to a file of its own (issue 13).
-- PostgreSQL keeps it in its one database; this migration exists so both
-- backends know the same migrations (a backup of one restores into the
-- other).
SELECT 1;
