DROP INDEX messages_archive_client;
