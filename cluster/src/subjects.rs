//! The NATS subjects and headers of the cluster, stated once.
//!
//! Everything for one user travels under `bt.u.{user}.{leaf}`, so a node
//! with a device of that user follows one wildcard, `bt.u.{user}.*`, and
//! nothing else reaches it. User names are lowercase letters, digits and
//! `_` (`protocol::names`): always a single, wildcard-free subject token.

/// Prefix of every per-user subject.
const USER_PREFIX: &str = "bt.u.";

/// Header naming the node that sent the message; that node skips it when
/// it comes back (it has already delivered it locally).
pub const ORIGIN_HEADER: &str = "Bluetick-Origin";

/// What a per-user subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Committed inbox events, republished on `u/{user}/inbox` at QoS 1.
    Inbox,
    /// Typing, republished on `u/{user}/live` at QoS 0.
    Live,
    /// A device of the user connected with a client id: any other node
    /// holding that client id closes its connection.
    Takeover,
    /// The user logged out a token (its SHA-256): every node revokes it and
    /// closes the connections that used it.
    Logout,
}

impl Leaf {
    const ALL: [Leaf; 4] = [Leaf::Inbox, Leaf::Live, Leaf::Takeover, Leaf::Logout];

    fn name(self) -> &'static str {
        match self {
            Leaf::Inbox => "inbox",
            Leaf::Live => "live",
            Leaf::Takeover => "takeover",
            Leaf::Logout => "logout",
        }
    }
}

/// The subject carrying `leaf` for `user`: `bt.u.{user}.{leaf}`.
pub fn user(user: &str, leaf: Leaf) -> String {
    format!("{USER_PREFIX}{user}.{}", leaf.name())
}

/// The filter a node follows while `user` has a device on it.
pub fn user_filter(user: &str) -> String {
    format!("{USER_PREFIX}{user}.*")
}

/// The user and leaf of a per-user subject.
pub fn parse(subject: &str) -> Option<(&str, Leaf)> {
    let (user, leaf) = subject.strip_prefix(USER_PREFIX)?.split_once('.')?;
    let leaf = Leaf::ALL.into_iter().find(|l| l.name() == leaf)?;
    (!user.is_empty() && !user.contains(['*', '>'])).then_some((user, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_subject_names_its_user_and_leaf_and_nothing_else() {
        assert_eq!(parse(&user("bob", Leaf::Inbox)), Some(("bob", Leaf::Inbox)));
        assert_eq!(
            parse(&user("bob", Leaf::Takeover)),
            Some(("bob", Leaf::Takeover))
        );
        assert_eq!(parse("bt.u.bob.inbox.extra"), None);
        assert_eq!(parse("bt.u.*.inbox"), None);
        assert_eq!(parse("bt.u.bob.send"), None);
        assert_eq!(parse("bt.presence.bob"), None);
    }
}
