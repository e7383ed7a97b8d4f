DROP TABLE sessions;
DROP TABLE tokens;
DROP TABLE users;
