//! The direction of dependencies, checked on the source: `docs/ARCHITECTURE.md` draws
//!
//! ```text
//! cli → http → eas → {mailstore, push, state, smtp, directory, calendar, sieve} → {imap, mime, eas-wbxml}
//! ```
//!
//! with `config`, `secret` and `metrics` as shared ground. This test reads every `src/**/*.rs`,
//! collects each file's `crate::<module>` references (in `use` lines and in paths; test
//! modules included, since a test that reaches across layers is a knot too) and fails on an
//! edge the picture forbids or on any cycle between top-level modules, naming the files. A rule
//! that the code may break quietly is only a wish.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The CLI's modules, which only `main.rs` and each other may use.
const CLI: &str = "cli";

/// Each module's layer: a module may use modules of a *lower* layer only (same-layer edges
/// are forbidden too, except inside the CLI), and never one that is not listed.
const LAYERS: &[(&str, u32)] = &[
    ("cli", 60),
    ("http", 50),
    ("eas", 40),
    ("backend", 35),
    ("mailstore", 30),
    ("push", 31),
    ("state", 20),
    ("smtp", 20),
    ("directory", 20),
    // The DAV client and the vCard mapping: beside the mail store, below the commands.
    ("dav", 20),
    ("contacts", 20),
    // iCalendar <-> EAS items (pure); uses mime for bodies only.
    ("calendar", 20),
    // Out of Office over ManageSieve; uses imap only for its TLS setup.
    ("sieve", 20),
    // The configuration builds the settings of the modules below it (IMAP, SMTP, directory).
    ("config", 25),
    ("metrics", 10),
    ("imap", 5),
    ("mime", 5),
    ("secret", 1),
];

/// Edges that cross the picture on purpose, each with its reason. Keep this short.
const ALLOWED: &[(&str, &str, &str)] = &[
    // push wakes devices; to tell whether news is news for a device it reads the mailbox's
    // counters through the same pooled sessions the commands use.
    ("push", "mailstore", "STATUS over the shared session pool"),
    // A shared CardDAV address book is a directory source; it is read with the same DAV
    // client as the user's contacts. dav knows nothing of the directory, so the order stays
    // one way (eas -> directory -> dav -> secret/metrics).
    (
        "directory",
        "dav",
        "a shared address book read over the DAV client",
    ),
];

/// Edges the layers would allow but the design does not.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "eas",
    "imap",
    "commands reach IMAP only through mailstore, so another backend can stand in for it",
)];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/eas/sync/mod.rs` → `eas`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `crate::name` references outside comments.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` groups.
            if name.is_empty() && after.starts_with('{') {
                let group = after[1..].split('}').next().unwrap_or("");
                for part in group.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            } else if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    // module -> used module -> files that use it
    let mut edges: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        if layer(&module).is_none() {
            problems.push(format!(
                "{shown}: top-level module `{module}` has no layer in tests/architecture.rs"
            ));
            continue;
        }
        for used in references(&text) {
            if used == module {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(used)
                .or_default()
                .push(shown.clone());
        }
    }

    for (from, targets) in &edges {
        for (to, files) in targets {
            let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
                problems.push(format!("{from} -> {to} (unknown module) in {files:?}"));
                continue;
            };
            let allowed = ALLOWED.iter().any(|(a, b, _)| a == from && b == to);
            let inside_cli = from == CLI && to == CLI;
            if lt >= lf && !allowed && !inside_cli {
                problems.push(format!("{from} -> {to} goes up or sideways, in {files:?}"));
            }
            if let Some((_, _, why)) = FORBIDDEN.iter().find(|(a, b, _)| a == from && b == to) {
                problems.push(format!("{from} -> {to} is forbidden ({why}), in {files:?}"));
            }
        }
    }

    // Cycles between top-level modules (the allowed edges included).
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == node) {
            cycles.push(format!("{} -> {node}", path[i..].join(" -> ")));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        if let Some(targets) = edges.get(node) {
            for to in targets.keys() {
                visit(to, edges, path, done, cycles);
            }
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    for c in cycles {
        problems.push(format!("import cycle: {c}"));
    }

    assert!(
        problems.is_empty(),
        "dependency rules broken (docs/ARCHITECTURE.md):\n  {}",
        problems.join("\n  ")
    );
}

/// The rules above hold for code that cannot hide from them: the parser sees grouped and
/// nested paths, and skips comments.
#[test]
fn references_are_found_in_every_form() {
    let text = "use crate::imap::{Session, ImapError};\n\
                use crate::{config::Config, state};\n\
                let x = crate::mime::view(y); // crate::http is only mentioned here\n";
    let found = references(text);
    let expected: BTreeSet<String> = ["imap", "config", "state", "mime"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
