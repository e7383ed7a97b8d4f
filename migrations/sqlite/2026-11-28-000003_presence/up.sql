-- Presence: when each user was last seen, who may see it, whether they
-- send and receive read receipts, and which connected devices are away.

-- Written only by the presence tracker, when a user's last device goes.
ALTER TABLE users ADD COLUMN last_seen BIGINT;
-- 'everyone' | 'contacts' | 'nobody'
ALTER TABLE users ADD COLUMN last_seen_privacy TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE users ADD COLUMN read_receipts BOOLEAN NOT NULL DEFAULT 1;

-- A connected device that said it is offline (backgrounded, or its last will).
ALTER TABLE sessions ADD COLUMN away BOOLEAN NOT NULL DEFAULT 0;
