-- Groups (issue 18): groups, membership windows with each member's
-- receipt positions, the history of changes, and per-member receipts.
--
-- A group message is an ordinary `messages` row, stored once, whose
-- `recipient` is the group's reserved name `#{id}` (e.g. `#17`). No user
-- name can be one (user names are [a-z0-9_]), so 1:1 queries never match
-- a group message, and the `(recipient, id)` index (`messages_recipient`,
-- `messages_archive_recipient`) serves a group's history while
-- `(sender, recipient, id)` finds one sender's messages in it. Archival,
-- expiry, dedupe on (sender, client_id) and backups need no change.
-- `delivered_at` / `read_at` of a group message are its aggregate times
-- (every member counted when it was sent and still a member got there).

-- One row per group, forever: ids are never reused, and a group whose
-- last member left keeps its row and its history.
CREATE TABLE chat_groups (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    -- The creator's id for the create request: a resent create finds
    -- the group it made instead of making a second.
    client_id       TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    -- Disappearing-message timer for new messages (0: off).
    timer_seconds   BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (created_by, client_id)
);

-- Membership windows: one row each time a user joins a group. A member
-- sees the group's messages with `after_message < id`, and once they
-- left (`left_at` set) only those with `id <= through_message`, so a
-- removed member keeps the history up to their removal and a later
-- member sees only from joining. The current members are the rows with
-- `left_at IS NULL`; the oldest current member is the one with the
-- lowest row id. `delivered_up_to` / `read_up_to` are the message ids
-- this member's devices have stored / the member has read, for the
-- aggregate receipts; `sender_delivered` / `sender_read` how far the
-- aggregate receipts for this member's own messages have been worked out
-- (every other member had them, or read them, up to there). All four
-- start at `after_message`.
CREATE TABLE group_members (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id        BIGINT  NOT NULL REFERENCES chat_groups(id),
    user_name       TEXT    NOT NULL,
    admin           BOOLEAN NOT NULL DEFAULT FALSE,
    joined_at       BIGINT  NOT NULL,
    after_message   BIGINT  NOT NULL,
    left_at         BIGINT,
    through_message BIGINT,
    delivered_up_to BIGINT  NOT NULL,
    read_up_to      BIGINT  NOT NULL,
    sender_delivered BIGINT NOT NULL,
    sender_read     BIGINT  NOT NULL
);
CREATE UNIQUE INDEX group_members_current ON group_members(group_id, user_name) WHERE left_at IS NULL;
CREATE INDEX group_members_user ON group_members(user_name, group_id);

-- Every change of a group, for history's system entries ("alice added
-- bob"): `event` is the `group` inbox event's JSON (without seq), and
-- `after_message` the newest message id when it happened, which places
-- it among the group's messages.
CREATE TABLE group_changes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      BIGINT  NOT NULL REFERENCES chat_groups(id),
    after_message BIGINT  NOT NULL,
    at            BIGINT  NOT NULL,
    event         TEXT    NOT NULL
);
CREATE INDEX group_changes_group ON group_changes(group_id, after_message);

-- Per-member receipt detail ("message info"): each time a member's
-- `delivered_up_to` or `read_up_to` advances, one row. The time member U
-- got message M is the `at` of U's row with the smallest `up_to >= M`.
CREATE TABLE group_receipts (
    group_id  BIGINT NOT NULL,
    user_name TEXT   NOT NULL,
    status    TEXT   NOT NULL,  -- 'delivered' | 'read'
    up_to     BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_name, status, up_to)
);
