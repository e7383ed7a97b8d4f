//! Word search over sealed bodies, through a blind index.
//!
//! Bodies are encrypted at rest, so the index must not be a readable copy
//! of them. Each distinct word of a message becomes one row per
//! participant holding `HMAC-SHA256(index key, user || 0 || word)`, cut to
//! [`TERM_LEN`] bytes. A search computes the same values for its words and
//! looks them up; no readable word is ever written.
//!
//! A group message is indexed once, under its group (`#17` in place of a
//! user, in the term and in `user_name`), not once per member: a search
//! looks under the caller and under each group they were in, and keeps the
//! group rows inside the caller's membership windows.
//!
//! The trade-off, stated plainly: someone holding the database but not the
//! key learns, per user, which of that user's messages share a word, how
//! many distinct words a message has, and who talks to whom (which the
//! messages table shows anyway). Because the user is part of every term,
//! equal words in two users' messages do not look equal. Someone holding
//! the key can confirm a guessed word, as they could decrypt the bodies.
//!
//! Words are normalised so search is case- and accent-insensitive:
//! Unicode NFKD, combining marks dropped, lowercase, split on anything that
//! is not a letter or digit. Whole words match; there is no prefix search.

use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel::IntoSql;
use hmac::{Hmac, Mac};
use protocol::groups::GroupId;
use protocol::history::{HistoryMessage, Page};
use sha2::Sha256;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::groups::recipient_of;
use crate::history::{below, page};
use crate::schema::search_terms;
use crate::visibility::Visible;
use crate::{Sealer, Store, StoreError};

/// Bytes of each stored term: 128 bits leave no practical collisions.
pub const TERM_LEN: usize = 16;
/// Longer words are indexed (and searched) by their first this many chars.
pub const WORD_MAX_CHARS: usize = 64;
/// Distinct words indexed per message; the rest of a huge message is not.
pub const WORDS_PER_MESSAGE: usize = 512;
/// Most words one search may have.
pub const QUERY_MAX_WORDS: usize = 16;

/// What derives the index key from the message key.
const KEY_PURPOSE: &str = "bluetick blind search index v1";

/// The distinct normalised words of `text`, in order of first appearance.
pub fn words(text: &str) -> Vec<String> {
    let normalised: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let mut seen = std::collections::HashSet::new();
    normalised
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| word.chars().take(WORD_MAX_CHARS).collect::<String>())
        .filter(|word| seen.insert(word.clone()))
        .collect()
}

/// Computes terms: the keyed hashes that stand in for words.
pub struct BlindIndex {
    mac: Hmac<Sha256>,
}

impl BlindIndex {
    /// The index keyed from the message key.
    pub fn new(sealer: &Sealer) -> BlindIndex {
        let key = sealer.derive_key(KEY_PURPOSE);
        BlindIndex {
            mac: Hmac::new_from_slice(&key).expect("HMAC takes a key of any length"),
        }
    }

    /// The term for `word` in `user`'s index.
    pub fn term(&self, user: &str, word: &str) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(word.as_bytes());
        mac.finalize().into_bytes()[..TERM_LEN].to_vec()
    }
}

/// Why a search cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSearch {
    /// `q` has no letters or digits.
    NoWords,
    /// `q` has more than [`QUERY_MAX_WORDS`] words.
    TooManyWords,
}

/// One row of the blind index: `term` stands for a word of message
/// `message_id` in `user_name`'s index, in their chat with `peer`.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = search_terms)]
pub(crate) struct TermRow {
    pub(crate) user_name: String,
    pub(crate) term: Vec<u8>,
    pub(crate) message_id: i64,
    pub(crate) peer: String,
}

