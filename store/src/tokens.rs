//! Access tokens.
//!
//! A token is 256 random bits, shown to its owner once as `bt_` + 64 hex
//! digits. The store keeps only its SHA-256: tokens are high-entropy, so a
//! fast hash is enough to make a stolen table useless, and it lets every
//! MQTT CONNECT be checked with one indexed lookup.

use diesel::prelude::*;
use protocol::UserName;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::encoding::hex;
use crate::schema::{token_revocations, tokens, users};
use crate::{clock, Store, StoreError};

/// How long a logout's record in `token_revocations` is kept: every node
/// has read it, and every connection that used the token has sent a packet
/// and been closed, long before.
pub const REVOCATION_RECORDS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// A freshly issued token. The plain token exists only here.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The secret to present as a bearer token or MQTT password.
    pub token: String,
    /// When it stops working, in Unix milliseconds.
    pub expires_at: i64,
}

/// Whom a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user: UserName,
    /// When the token stops working, in Unix milliseconds.
    pub expires_at: i64,
}

/// The stored form of a token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex(&digest)
}

/// 256 random bits from the OS, as 64 hex digits: tokens and other
/// server secrets.
pub fn random_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    hex(&secret)
}

fn new_token() -> String {
    format!("bt_{}", random_secret())
}

/// Stores a new token for the user with id `user_id`, valid for `ttl`.
pub(crate) fn insert_token(
    conn: &mut crate::db::AnyConnection,
    user_id: i64,
    ttl: Duration,
) -> Result<IssuedToken, StoreError> {
    let token = new_token();
    let now = clock::now_ms();
    let expires_at = now.saturating_add(ttl.as_millis() as i64);
    on_backend!(conn, c => diesel::insert_into(tokens::table)
        .values((
            tokens::user_id.eq(user_id),
            tokens::token_hash.eq(token_hash(&token)),
            tokens::created_at.eq(now),
            tokens::expires_at.eq(expires_at),
        ))
        .execute(c))?;
    Ok(IssuedToken { token, expires_at })
}

impl Store {
    /// Issues a token for `user` that expires after `ttl`.
    pub fn issue_token(&self, user: &UserName, ttl: Duration) -> Result<IssuedToken, StoreError> {
        let user_id = self.user_id(user)?;
        let mut conn = self.conn()?;
        insert_token(&mut conn, user_id, ttl)
    }

    /// Finds the owner of an unexpired token, or [`StoreError::BadCredentials`].
    pub fn authenticate_token(&self, token: &str) -> Result<TokenOwner, StoreError> {
        let mut conn = self.conn()?;
        let found: Option<(String, i64)> = on_backend!(&mut *conn, c => tokens::table
            .inner_join(users::table)
            .filter(tokens::token_hash.eq(token_hash(token)))
            .filter(tokens::expires_at.gt(clock::now_ms()))
            .select((users::name, tokens::expires_at))
            .first(c)
            .optional())?;
        let (name, expires_at) = found.ok_or(StoreError::BadCredentials)?;
        Ok(TokenOwner {
            user: UserName::parse(&name)?,
            expires_at,
        })
    }

    /// Revokes a token and records the revocation for every node (see
    /// [`Store::revocations_since`]). Revoking an unknown token is
    /// [`StoreError::BadCredentials`], so logout cannot probe for tokens.
    pub fn revoke_token(&self, token: &str) -> Result<(), StoreError> {
        let hash = token_hash(token);
        self.transaction(|tx| {
            let deleted = on_backend!(&mut *tx.conn, c => diesel::delete(
                tokens::table.filter(tokens::token_hash.eq(&hash)),
            )
            .execute(c))?;
            if deleted == 0 {
                return Err(StoreError::BadCredentials);
            }
            on_backend!(&mut *tx.conn, c => diesel::insert_into(token_revocations::table)
                .values((
                    token_revocations::token_hash.eq(&hash),
                    token_revocations::revoked_at.eq(clock::now_ms()),
                ))
                .on_conflict(token_revocations::token_hash)
                .do_nothing()
                .execute(c))?;
            Ok(())
        })
    }

    /// Hashes of tokens revoked after `after` (Unix ms), with when, oldest
    /// first: what a node follows to close its connections that used them.
    pub fn revocations_since(&self, after: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => token_revocations::table
            .filter(token_revocations::revoked_at.gt(after))
            .order(token_revocations::revoked_at.asc())
            .select((token_revocations::token_hash, token_revocations::revoked_at))
            .load(c))?)
    }
}
