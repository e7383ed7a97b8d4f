-- SQLite's search_terms becomes WITHOUT ROWID in this version; PostgreSQL's
-- keeps its shape. The migration exists on both backends so that a backup
-- taken on one restores into the other (restore checks migration names).
SELECT 1;
