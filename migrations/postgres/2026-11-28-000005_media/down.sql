DROP INDEX messages_media;
ALTER TABLE messages DROP COLUMN media;
ALTER TABLE messages DROP COLUMN media_id;
DROP TABLE media;
