//! Table definitions, mirroring migrations/{sqlite,postgres}.

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        password_hash -> Text,
        created_at -> BigInt,
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
    }
}

diesel::joinable!(tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, tokens, sessions);
