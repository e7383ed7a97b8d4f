//! Device backups: an opaque blob (the client encrypts it) of a device's
//! local store, kept per user, newest N only.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::schema::device_backups;
use crate::encoding::hex;
use crate::{clock, Store, StoreError};

/// What is known about one stored device backup.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct DeviceBackup {
    pub id: i64,
    pub size: i64,
    /// Hex SHA-256 of the bytes, so a device can check what it gets back.
    pub sha256: String,
    pub created_at: i64,
}

impl Store {
    /// Stores `data` as `user`'s newest backup and deletes all but the
    /// newest `keep` of theirs, in one transaction.
    pub fn put_device_backup(
        &self,
        user: &str,
        data: &[u8],
        keep: usize,
    ) -> Result<DeviceBackup, StoreError> {
        let sha256 = hex(&Sha256::digest(data));
        let size = data.len() as i64;
        let created_at = clock::now_ms();
        self.transaction(|tx| {
            let id: i64 = on_backend!(&mut *tx.conn, c => diesel::insert_into(device_backups::table)
                .values((
                    device_backups::user_name.eq(user),
                    device_backups::data.eq(data),
                    device_backups::size.eq(size),
                    device_backups::sha256.eq(&sha256),
                    device_backups::created_at.eq(created_at),
                ))
                .returning(device_backups::id)
                .get_result(c))?;
            on_backend!(&mut *tx.conn, c => {
                let kept: Vec<i64> = device_backups::table
                    .filter(device_backups::user_name.eq(user))
                    .order(device_backups::id.desc())
                    .limit(keep.max(1) as i64)
                    .select(device_backups::id)
                    .load(c)?;
                diesel::delete(
                    device_backups::table
                        .filter(device_backups::user_name.eq(user))
                        .filter(diesel::dsl::not(device_backups::id.eq_any(&kept))),
                )
                .execute(c)?
            });
            Ok(DeviceBackup {
                id,
                size,
                sha256: sha256.clone(),
                created_at,
            })
        })
    }

    /// `user`'s newest backup and its bytes, if they have one.
    pub fn latest_device_backup(
        &self,
        user: &str,
    ) -> Result<Option<(DeviceBackup, Vec<u8>)>, StoreError> {
        let mut conn = self.conn()?;
        let found: Option<(i64, i64, String, i64, Vec<u8>)> = on_backend!(&mut *conn, c => device_backups::table
            .filter(device_backups::user_name.eq(user))
            .order(device_backups::id.desc())
            .select((
                device_backups::id,
                device_backups::size,
                device_backups::sha256,
                device_backups::created_at,
                device_backups::data,
            ))
            .first(c)
            .optional())?;
        Ok(found.map(|(id, size, sha256, created_at, data)| {
            (
                DeviceBackup {
                    id,
                    size,
                    sha256,
                    created_at,
                },
                data,
            )
        }))
    }

    /// What backups `user` has, newest first (no bytes).
    pub fn device_backups(&self, user: &str) -> Result<Vec<DeviceBackup>, StoreError> {
        let mut conn = self.conn()?;
        Ok(on_backend!(&mut *conn, c => device_backups::table
            .filter(device_backups::user_name.eq(user))
            .order(device_backups::id.desc())
            .select((device_backups::id, device_backups::size, device_backups::sha256, device_backups::created_at))
            .load(c))?)
    }
}
