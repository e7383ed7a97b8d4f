DROP VIEW message_history;
CREATE VIEW message_history AS
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at
      FROM messages
    UNION ALL
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at
      FROM messages_archive;
DROP INDEX messages_archive_media;
ALTER TABLE messages_archive DROP COLUMN media;
ALTER TABLE messages_archive DROP COLUMN media_id;
