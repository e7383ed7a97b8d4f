//! Topic strings and the access rule.
//!
//! A user owns the subtree `u/{user}/…`: it may publish there to the
//! client→server leaves ([`CLIENT_LEAVES`]) and subscribe there, and it may
//! subscribe to another user's exact presence topic `presence/{user}` (which
//! only the server publishes). No wildcard may reach outside the user's own
//! subtree, so `#`, `+/+/inbox`, `u/+/send` and `$share/…` are all refused.
//!
//! The leaves are a closed list because the broker keeps a log for every
//! distinct topic and never frees it: letting clients invent topics would let
//! them grow the broker's memory without bound.

use crate::names::UserName;

/// Prefix of every per-user topic.
pub const USER_PREFIX: &str = "u/";
/// Prefix of the server-published presence topics.
pub const PRESENCE_PREFIX: &str = "presence/";

/// Leaves of `u/{me}/…` that a client publishes to.
pub const CLIENT_LEAVES: [&str; 8] = [
    "send", "read", "sync", "ack", "typing", "presence", "star", "group",
];
/// Leaves of `u/{me}/…` that only the server publishes to.
pub const SERVER_LEAVES: [&str; 2] = ["inbox", "live"];

/// The subtree a user owns, as a filter: `u/{user}/#`.
pub fn user_subtree(user: &UserName) -> String {
    format!("{USER_PREFIX}{user}/#")
}

/// The retained presence topic of a user: `presence/{user}`.
pub fn presence_topic(user: &str) -> String {
    format!("{PRESENCE_PREFIX}{user}")
}

/// The user a `presence/{user}` topic is about.
pub fn presence_target(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(PRESENCE_PREFIX)
        .filter(|name| UserName::parse(name).is_ok())
}

/// The name of a topic inside a user's subtree (`u/{user}/{leaf}`).
pub fn user_topic(user: &UserName, leaf: &str) -> String {
    format!("{USER_PREFIX}{user}/{leaf}")
}

/// Returns the part after `u/{user}/`, if `topic` lies in that user's subtree.
fn own_suffix<'a>(user: &UserName, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(USER_PREFIX)?
        .strip_prefix(user.as_str())?
        .strip_prefix('/')
}

/// May `user` publish to `topic`? Only to `u/{user}/{leaf}` for a leaf in
/// [`CLIENT_LEAVES`].
pub fn may_publish(user: &UserName, topic: &str) -> bool {
    own_suffix(user, topic).is_some_and(|leaf| CLIENT_LEAVES.contains(&leaf))
}

/// May `user` subscribe to `filter`? To `u/{user}/#`, `u/{user}/+`, any
/// one known leaf of its own subtree, or one exact `presence/{name}`.
pub fn may_subscribe(user: &UserName, filter: &str) -> bool {
    if let Some(rest) = own_suffix(user, filter) {
        return rest == "#"
            || rest == "+"
            || CLIENT_LEAVES.contains(&rest)
            || SERVER_LEAVES.contains(&rest);
    }
    match filter.strip_prefix(PRESENCE_PREFIX) {
        Some(name) => UserName::parse(name).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    #[test]
    fn a_user_publishes_only_in_its_own_subtree() {
        let a = alice();
        assert!(may_publish(&a, "u/alice/send"));
        assert!(may_publish(&a, "u/alice/presence"));
        for bad in [
            "u/bob/send",
            "u/alice",
            "u/alice/",
            "u/alicex/send",
            "u/alice/+",
            "u/alice/inbox",
            "u/alice/made_up",
            "u/alice/send/x",
            "presence/alice",
            "#",
            "u/+/send",
            "$share/g/u/alice/send",
        ] {
            assert!(!may_publish(&a, bad), "{bad}");
        }
    }

    #[test]
    fn a_user_subscribes_only_to_its_subtree_and_exact_presence() {
        let a = alice();
        for good in [
            "u/alice/inbox",
            "u/alice/#",
            "u/alice/+",
            "presence/bob",
            "presence/alice",
        ] {
            assert!(may_subscribe(&a, good), "{good}");
        }
        for bad in [
            "u/bob/#",
            "#",
            "+/+/inbox",
            "u/+/send",
            "u/#",
            "presence/+",
            "presence/#",
            "$share/g/u/alice/#",
            "u/alicex/#",
            "u/alice",
            "u/alice/made_up",
            "u/alice/+/x",
        ] {
            assert!(!may_subscribe(&a, bad), "{bad}");
        }
    }
}
