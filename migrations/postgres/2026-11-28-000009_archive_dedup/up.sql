-- A resend is found by (sender, client id) in the archive too, so a client
-- that resends a week-old message (a device whose user's other devices
-- fetched the ack, a browser retrying an HTTP send) gets its first copy's
-- ack instead of storing it twice.
CREATE UNIQUE INDEX messages_archive_client ON messages_archive(sender, client_id);
