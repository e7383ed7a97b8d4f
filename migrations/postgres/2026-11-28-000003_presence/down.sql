ALTER TABLE sessions DROP COLUMN away;
ALTER TABLE users DROP COLUMN read_receipts;
ALTER TABLE users DROP COLUMN last_seen_privacy;
ALTER TABLE users DROP COLUMN last_seen;
