//! The code's shape, checked like behaviour: within each crate, no two
//! files use each other, directly or around a longer loop; the binary
//! stays thin; and README's layout table names every crate.
//!
//! A circle between files means neither can be read, tested or moved on its
//! own; two of them (`client.rs` ↔ `session.rs`, `commands.rs` ↔
//! `operations.rs`) once grew unnoticed. A file's dependencies are the
//! `crate::module` paths in its code; comments (where doc links name other
//! modules) and `#[cfg(test)]` parts do not count, and the crate root
//! (`lib.rs`, `main.rs`) declares every module, so it is not a node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `src/` directory of the binary and of every crate in the repository
/// (vendored code under `third_party/` is not ours to shape).
fn source_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("src")];
    for entry in std::fs::read_dir(root).expect("read repo").filter_map(Result::ok) {
        let dir = entry.path();
        let name = entry.file_name();
        if name == "third_party" || name == "target" {
            continue;
        }
        if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
            dirs.push(dir.join("src"));
        }
    }
    dirs
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The crate's top-level modules (a file `a.rs` or a directory `a/`) and
/// the other top-level modules each one's code names as `crate::x`.
fn module_uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let named = uses.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    named.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = uses.keys().cloned().collect();
    for named in uses.values_mut() {
        named.retain(|name| modules.contains(name));
    }
    uses
}

/// Every circle among the modules, each as its modules in visiting order,
/// starting from its smallest name (so each circle is reported once).
fn circles(uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        let (start, last) = (path[0].clone(), path[path.len() - 1].clone());
        for next in uses.get(&last).into_iter().flatten() {
            if *next == start {
                found.push(path.clone());
            } else if *next > start && !path.contains(next) {
                path.push(next.clone());
                walk(uses, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for start in uses.keys() {
        walk(uses, &mut vec![start.clone()], &mut found);
    }
    found
}

#[test]
fn no_two_files_of_a_crate_use_each_other_in_a_circle() {
    let root = repo();
    let mut report = Vec::new();
    for src in source_dirs(&root) {
        for circle in circles(&module_uses(&src)) {
            let shown = src.strip_prefix(&root).unwrap_or(&src).display().to_string();
            report.push(format!("{shown}: {}", circle.join(" -> ")));
        }
    }
    assert!(report.is_empty(), "files that use each other:\n{}", report.join("\n"));
}

#[test]
fn the_circle_check_finds_a_planted_circle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\n/// [`crate::c`] is only a doc link.\n").unwrap();
    std::fs::create_dir(src.join("b")).unwrap();
    std::fs::write(src.join("b/mod.rs"), "pub struct B;\nfn f() { crate::c::g() }\n").unwrap();
    std::fs::write(src.join("c.rs"), "pub fn g() { let _ = crate::a::A; }\n").unwrap();
    assert_eq!(circles(&module_uses(src)), vec![vec!["a", "b", "c"]]);
    std::fs::write(src.join("c.rs"), "pub fn g() {}\n#[cfg(test)]\nuse crate::a::A;\n").unwrap();
    assert!(circles(&module_uses(src)).is_empty());
}

/// The workspace's member crates, as `Cargo.toml` lists them.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_readme_layout_table_names_every_crate() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let members = workspace_members(&root);
    assert!(members.len() > 5, "members not read: {members:?}");
    let missing: Vec<_> = members
        .iter()
        .filter(|member| !readme.contains(&format!("| `{member}/` |")))
        .collect();
    assert!(missing.is_empty(), "crates without a row in README's layout table: {missing:?}");
}

/// The binary keeps configuration, wiring and the CLI; what a feature
/// does lives in a crate of its own.
const BINARY_LINES: usize = 1_500;

#[test]
fn the_binary_stays_thin() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let lines: usize = files
        .iter()
        .map(|file| std::fs::read_to_string(file).expect("read source").lines().count())
        .sum();
    assert!(lines < BINARY_LINES, "src/ has {lines} lines, the bound is {BINARY_LINES}");
}

/// The migration directories of one backend, by name.
fn migrations(root: &Path, backend: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("migrations").join(backend))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Diesel keys a migration by its version, the directory name up to the
/// first `_` without its dashes; two directories with one version run
/// only once. Two branches once both added a `…-130000_` migration.
#[test]
fn both_backends_have_the_same_migrations_each_with_a_version_of_its_own() {
    let root = repo();
    let sqlite = migrations(&root, "sqlite");
    assert_eq!(sqlite, migrations(&root, "postgres"), "the backends' migrations differ");
    let mut versions = BTreeMap::new();
    for name in &sqlite {
        let version: String = name.split('_').next().unwrap().replace('-', "");
        if let Some(other) = versions.insert(version.clone(), name.clone()) {
            panic!("{other} and {name} share the migration version {version}");
        }
    }
}
