-- Dead-letter quota: a refused payload over the kept prefix is stored cut
-- to it, or not at all once its sender used up the byte budget of the
-- window; `payload_size` is then its full length (NULL: kept whole), and
-- the budget is summed per user over recent rows.
ALTER TABLE dead_letters ADD COLUMN payload_size BIGINT;
CREATE INDEX dead_letters_user_created ON dead_letters(user_name, created_at);
