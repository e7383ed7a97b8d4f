DROP INDEX dead_letters_user_created;
ALTER TABLE dead_letters DROP COLUMN payload_size;
