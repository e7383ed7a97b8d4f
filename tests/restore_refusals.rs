//! Backups that must not be restored: a damaged archive, an edited one
//! with a planted token, a row too large to load in bounded memory. Each is
//! refused before anything is loaded.

mod common;

use common::http::request;
use common::jobs::{newest_backup, operator_ok};
use common::{Backend, Options, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_refused_before_anything_is_loaded() {
    let mut server = Server::start(Backend::Sqlite);
    server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // Same manifest, one changed byte in the users table.
    let original = server.data_dir.path().join("media").join(&key);
    let damaged = server.data_dir.path().join("damaged.zip");
    rewrite_archive(&original, &damaged, Manifest::Keep, |name, bytes| {
        if name == "tables/users.jsonl" {
            unchanged(
                String::from_utf8(bytes)
                    .unwrap()
                    .replace("alice", "mallory")
                    .into_bytes(),
            )
        } else {
            unchanged(bytes)
        }
    });

    let said = restore_refused(&mut server, &damaged);
    assert!(said.contains("tables/users.jsonl is damaged"), "{said}");
    // The intact backup still restores.
    let restored = operator_ok(&server, &["restore", &key]);
    assert!(restored.contains("restored users: 1 rows"), "{restored}");
}

/// What [`rewrite_archive`] does with the manifest of an edited archive.
enum Manifest<'a> {
    /// Leave it (and its tag) as they were: the edit shows as damage.
    Keep,
    /// Update each edited table's SHA-256 and row count to match, as a
    /// forger would, but keep the old tag, having no key.
    Forge,
    /// Update it and sign it again with the real backup key, as the server
    /// would have if the database had held these rows.
    Sign(&'a jobs::authentication::BackupKey),
}

/// Copies the archive at `from` to `to`, passing every table file through
/// `edit` (name, bytes → what to write instead, streamed, so an edit can
/// be far larger than memory) and handling the manifest as `manifest` says.
fn rewrite_archive(
    from: &std::path::Path,
    to: &std::path::Path,
    manifest: Manifest,
    mut edit: impl FnMut(&str, Vec<u8>) -> Box<dyn Read>,
) {
    use sha2::Digest;
    let mut source = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default().large_file(true);
    let mut members = BTreeMap::new();
    for i in 0..source.len() {
        let mut member = source.by_index(i).unwrap();
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).unwrap();
        members.insert(member.name().to_owned(), bytes);
    }
    let mut listed: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    for (name, bytes) in &mut members {
        if !name.starts_with("tables/") {
            continue;
        }
        let mut edited = edit(name, std::mem::take(bytes));
        out.start_file(name.as_str(), options).unwrap();
        let (mut hasher, mut rows, mut chunk) = (sha2::Sha256::new(), 0u64, vec![0u8; 1 << 20]);
        loop {
            let n = edited.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            rows += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            std::io::Write::write_all(&mut out, &chunk[..n]).unwrap();
        }
        let entry = listed["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["file"] == name.as_str())
            .unwrap();
        entry["rows"] = json!(rows);
        entry["sha256"] = json!(store::encoding::hex(&hasher.finalize()));
    }
    let manifest_bytes = match manifest {
        Manifest::Keep => members["manifest.json"].clone(),
        Manifest::Forge | Manifest::Sign(_) => serde_json::to_vec_pretty(&listed).unwrap(),
    };
    let tag = match manifest {
        Manifest::Keep | Manifest::Forge => members["manifest.hmac"].clone(),
        Manifest::Sign(key) => key.sign(&manifest_bytes).into_bytes(),
    };
    for (name, bytes) in [("manifest.json", manifest_bytes), ("manifest.hmac", tag)] {
        out.start_file(name, options).unwrap();
        std::io::Write::write_all(&mut out, &bytes).unwrap();
    }
    out.finish().unwrap();
}

/// Wipes `server`'s database, restores `archive` into it, and returns what
/// restore said on stderr, failing the test unless the restore was refused
/// with nothing loaded.
fn restore_refused(server: &mut Server, archive: &std::path::Path) -> String {
    server.database.wipe();
    let refused = server.operator(&["restore", archive.to_str().unwrap()]);
    assert!(
        !refused.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert_nothing_loaded(server);
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

/// Every table of `server`'s database (if any was created) is empty.
fn assert_nothing_loaded(server: &Server) {
    let store = server.store();
    for table in store.tables().unwrap() {
        let rows = store.row_count(&table.name).unwrap();
        assert_eq!(rows, 0, "{} was loaded", table.name);
    }
}

/// A table file unchanged, for [`rewrite_archive`].
fn unchanged(bytes: Vec<u8>) -> Box<dyn Read> {
    Box::new(std::io::Cursor::new(bytes))
}

/// A table file with `row` appended.
fn with_row(bytes: Vec<u8>, row: impl Read + 'static) -> Box<dyn Read> {
    Box::new(std::io::Cursor::new(bytes).chain(row).chain(&b"\n"[..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_backup_with_a_planted_token_is_refused_and_nothing_is_loaded() {
    let mut server = Server::start(Backend::Sqlite);
    let alice = server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // A token row for alice whose token the forger knows, with the
    // manifest's checksums and row counts updated to match: everything
    // restore used to check is consistent, only the tag is old.
    let original = server.data_dir.path().join("media").join(&key);
    let edited = server.data_dir.path().join("edited.zip");
    let planted = "planted-token-0123456789";
    let row = json!({
        "id": 9999, "user_id": 1, "token_hash": store::tokens::token_hash(planted),
        "created_at": 0, "expires_at": i64::MAX / 2,
    });
    rewrite_archive(&original, &edited, Manifest::Forge, |name, bytes| {
        if name == "tables/tokens.jsonl" {
            with_row(bytes, std::io::Cursor::new(row.to_string()))
        } else {
            unchanged(bytes)
        }
    });

    let said = restore_refused(&mut server, &edited);
    assert!(
        said.contains("not authenticated by this server's backup key"),
        "{said}"
    );

    // The untouched backup restores; alice's token works, the planted one
    // never existed.
    operator_ok(&server, &["restore", &key]);
    server.start_again();
    let mine = request(server.http, "GET", "/v1/me/privacy", None, Some(&alice));
    assert_eq!(mine.status, 200, "{}", mine.body);
    let forged = request(server.http, "GET", "/v1/me/privacy", None, Some(planted));
    assert_eq!(forged.status, 401, "{}", forged.body);
}

/// Runs `bluetick ARGS` against `server` and returns its output with the
/// peak resident memory of that process (`ru_maxrss` from `wait4`), in
/// bytes. An upper bound: Linux also counts the peak of this test process
/// at the moment of the spawn, whose memory the child starts in.
// The child is reaped by `wait4`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn operator_with_peak_memory(server: &Server, args: &[&str]) -> (std::process::Output, u64) {
    use std::process::Stdio;
    let mut child = server
        .operator_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bluetick");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps our own child, which
    // `child` then never waits for again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    let output = std::process::Output {
        status,
        stdout,
        stderr,
    };
    (output, usage.ru_maxrss as u64 * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_a_256_mb_row_is_refused_in_bounded_memory_and_loads_nothing() {
    let message_key = "ef".repeat(32);
    let mut server = Server::start_with(
        Backend::Sqlite,
        Options::default().env("BLUETICK_MESSAGES__KEY", &message_key),
    );
    server.register("alice");
    operator_ok(&server, &["job", "run", "backup"]);
    let key = newest_backup(&server);
    assert!(server.terminate().success());

    // A row of 256 MiB that deflates to a few hundred KiB, in an archive
    // signed with the real key: size alone must stop it. It is streamed,
    // never held: the restore process starts as a copy of this one, and
    // its peak memory must be its own.
    let signing =
        jobs::authentication::BackupKey::of(&server.store_with_key(&message_key)).unwrap();
    let original = server.data_dir.path().join("media").join(&key);
    let bomb = server.data_dir.path().join("bomb.zip");
    rewrite_archive(&original, &bomb, Manifest::Sign(&signing), |name, bytes| {
        if name != "tables/users.jsonl" {
            return unchanged(bytes);
        }
        let huge = (&br#"{"id":2,"name":""#[..])
            .chain(std::io::repeat(b'a').take(256 << 20))
            .chain(&br#"","password_hash":"x","created_at":0}"#[..]);
        with_row(bytes, huge)
    });
    let archive_bytes = std::fs::metadata(&bomb).unwrap().len();

    server.database.wipe();
    let (refused, peak) = operator_with_peak_memory(&server, &["restore", bomb.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused.stderr);
    eprintln!(
        "a {} KiB archive with a 256 MiB row: restore refused it with a peak RSS of {:.1} MiB",
        archive_bytes / 1024,
        peak as f64 / (1 << 20) as f64
    );
    assert!(
        archive_bytes < 2 << 20,
        "the bomb is small: {archive_bytes} bytes"
    );
    assert!(
        !refused.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        said.contains("row 2 of tables/users.jsonl is longer than"),
        "{said}"
    );
    assert!(peak < 128 << 20, "restore peaked at {peak} bytes");
    assert_nothing_loaded(&server);
    // The same archive without the bomb still restores.
    let restored = operator_ok(&server, &["restore", &key]);
    assert!(restored.contains("archive authenticated"), "{restored}");
}
