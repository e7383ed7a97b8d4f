//! Table definitions, mirroring migrations/{sqlite,postgres}.

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        inbox_seq -> BigInt,
        last_seen -> Nullable<BigInt>,
        last_seen_privacy -> Text,
        read_receipts -> Bool,
    }
}

diesel::table! {
    token_revocations (token_hash) {
        token_hash -> Text,
        revoked_at -> BigInt,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sessions (connection_id) {
        connection_id -> Text,
        user_name -> Text,
        client_id -> Text,
        node -> Text,
        connected_at -> BigInt,
        away -> Bool,
    }
}

diesel::joinable!(tokens -> users (user_id));

diesel::table! {
    messages (id) {
        id -> BigInt,
        sender -> Text,
        recipient -> Text,
        client_id -> Text,
        body -> Binary,
        sent_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        media_id -> Nullable<Text>,
        media -> Nullable<Binary>,
    }
}

diesel::table! {
    inbox (user_name, seq) {
        user_name -> Text,
        seq -> BigInt,
        kind -> Text,
        message_id -> Nullable<BigInt>,
        payload -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    devices (user_name, device) {
        user_name -> Text,
        device -> Text,
        acked_seq -> BigInt,
        acked_at -> BigInt,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> BigInt,
        user_name -> Text,
        topic -> Text,
        payload -> Binary,
        code -> Text,
        reason -> Text,
        created_at -> BigInt,
        replayed_at -> Nullable<BigInt>,
        payload_size -> Nullable<BigInt>,
    }
}

diesel::table! {
    media (id) {
        id -> Text,
        owner -> Text,
        object_key -> Text,
        size -> BigInt,
        sha256 -> Text,
        content_type -> Text,
        thumbnail_key -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::joinable!(inbox -> messages (message_id));
diesel::joinable!(messages -> media (media_id));
diesel::allow_tables_to_appear_in_same_query!(
    media,
    messages,
    inbox,
    devices,
    dead_letters,
    users,
    tokens,
    sessions
);

diesel::table! {
    messages_archive (id) {
        id -> BigInt,
        sender -> Text,
        recipient -> Text,
        client_id -> Text,
        body -> Binary,
        sent_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        media_id -> Nullable<Text>,
        media -> Nullable<Binary>,
    }
}

// A view: `messages` UNION ALL `messages_archive`. Read-only.
diesel::table! {
    message_history (id) {
        id -> BigInt,
        sender -> Text,
        recipient -> Text,
        client_id -> Text,
        body -> Binary,
        sent_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        media_id -> Nullable<Text>,
        media -> Nullable<Binary>,
    }
}

diesel::table! {
    stars (user_name, message_id) {
        user_name -> Text,
        message_id -> BigInt,
        starred_at -> BigInt,
    }
}

diesel::table! {
    search_terms (user_name, term, message_id) {
        user_name -> Text,
        term -> Binary,
        message_id -> BigInt,
        peer -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(message_history, stars, search_terms, users);

diesel::table! {
    chat_timers (user_a, user_b) {
        user_a -> Text,
        user_b -> Text,
        seconds -> BigInt,
        set_by -> Text,
        set_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(messages_archive, messages);

diesel::table! {
    job_runs (id) {
        id -> BigInt,
        job -> Text,
        slot -> Nullable<BigInt>,
        node -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        status -> Text,
        counts -> Text,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    job_leases (job) {
        job -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    nodes (node) {
        node -> Text,
        heartbeat_at -> BigInt,
    }
}

diesel::table! {
    device_backups (id) {
        id -> BigInt,
        user_name -> Text,
        data -> Binary,
        size -> BigInt,
        sha256 -> Text,
        created_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(nodes, sessions);

diesel::allow_tables_to_appear_in_same_query!(media, message_history);

diesel::table! {
    search_cursor (indexer) {
        indexer -> Text,
        through -> BigInt,
    }
}

diesel::table! {
    chat_groups (id) {
        id -> BigInt,
        name -> Text,
        created_by -> Text,
        client_id -> Text,
        created_at -> BigInt,
        timer_seconds -> BigInt,
    }
}

diesel::table! {
    group_members (id) {
        id -> BigInt,
        group_id -> BigInt,
        user_name -> Text,
        admin -> Bool,
        joined_at -> BigInt,
        after_message -> BigInt,
        left_at -> Nullable<BigInt>,
        through_message -> Nullable<BigInt>,
        delivered_up_to -> BigInt,
        read_up_to -> BigInt,
        sender_delivered -> BigInt,
        sender_read -> BigInt,
    }
}

diesel::table! {
    group_changes (id) {
        id -> BigInt,
        group_id -> BigInt,
        after_message -> BigInt,
        at -> BigInt,
        event -> Text,
    }
}

diesel::table! {
    group_receipts (group_id, user_name, status, up_to) {
        group_id -> BigInt,
        user_name -> Text,
        status -> Text,
        up_to -> BigInt,
        at -> BigInt,
    }
}

diesel::joinable!(group_members -> chat_groups (group_id));
diesel::joinable!(group_changes -> chat_groups (group_id));
diesel::allow_tables_to_appear_in_same_query!(
    chat_groups,
    group_members,
    group_changes,
    group_receipts,
    users
);
diesel::allow_tables_to_appear_in_same_query!(group_members, messages);
diesel::allow_tables_to_appear_in_same_query!(group_members, message_history);
diesel::allow_tables_to_appear_in_same_query!(group_members, inbox);
diesel::allow_tables_to_appear_in_same_query!(chat_groups, messages);
diesel::allow_tables_to_appear_in_same_query!(chat_groups, message_history);
