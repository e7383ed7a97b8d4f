-- A resend is found by (sender, client id) in the archive too, so a device
-- that resends a week-old message (offline past inbox retention) gets its
-- first copy's ack instead of storing it twice.
CREATE UNIQUE INDEX messages_archive_client ON messages_archive(sender, client_id);
