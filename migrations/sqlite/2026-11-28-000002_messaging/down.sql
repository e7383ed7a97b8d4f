DROP TABLE dead_letters;
DROP TABLE devices;
DROP TABLE inbox;
DROP TABLE messages;
ALTER TABLE users DROP COLUMN inbox_seq;
