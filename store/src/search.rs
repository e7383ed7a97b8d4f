//! Word search over sealed bodies, through a blind index.
//!
//! Bodies are encrypted at rest, so the index must not be a readable copy
//! of them. Each distinct word of a message becomes, per participant,
//! `HMAC-SHA256(index key, user || 0 || word)` cut to [`TERM_LEN`] bytes:
//! a row of `search_terms` on PostgreSQL, a token of the message's FTS5
//! document on SQLite ([`crate::search_file`]). A search computes the
//! same values for its words and looks them up; no readable word is ever
//! written.
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
use crate::db::AnyConnection;
use crate::schema::search_terms;
use crate::search_file;
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
pub(crate) struct TermRow<'a> {
    pub(crate) user_name: &'a str,
    pub(crate) term: Vec<u8>,
    pub(crate) message_id: i64,
    pub(crate) peer: &'a str,
}

/// The index rows of message `id`: its distinct words (at most
/// [`WORDS_PER_MESSAGE`]), once for each participant; a group message's
/// once, under its group (its recipient, `#17`), whatever the number of
/// members: a search filters those rows by the caller's membership windows.
pub(crate) fn terms_of<'a>(
    index: &BlindIndex,
    id: i64,
    sender: &'a str,
    recipient: &'a str,
    text: &str,
) -> Vec<TermRow<'a>> {
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
                    user_name: user,
                    term: index.term(user, word),
                    message_id: id,
                    peer,
                })
        })
        .collect()
}

/// The word standing for the chat with `peer` among a document's terms
/// (SQLite): no word contains the byte 1.
fn chat_word(peer: &str) -> String {
    format!("\u{1}{peer}")
}

/// SQLite's FTS5 documents of `rows` (the terms of messages, grouped by
/// message as [`terms_of`] returns them): (message id, document). Each
/// row's term, and one chat term per participant, as hex tokens.
pub(crate) fn documents(index: &BlindIndex, rows: &[TermRow<'_>]) -> Vec<(i64, String)> {
    let mut documents: Vec<(i64, String)> = Vec::new();
    let mut chats: Vec<(&str, &str)> = Vec::new();
    for row in rows {
        if documents.last().is_none_or(|(id, _)| *id != row.message_id) {
            documents.push((row.message_id, String::new()));
            chats.clear();
        }
        let (_, document) = documents.last_mut().expect("pushed above");
        search_file::push_token(document, &row.term);
        if !chats.contains(&(row.user_name, row.peer)) {
            chats.push((row.user_name, row.peer));
            search_file::push_token(document, &index.term(row.user_name, &chat_word(row.peer)));
        }
    }
    documents
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
        let peer = match scope {
            Scope::Peer(peer) => Some(peer),
            _ => None,
        };
        let index = BlindIndex::new(self.sealer()?);
        let mut conn = self.conn()?;
        let ids = match &mut *conn {
            AnyConnection::Sqlite(c) => {
                let terms = |owner: &str| -> Vec<Vec<u8>> {
                    words.iter().map(|word| index.term(owner, word)).collect()
                };
                let mut parts: Vec<search_file::Part> = groups
                    .groups()
                    .map(|group| search_file::Part {
                        terms: terms(&recipient_of(group)),
                        ids: groups.windows_sql(group, "rowid"),
                    })
                    .collect();
                if mine {
                    let mut mine = terms(me);
                    mine.extend(peer.map(|peer| index.term(me, &chat_word(peer))));
                    parts.push(search_file::Part { terms: mine, ids: "1 = 1".to_owned() });
                }
                search_file::search(c, &parts, below(before), limit + 1)?
            }
            AnyConnection::Postgres(c) => {
                let mut owners: Vec<String> = groups.groups().map(recipient_of).collect();
                if mine {
                    owners.push(me.to_owned());
                }
                let terms: Vec<Vec<u8>> = owners
                    .iter()
                    .flat_map(|owner| words.iter().map(|word| index.term(owner, word)))
                    .collect();
                // With no peer, the peer test is `OR true`: one query shape
                // for both.
                let any_peer = peer.is_none().into_sql::<Bool>();
                let mine = mine.into_sql::<Bool>();
                search_terms::table
                    .filter(
                        (search_terms::user_name.eq(me).and(mine))
                            .or(groups.condition("user_name", "message_id")),
                    )
                    .filter(search_terms::term.eq_any(terms))
                    .filter(search_terms::message_id.lt(below(before)))
                    .filter(search_terms::peer.eq(peer.unwrap_or_default()).or(any_peer))
                    // A message matches when all of its distinct terms are
                    // found.
                    .group_by(search_terms::message_id)
                    .having(count_star().eq(words.len() as i64))
                    .order(search_terms::message_id.desc())
                    .limit(limit as i64 + 1)
                    .select(search_terms::message_id)
                    .load(c)?
            }
        };
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
