//! Presence state: who is online, when each user was last seen, and their
//! privacy settings.
//!
//! `users.last_seen` has exactly one writer, [`Store::record_last_seen`],
//! and the presence tracker in the bridge is its only caller: no job, HTTP
//! call, operator command or backup may move anyone's last seen.

use diesel::prelude::*;
use protocol::presence::Privacy;
use std::collections::HashSet;

use crate::db::{AnyConnection, Tx};
use crate::schema::{sessions, users};
use crate::{Store, StoreError};

/// A user's privacy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Who may see last seen and online status.
    pub last_seen: Privacy,
    /// Whether the user sends and receives read receipts.
    pub read_receipts: bool,
}

impl Store {
    /// Records that `user`'s last device went offline at `at`. The only
    /// writer of last seen; see the module docs.
    pub fn record_last_seen(&self, user: &str, at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => diesel::update(users::table.filter(users::name.eq(user)))
            .set(users::last_seen.eq(at))
            .execute(c))?;
        Ok(())
    }

    /// Whether any device of `user` is connected and not away.
    pub fn is_online(&self, user: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let present: i64 = on_backend!(&mut *conn, c => sessions::table
            .filter(sessions::user_name.eq(user))
            .filter(sessions::away.eq(false))
            .count()
            .get_result(c))?;
        Ok(present > 0)
    }

    /// Marks the connections of `client_id` away (or back).
    pub fn set_away(&self, client_id: &str, away: bool) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        Ok(
            on_backend!(&mut *conn, c => diesel::update(sessions::table.filter(sessions::client_id.eq(client_id)))
            .set(sessions::away.eq(away))
            .execute(c))?,
        )
    }

    /// `(online, last_seen)` of a registered user.
    pub fn presence_of(&self, user: &str) -> Result<(bool, Option<i64>), StoreError> {
        let last_seen: Option<Option<i64>> = {
            let mut conn = self.conn()?;
            on_backend!(&mut *conn, c => users::table
                .filter(users::name.eq(user))
                .select(users::last_seen)
                .first(c)
                .optional())?
        };
        let last_seen = last_seen.ok_or(StoreError::UnknownUser)?;
        Ok((self.is_online(user)?, last_seen))
    }

    /// A user's privacy settings.
    pub fn settings(&self, user: &str) -> Result<Settings, StoreError> {
        let mut conn = self.conn()?;
        let (privacy, read_receipts): (String, bool) = on_backend!(&mut *conn, c => users::table
            .filter(users::name.eq(user))
            .select((users::last_seen_privacy, users::read_receipts))
            .first(c)
            .optional())?
        .ok_or(StoreError::UnknownUser)?;
        let last_seen = Privacy::parse(&privacy)
            .ok_or_else(|| StoreError::Corrupt(format!("privacy {privacy:?} of {user}")))?;
        Ok(Settings {
            last_seen,
            read_receipts,
        })
    }

    /// Changes what is given and returns the settings now in force.
    pub fn update_settings(
        &self,
        user: &str,
        last_seen: Option<Privacy>,
        read_receipts: Option<bool>,
    ) -> Result<Settings, StoreError> {
        {
            let mut conn = self.conn()?;
            if let Some(privacy) = last_seen {
                on_backend!(&mut *conn, c => diesel::update(users::table.filter(users::name.eq(user)))
                    .set(users::last_seen_privacy.eq(privacy.as_str()))
                    .execute(c))?;
            }
            if let Some(on) = read_receipts {
                on_backend!(&mut *conn, c => diesel::update(users::table.filter(users::name.eq(user)))
                    .set(users::read_receipts.eq(on))
                    .execute(c))?;
            }
        }
        self.settings(user)
    }

    /// Has `user` written to `other` (at least one message, hot or
    /// archived)? That is what makes `other` one of `user`'s contacts for
    /// privacy: a stranger cannot become someone's contact by writing to
    /// them, only by being written to.
    pub fn has_written_to(&self, user: &str, other: &str) -> Result<bool, StoreError> {
        crate::history::has_written(&mut *self.conn()?, user, other)
    }
}

impl Tx<'_> {
    /// Which of `names` send and receive read receipts.
    pub fn with_read_receipts(&mut self, names: &[&str]) -> Result<HashSet<String>, StoreError> {
        with_read_receipts(self.conn, names)
    }
}

impl Store {
    /// Which of `names` send and receive read receipts, outside a batch.
    pub fn with_read_receipts(&self, names: &[&str]) -> Result<HashSet<String>, StoreError> {
        with_read_receipts(&mut *self.conn()?, names)
    }
}

fn with_read_receipts(
    conn: &mut AnyConnection,
    names: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let found: Vec<String> = on_backend!(conn, c => users::table
        .filter(users::name.eq_any(names))
        .filter(users::read_receipts.eq(true))
        .select(users::name)
        .load(c))?;
    Ok(found.into_iter().collect())
}
