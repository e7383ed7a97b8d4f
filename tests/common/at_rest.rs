//! What an attacker holding the database (but not the key) can read: the
//! SQLite files (WAL included), or every row of the PostgreSQL database.

use std::process::Command;

use super::{Backend, Server};

/// Every stored byte of `server`'s database, as (where, bytes) pairs.
pub fn database_bytes(server: &Server) -> Vec<(String, Vec<u8>)> {
    match server.database.backend() {
        Backend::Sqlite => {
            let file = server.database.url.trim_start_matches("sqlite://");
            let dir = std::path::Path::new(file).parent().unwrap();
            std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| {
                    let path = entry.unwrap().path();
                    (path.display().to_string(), std::fs::read(&path).unwrap())
                })
                .collect()
        }
        Backend::Postgres => {
            let pg_dump = ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"]
                .into_iter()
                .find(|p| Command::new(p).arg("--version").output().is_ok())
                .expect("pg_dump is installed with PostgreSQL");
            let dump = Command::new(pg_dump)
                .args(["--data-only", "--inserts", &server.database.url])
                .output()
                .expect("pg_dump");
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            assert!(
                String::from_utf8_lossy(&dump.stdout).contains("INSERT INTO public.messages"),
                "the dump has the messages"
            );
            vec![("the PostgreSQL rows".to_owned(), dump.stdout)]
        }
    }
}

/// Fails if any of `needles` occurs in the database's stored bytes.
pub fn assert_not_stored(server: &Server, needles: &[&str], when: &str) {
    for (place, bytes) in database_bytes(server) {
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {place} ({when})"
            );
        }
    }
}
