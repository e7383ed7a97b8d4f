DROP INDEX messages_archive_media;
CREATE INDEX messages_archive_media ON messages_archive(media_id, recipient);
DROP INDEX messages_media;
CREATE INDEX messages_media ON messages(media_id, recipient);
DROP INDEX chat_timers_user_b;
DROP TABLE search_cursor;
