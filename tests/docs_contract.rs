//! The documents are part of the contract, so the suite checks them like
//! code: no tracked file holds an unresolved merge, no document is left
//! with a broken table or an unclosed code fence, and every route, error
//! code, topic and configuration key the docs name exists in the server,
//! and every configuration key the server has is documented.
//!
//! Conflict markers once sat unnoticed in docs/protocol.md for a whole
//! session, splitting the client contract in two; these tests are why that
//! cannot land again.

mod common;

use common::{http, Backend, Server};
use protocol::UserName;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents that make promises to users and operators.
const DOCS: [&str; 4] = [
    "README.md",
    "docs/protocol.md",
    "docs/operations.md",
    "docs/performance.md",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_doc(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The opening and closing lines git writes around a conflict, built at run
/// time so this file does not contain them itself.
fn conflict_openers() -> [String; 2] {
    [format!("{} ", "<".repeat(7)), format!("{} ", ">".repeat(7))]
}

/// `path:line` of every conflict marker in the files git tracks under
/// `root`. The middle line (`=======`) is reported only in a file that also
/// has an opener or closer, since Markdown uses it to underline headings.
fn conflict_markers(root: &Path) -> Vec<String> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .expect("run git ls-files");
    assert!(listed.status.success(), "git ls-files failed in {}", root.display());
    let openers = conflict_openers();
    let separator = "=".repeat(7);
    let mut found = Vec::new();
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        // Binary files and unreadable ones cannot hold a text conflict.
        let Ok(text) = std::fs::read_to_string(root.join(&path)) else { continue };
        let lines: Vec<&str> = text.lines().collect();
        let conflicted = lines.iter().any(|l| openers.iter().any(|o| l.starts_with(o.as_str())));
        if !conflicted {
            continue;
        }
        for (n, line) in lines.iter().enumerate() {
            if openers.iter().any(|o| line.starts_with(o.as_str())) || *line == separator {
                found.push(format!("{path}:{}", n + 1));
            }
        }
    }
    found
}

#[test]
fn no_tracked_file_holds_a_merge_conflict_marker() {
    let found = conflict_markers(&repo());
    assert!(found.is_empty(), "unresolved merge-conflict markers at:\n{}", found.join("\n"));
}

#[test]
fn the_conflict_check_finds_a_planted_marker() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git").arg("-C").arg(dir.path()).args(args).status().unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    let [open, close] = conflict_openers();
    let planted = format!("# Title\n=======\n\nintro\n{open}HEAD\nours\n{}\ntheirs\n{close}media\n", "=".repeat(7));
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/protocol.md"), planted).unwrap();
    std::fs::write(dir.path().join("clean.md"), "Heading\n=======\n").unwrap();
    git(&["add", "."]);
    assert_eq!(
        conflict_markers(dir.path()),
        ["docs/protocol.md:2", "docs/protocol.md:5", "docs/protocol.md:7", "docs/protocol.md:9"],
        "every marker line of the conflicted file, and nothing from the clean heading"
    );
}

/// Markdown damage a merge leaves behind without any marker: a code fence
/// never closed (everything after it renders as code), a table without
/// its `|---|` rule (it renders as one paragraph of pipes), a table or
/// heading glued to the paragraph above. A merge script that kept "both
/// sides" line by line once dropped exactly these lines from
/// docs/performance.md.
fn markdown_damage(name: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut in_code = false;
    let mut opened_at = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            opened_at = i + 1;
            continue;
        }
        let previous = if i == 0 { "" } else { lines[i - 1] };
        if in_code || i == 0 {
            continue;
        }
        if line.starts_with('|') && !previous.starts_with('|') {
            let rule = lines.get(i + 1).is_some_and(|next| {
                let next = next.trim_start_matches('|').trim_start();
                next.starts_with('-') || next.starts_with(":-")
            });
            if !rule {
                found.push(format!("{name}:{}: a table without its |---| rule", i + 1));
            }
            if !previous.trim().is_empty() {
                found.push(format!("{name}:{}: a table glued to the line above", i + 1));
            }
        }
        if line.starts_with('#') && !previous.trim().is_empty() {
            found.push(format!("{name}:{}: a heading glued to the line above", i + 1));
        }
    }
    if in_code {
        found.push(format!("{name}:{opened_at}: a code fence that is never closed"));
    }
    found
}

