DROP INDEX messages_archive_expires;
DROP INDEX messages_expires;
DROP INDEX inbox_message;
DROP TABLE chat_timers;
