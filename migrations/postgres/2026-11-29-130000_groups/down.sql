DROP TABLE group_receipts;
DROP TABLE group_changes;
DROP TABLE group_members;
DROP TABLE chat_groups;