#[test]
fn the_documents_have_no_broken_tables_fences_or_headings() {
    let found: Vec<String> = DOCS
        .iter()
        .flat_map(|name| markdown_damage(name, &read_doc(name)))
        .collect();
    assert!(found.is_empty(), "damaged Markdown:\n{}", found.join("\n"));
}

#[test]
fn the_markdown_check_finds_planted_damage() {
    let damaged = "# Title\n\nText.\n| a | b |\n| 1 | 2 |\n## Next\n```sh\nrun\n";
    assert_eq!(
        markdown_damage("x.md", damaged),
        [
            "x.md:4: a table without its |---| rule",
            "x.md:4: a table glued to the line above",
            "x.md:6: a heading glued to the line above",
            "x.md:7: a code fence that is never closed",
        ]
    );
    let whole = "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```sh\n# a comment\n```\n";
    assert!(markdown_damage("y.md", whole).is_empty());
}

/// Every `` `METHOD /path` `` the docs name, query strings removed.
fn documented_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for doc in DOCS {
        for quoted in read_doc(doc).split('`').skip(1).step_by(2) {
            let Some((method, path)) = quoted.split_once(' ') else { continue };
            if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method) && path.starts_with('/') {
                let path = path.split('?').next().unwrap_or(path);
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

#[test]
fn every_route_the_docs_name_is_in_the_servers_openapi_document() {
    let server = Server::start(Backend::Sqlite);
    let response = http::request(server.http, "GET", "/v1/openapi.json", None, None);
    assert_eq!(response.status, 200, "{}", response.body);
    let document = response.json();
    let paths = document["paths"].as_object().expect("OpenAPI paths");
    let routes = documented_routes();
    assert!(routes.len() > 20, "the docs name the API's routes: {routes:?}");
    // `/metrics` lives on its own private listener, outside the API and
    // its document; it is checked there, for real.
    let scrape = http::request(server.metrics, "GET", "/metrics", None, None);
    assert_eq!(scrape.status, 200, "the metrics listener serves /metrics");
    let missing: Vec<String> = routes
        .iter()
        .filter(|(method, path)| (method.as_str(), path.as_str()) != ("GET", "/metrics"))
        .filter(|(method, path)| {
            paths
                .get(path.as_str())
                .and_then(|item| item.get(method.to_lowercase()))
                .is_none()
        })
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(missing.is_empty(), "documented but not served: {missing:?}");
}

/// The first cell of every row of each table whose header's first cell is
/// `header` in `doc`.
fn first_cells(doc: &str, header: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        let Some(row) = line.strip_prefix('|') else {
            in_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == header {
            in_table = true;
        } else if in_table && !first.starts_with("---") {
            cells.push(first.to_owned());
        }
    }
    cells
}

/// The backticked words of `cell`.
fn quoted(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let doc = read_doc("docs/protocol.md");
    let codes: BTreeSet<&str> = protocol::errors::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let documented: BTreeSet<String> = first_cells(&doc, "code")
        .iter()
        .flat_map(|cell| quoted(cell).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let unknown: Vec<&String> = documented.iter().filter(|c| !codes.contains(c.as_str())).collect();
    assert!(unknown.is_empty(), "docs/protocol.md lists codes the server never sends: {unknown:?}");
    let undocumented: Vec<&&str> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("`{c}`")))
        .collect();
    assert!(undocumented.is_empty(), "codes missing from docs/protocol.md: {undocumented:?}");
}

#[test]
fn every_user_topic_the_protocol_names_is_one_a_client_may_use() {
    let doc = read_doc("docs/protocol.md");
    let me = UserName::parse("alice").unwrap();
    let mut checked = 0;
    for topic in quoted(&doc).filter(|t| t.starts_with("u/{")) {
        // `u/{me}/send {"id": …}`: the topic is the first word, and its
        // user part a placeholder. `u/{me}/` (a prefix) and `u/{me}/{leaf}`
        // (a pattern) name no one topic.
        let topic = topic.split(' ').next().unwrap_or(topic);
        let Some((_, rest)) = topic.split_once('}') else { continue };
        if rest.ends_with('/') || rest.contains('{') {
            continue;
        }
        let concrete = format!("u/alice{rest}");
        assert!(
            protocol::topics::may_publish(&me, &concrete) || protocol::topics::may_subscribe(&me, &concrete),
            "docs/protocol.md names `{topic}`, which no client may publish or subscribe to"
        );
        checked += 1;
    }
    assert!(checked > 5, "the protocol names its topics");
}

/// Configuration keys in README's configuration table (second column) and
/// in operations.md's tables of keys (first column).
fn documented_config_keys() -> BTreeSet<String> {
    let is_key = |word: &str| {
        !word.is_empty()
            && word.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            && word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
    };
    let mut keys = BTreeSet::new();
    for line in read_doc("README.md").lines().filter(|l| l.starts_with('|')) {
        if let Some(cell) = line.split('|').nth(2) {
            keys.extend(quoted(cell).filter(|w| is_key(w)).map(str::to_owned));
        }
    }
    for cell in first_cells(&read_doc("docs/operations.md"), "key") {
        keys.extend(quoted(&cell).filter(|w| is_key(w)).map(str::to_owned));
    }
    keys
}

#[test]
fn every_configuration_key_the_docs_name_is_one_the_server_accepts() {
    let keys = documented_config_keys();
    assert!(keys.len() > 30, "the docs list the configuration: {keys:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bluetick.toml");
    let mut unknown = Vec::new();
    for key in &keys {
        // `jobs.schedules.NAME`: an upper-case part is a placeholder, so
        // the key up to it is what must exist.
        let parts: Vec<&str> = key.split('.').take_while(|p| !p.chars().any(|c| c.is_ascii_uppercase())).collect();
        let (table, field) = match parts.split_last() {
            Some((field, [])) => (String::new(), field.to_string()),
            Some((field, table)) => (format!("[{}]\n", table.join(".")), field.to_string()),
            None => continue,
        };
        // A value of the wrong type is fine: the loader names unknown keys
        // before it looks at values, and only "unknown field" counts.
        std::fs::write(&file, format!("{table}{field} = \"?\"\n")).unwrap();
        let output = common::bluetick().args(["config", "--config"]).arg(&file).output().unwrap();
        if String::from_utf8_lossy(&output.stderr).contains("unknown field") {
            unknown.push(key.clone());
        }
    }
    assert!(unknown.is_empty(), "documented keys the server rejects as unknown: {unknown:?}");
}

/// Every key of the effective configuration, as `section.key`.
fn effective_config_keys() -> Vec<String> {
    let output = common::bluetick().arg("config").output().unwrap();
    assert!(output.status.success(), "bluetick config: {}", String::from_utf8_lossy(&output.stderr));
    let table: toml::Table = String::from_utf8_lossy(&output.stdout).parse().expect("bluetick config prints TOML");
    fn walk(prefix: &str, table: &toml::Table, keys: &mut Vec<String>) {
        for (name, value) in table {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match value {
                toml::Value::Table(inner) => walk(&key, inner, keys),
                _ => keys.push(key),
            }
        }
    }
    let mut keys = Vec::new();
    walk("", &table, &mut keys);
    keys
}

#[test]
fn every_configuration_key_the_server_has_is_documented() {
    let documented = documented_config_keys();
    let keys = effective_config_keys();
    assert!(keys.len() > 30, "bluetick config prints the configuration: {keys:?}");
    let undocumented: Vec<&String> = keys
        .iter()
        // `jobs.schedules.NAME` documents every schedule at once.
        .filter(|key| !documented.contains(*key) && !key.starts_with("jobs.schedules."))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from README's configuration table and operations.md's key tables: {undocumented:?}"
    );
}

#[test]
fn the_key_check_notices_a_key_the_server_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bluetick.toml");
    std::fs::write(&file, "[mqtt]\nmax_conections = \"?\"\n").unwrap();
    let output = common::bluetick().args(["config", "--config"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field"));
}
