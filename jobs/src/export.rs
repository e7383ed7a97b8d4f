//! `bluetick user export NAME`: one user's data as a zip of JSON, for the
//! user to take away.
//!
//! The archive holds `user.json` (account and privacy settings),
//! `messages.json` (every message they sent or received, and every group
//! message sent while they were in the group, as history shows it: bodies
//! in clear, delivered and read times, media, stars), `media.json`
//! (references to their media), `groups.json` (the groups they were ever
//! in, with when they joined and left) and `device_backups.json` (what device backups the server
//! keeps; their bytes are the device's own ciphertext and are fetched with
//! `GET /v1/me/backup`). Exporting only reads: it never moves last seen.

use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use store::Store;
use zip::write::SimpleFileOptions;

use crate::progress::Progress;
use crate::{Counts, JobError};

/// Messages read per page.
const PAGE: usize = 1000;

/// Writes `user`'s export to `path`; returns what it counted.
pub fn export_user(store: &Store, user: &str, path: &Path) -> Result<Counts, JobError> {
    let account = store.exported_user(user)?;
    let file = File::create(path).map_err(JobError::io(format!("creating {}", path.display())))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let write = |zip: &mut zip::ZipWriter<_>, bytes: &[u8]| {
        zip.write_all(bytes)
            .map_err(JobError::io(format!("writing {}", path.display())))
    };

    zip.start_file("user.json", options)?;
    let account = json!({
        "name": account.name,
        "created_at": account.created_at,
        "last_seen": account.last_seen,
        "privacy": { "last_seen": account.last_seen_privacy, "read_receipts": account.read_receipts },
    });
    write(&mut zip, &pretty(&account))?;

    zip.start_file("messages.json", options)?;
    write(&mut zip, b"[")?;
    let mut progress = Progress::new("export", format!("messages of {user}"));
    let mut after = 0;
    loop {
        let page = store.exported_messages(user, after, PAGE)?;
        for message in &page {
            let item = serde_json::to_string(message).expect("messages serialise");
            let separator: &[u8] = if progress.done() == 0 { b"\n" } else { b",\n" };
            write(&mut zip, separator)?;
            write(&mut zip, item.as_bytes())?;
            progress.add(1);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.id,
            _ => break,
        }
    }
    write(&mut zip, b"\n]\n")?;
    let messages = progress.finish();

    zip.start_file("media.json", options)?;
    let media = media_references(store, user)?;
    write(&mut zip, &pretty(&json!(media)))?;

    zip.start_file("groups.json", options)?;
    let groups: Vec<_> = store
        .exported_groups(user)?
        .into_iter()
        .map(|g| {
            let memberships: Vec<_> = g
                .memberships
                .iter()
                .map(|m| json!({ "joined_at": m.joined_at, "left_at": m.left_at, "admin": m.admin }))
                .collect();
            json!({
                "id": g.id,
                "name": g.name,
                "created_by": g.created_by,
                "created_at": g.created_at,
                "memberships": memberships,
            })
        })
        .collect();
    write(&mut zip, &pretty(&json!(groups)))?;

    zip.start_file("device_backups.json", options)?;
    let backups: Vec<_> = store
        .device_backups(user)?
        .into_iter()
        .map(|b| json!({ "id": b.id, "size": b.size, "sha256": b.sha256, "created_at": b.created_at }))
        .collect();
    write(&mut zip, &pretty(&json!(backups)))?;

    let mut out = zip.finish()?;
    out.flush().map_err(JobError::io("flushing the export"))?;
    let mut counts = Counts::new();
    counts.insert("messages".into(), messages);
    counts.insert("media".into(), media.len() as u64);
    counts.insert("groups".into(), groups.len() as u64);
    counts.insert("device_backups".into(), backups.len() as u64);
    Ok(counts)
}

/// References (message, media id, owner, type, size, sha256, object key)
/// to the media `user` sent or received; the bytes are downloaded with
/// `GET /v1/media/{id}`.
fn media_references(store: &Store, user: &str) -> Result<Vec<serde_json::Value>, JobError> {
    Ok(store
        .exported_media(user)?
        .into_iter()
        .map(|m| {
            json!({
                "message_id": m.message_id,
                "media_id": m.media_id,
                "owner": m.owner,
                "content_type": m.content_type,
                "size": m.size,
                "sha256": m.sha256,
                "object_key": m.object_key,
            })
        })
        .collect())
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}
