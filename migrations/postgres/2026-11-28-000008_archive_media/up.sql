-- Media references in the archive too, so archived media messages keep
-- their media and their recipients keep access to it.
ALTER TABLE messages_archive ADD COLUMN media_id TEXT;
ALTER TABLE messages_archive ADD COLUMN media BYTEA;
CREATE INDEX messages_archive_media ON messages_archive(media_id, recipient);

DROP VIEW message_history;
CREATE VIEW message_history AS
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at,
           media_id, media
      FROM messages
    UNION ALL
    SELECT id, sender, recipient, client_id, body, sent_at, delivered_at, read_at, expires_at,
           media_id, media
      FROM messages_archive;