/// The index rows of message `id`: its distinct words (at most
/// [`WORDS_PER_MESSAGE`]), once for each participant; a group message's
/// once, under its group (its recipient, `#17`), whatever the number of
/// members: a search filters those rows by the caller's membership windows.
pub(crate) fn terms_of(
    index: &BlindIndex,
    id: i64,
    sender: &str,
    recipient: &str,
    text: &str,
) -> Vec<TermRow> {
    let words = words(text);
    let mut participants = vec![(sender, recipient)];
    if crate::groups::group_of(recipient).is_some() {
        participants = vec![(recipient, sender)];
    } else if sender != recipient {
        participants.push((recipient, sender));
    }
    participants
        .iter()
        .flat_map(|&(user, peer)| {
            words
                .iter()
                .take(WORDS_PER_MESSAGE)
                .map(move |word| TermRow {
                    user_name: user.to_owned(),
                    term: index.term(user, word),
                    message_id: id,
                    peer: peer.to_owned(),
                })
        })
        .collect()
}

/// Which messages a search looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope<'a> {
    /// Every chat of the caller's and every group they may see.
    #[default]
    All,
    /// Only the 1:1 chat with this user.
    Peer(&'a str),
    /// Only this group (inside the caller's windows).
    Group(GroupId),
}

impl Store {
    /// `me`'s messages (in `scope`) containing every word of `query`,
    /// newest first. Group messages are indexed once, under their group;
    /// those `me` may not see (never a member, or sent outside their
    /// windows) are filtered out in the same query.
    pub fn search(
        &self,
        me: &str,
        query: &str,
        scope: Scope<'_>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Result<Page<HistoryMessage>, BadSearch>, StoreError> {
        let words = words(query);
        if words.is_empty() {
            return Ok(Err(BadSearch::NoWords));
        }
        if words.len() > QUERY_MAX_WORDS {
            return Ok(Err(BadSearch::TooManyWords));
        }
        let visible = self.visible_to(me)?;
        let (mine, groups) = match scope {
            Scope::All => (true, visible.clone()),
            Scope::Peer(_) => (true, Visible::none()),
            Scope::Group(group) => (false, visible.clone().only(group)),
        };
        let mut owners: Vec<String> = groups.groups().map(recipient_of).collect();
        if mine {
            owners.push(me.to_owned());
        }
        let index = BlindIndex::new(self.sealer()?);
        let terms: Vec<Vec<u8>> = owners
            .iter()
            .flat_map(|owner| words.iter().map(|word| index.term(owner, word)))
            .collect();
        let peer = match scope {
            Scope::Peer(peer) => Some(peer),
            _ => None,
        };
        // With no peer, the peer test is `OR true`: one query shape for both.
        let any_peer = peer.is_none().into_sql::<Bool>();
        let mine = mine.into_sql::<Bool>();
        let matching = search_terms::table
            .filter(
                (search_terms::user_name.eq(me).and(mine))
                    .or(groups.condition("user_name", "message_id")),
            )
            .filter(search_terms::term.eq_any(terms))
            .filter(search_terms::message_id.lt(below(before)))
            .filter(search_terms::peer.eq(peer.unwrap_or_default()).or(any_peer))
            // A message matches when all of its distinct terms are found.
            .group_by(search_terms::message_id)
            .having(count_star().eq(words.len() as i64))
            .order(search_terms::message_id.desc())
            .limit(limit as i64 + 1)
            .select(search_terms::message_id);
        let mut conn = self.conn()?;
        let ids: Vec<i64> = on_backend!(&mut *conn, c => matching.load(c))?;
        let messages = self.messages_by_id(&mut conn, me, &visible, &ids)?;
        Ok(Ok(page(messages, limit, |m| m.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_and_accents_and_repeat_once() {
        assert_eq!(
            words("Café au LAIT, café! Crème-brûlée naïve 42"),
            ["cafe", "au", "lait", "creme", "brulee", "naive", "42"]
        );
        assert_eq!(words("ÉCOLE"), words("école"));
        assert!(words("  ,.;!? ").is_empty());
    }

    #[test]
    fn terms_differ_per_user_and_never_contain_the_word() {
        let index = BlindIndex::new(&Sealer::from_hex(&"ab".repeat(32)).unwrap());
        let alice = index.term("alice", "secret");
        assert_eq!(alice.len(), TERM_LEN);
        assert_eq!(alice, index.term("alice", "secret"));
        assert_ne!(alice, index.term("bob", "secret"));
        assert!(!alice.windows(6).any(|w| w == b"secret"));
    }
}
