//! The NATS subjects and headers of the cluster, stated once.
//!
//! User names are lowercase letters, digits and `_` (`protocol::names`), so
//! a name is always a single, wildcard-free subject token.

/// Prefix of a user's inbox subject: `bt.inbox.{user}`.
pub const INBOX_PREFIX: &str = "bt.inbox.";

/// Header naming the node that committed (and already published locally)
/// the event; that node skips it when it comes back.
pub const ORIGIN_HEADER: &str = "Bluetick-Origin";

/// The subject carrying `user`'s committed inbox events.
pub fn inbox(user: &str) -> String {
    format!("{INBOX_PREFIX}{user}")
}

/// The user whose inbox subject this is.
pub fn inbox_user(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(INBOX_PREFIX)
        .filter(|user| !user.is_empty() && !user.contains(['.', '*', '>']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_subject_names_its_user_and_nothing_else() {
        assert_eq!(inbox_user(&inbox("bob")), Some("bob"));
        assert_eq!(inbox_user("bt.inbox.bob.extra"), None);
        assert_eq!(inbox_user("bt.inbox.*"), None);
        assert_eq!(inbox_user("bt.live.bob"), None);
    }
}
