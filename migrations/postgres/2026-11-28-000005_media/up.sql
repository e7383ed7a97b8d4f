-- Media: uploaded objects (the seed's UserMediaServer), and messages that
-- reference them, so "may this user download this media" is one query.

CREATE TABLE media (
    id            TEXT    PRIMARY KEY,  -- 32 random hex digits, unguessable
    owner         TEXT    NOT NULL,     -- the uploader's user name
    object_key    TEXT    NOT NULL,     -- where the bytes are in the object store
    size          BIGINT  NOT NULL,
    sha256        TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    thumbnail_key TEXT,                 -- set once a thumbnail is made
    created_at    BIGINT  NOT NULL,
    -- Identical content from one owner is stored once.
    UNIQUE (owner, sha256)
);
CREATE INDEX media_created ON media(created_at);

-- The media a message carries: its id (plain, for access checks and the
-- orphan query) and the reference as delivered, sealed since it holds the
-- caption.
ALTER TABLE messages ADD COLUMN media_id TEXT REFERENCES media(id);
ALTER TABLE messages ADD COLUMN media BYTEA;
CREATE INDEX messages_media ON messages(media_id, recipient);
