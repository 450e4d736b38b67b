//! The layer order of `ARCHITECTURE.md`, checked against the sources: a module of the library
//! imports (`crate::x`) only from modules in lower layers. Test code is not checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, bottom up, as `ARCHITECTURE.md` gives them.
const LAYERS: &[&[&str]] = &[
    &["alloc", "env", "fs", "nonfinite", "rng", "signals"],
    &["results"],
    &["metrics", "config"],
    &["identity", "optim", "data", "log", "state"],
    &["workspace"],
    &["checkpoint"],
    &["runner"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to: `runner` for `src/runner/step.rs`, `identity` for
/// `src/identity.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file that is not test code: everything before its first `#[cfg(test)]`, nothing of
/// a `tests.rs` file.
fn non_test_code(file: &Path) -> String {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(file).unwrap();
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end].to_owned()
}

/// The crate modules a piece of code names: `crate::x::…` and `crate::{x, y::…}`, outside comments.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                found.extend(inner.split(',').map(|p| first_segment(p.trim())));
            } else {
                found.push(first_segment(rest));
            }
        }
    }
    found.retain(|m| m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every import against the order: (importer, imported, file).
fn violations(src: &Path) -> Vec<(String, String, PathBuf)> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let module = module_of(src, &file);
        if module == "lib" {
            continue;
        }
        let own = layer(&module).unwrap_or_else(|| panic!("`{module}` has no layer in ARCHITECTURE.md"));
        for imported in imports(&non_test_code(&file)) {
            if imported == module {
                continue;
            }
            match layer(&imported) {
                Some(theirs) if theirs < own => {}
                _ => found.push((module.clone(), imported, file.clone())),
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_imports_only_from_lower_layers() {
    let found = violations(&src());
    assert!(
        found.is_empty(),
        "imports against ARCHITECTURE.md's layers: {}",
        found
            .iter()
            .map(|(from, to, file)| format!("{from} imports {to} in {}", file.display()))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn a_cycle_put_back_is_caught() {
    // A copy of the sources where the checkpoint files import the runner again, as they once did.
    let copy = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    sources(&src(), &mut files);
    for file in &files {
        let target = copy.path().join(file.strip_prefix(src()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, target).unwrap();
    }
    let full = copy.path().join("checkpoint/full.rs");
    let text = std::fs::read_to_string(&full).unwrap();
    std::fs::write(&full, text.replace("use crate::state::", "use crate::runner::")).unwrap();
    let found: BTreeMap<(String, String), usize> =
        violations(copy.path())
            .into_iter()
            .fold(BTreeMap::new(), |mut all, (from, to, _)| {
                *all.entry((from, to)).or_default() += 1;
                all
            });
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        [&("checkpoint".to_owned(), "runner".to_owned())]
    );
    // And the grouped form is read too.
    assert_eq!(
        imports("use crate::{runner::State, metrics};"),
        ["runner", "metrics"]
    );
}
