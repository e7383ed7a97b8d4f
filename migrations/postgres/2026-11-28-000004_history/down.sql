DROP TABLE search_terms;
DROP TABLE stars;
DROP VIEW message_history;
DROP TABLE messages_archive;
