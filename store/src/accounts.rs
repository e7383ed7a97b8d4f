//! Users and their passwords.
//!
//! Passwords are hashed with argon2id (the crate's default parameters) and a
//! random salt; only the PHC string is stored. A login for an unknown user
//! still runs one argon2 verification, so response time does not reveal
//! which names exist.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use protocol::names::check_password;
use protocol::UserName;
use std::sync::OnceLock;

use crate::schema::users;
use crate::{clock, Store, StoreError};

impl Store {
    /// Registers a user. Fails with [`StoreError::NameTaken`] if the name
    /// exists, or [`StoreError::Invalid`] if name or password break the rules.
    pub fn create_user(&self, name: &str, password: &str) -> Result<UserName, StoreError> {
        let name = UserName::parse(name)?;
        check_password(password)?;
        let password_hash = hash_password(password)?;
        let mut conn = self.conn()?;
        let inserted = on_backend!(&mut *conn, c => diesel::insert_into(users::table)
            .values((
                users::name.eq(name.as_str()),
                users::password_hash.eq(&password_hash),
                users::created_at.eq(clock::now_ms()),
            ))
            .execute(c));
        match inserted {
            Ok(_) => Ok(name),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(StoreError::NameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Registers many users who share one password, each with a fresh
    /// token valid for `ttl`, in one transaction. The password is hashed
    /// once for all of them (a shared salt), so thousands of real accounts
    /// cost one argon2 run instead of one each: this is for load tests
    /// (`bluetick bench connections`), whose accounts log in by token.
    pub fn create_users_with_tokens(
        &self,
        names: &[String],
        password: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<(UserName, crate::IssuedToken)>, StoreError> {
        let parsed = names
            .iter()
            .map(|name| UserName::parse(name))
            .collect::<Result<Vec<_>, _>>()?;
        check_password(password)?;
        let password_hash = hash_password(password)?;
        self.transaction(|tx| {
            let mut issued = Vec::with_capacity(parsed.len());
            for name in parsed {
                let now = clock::now_ms();
                let inserted = on_backend!(&mut *tx.conn, c => diesel::insert_into(users::table)
                    .values((
                        users::name.eq(name.as_str()),
                        users::password_hash.eq(&password_hash),
                        users::created_at.eq(now),
                    ))
                    .execute(c));
                match inserted {
                    Ok(_) => {}
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                        return Err(StoreError::NameTaken)
                    }
                    Err(e) => return Err(e.into()),
                }
                let user_id: i64 = on_backend!(&mut *tx.conn, c => users::table
                    .filter(users::name.eq(name.as_str()))
                    .select(users::id)
                    .first(c))?;
                let token = crate::tokens::insert_token(tx.conn, user_id, ttl)?;
                issued.push((name, token));
            }
            Ok(issued)
        })
    }

    /// Checks a name and password. Unknown names and wrong passwords both
    /// give [`StoreError::BadCredentials`].
    pub fn verify_password(&self, name: &str, password: &str) -> Result<UserName, StoreError> {
        let stored: Option<String> = {
            let mut conn = self.conn()?;
            on_backend!(&mut *conn, c => users::table
                .filter(users::name.eq(name))
                .select(users::password_hash)
                .first(c)
                .optional())?
        };
        let hash = stored.as_deref().unwrap_or_else(|| dummy_hash());
        let matches = PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        match (stored, matches) {
            (Some(_), true) => Ok(UserName::parse(name)?),
            _ => Err(StoreError::BadCredentials),
        }
    }

    /// The id of a registered user.
    pub(crate) fn user_id(&self, name: &UserName) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        on_backend!(&mut *conn, c => users::table
            .filter(users::name.eq(name.as_str()))
            .select(users::id)
            .first(c)
            .optional())?
        .ok_or(StoreError::UnknownUser)
    }

    /// Whether `name` is a registered user.
    pub fn user_exists(&self, name: &UserName) -> Result<bool, StoreError> {
        match self.user_id(name) {
            Ok(_) => Ok(true),
            Err(StoreError::UnknownUser) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hashing(e.to_string()))
}

/// A valid hash of a random password, verified against when the user does
/// not exist so that both paths cost one argon2 run.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no user has this password").unwrap_or_default())
}
