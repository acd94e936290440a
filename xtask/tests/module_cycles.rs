//! No module imports a module that imports it (docs/ARCHITECTURE.md): in csm-user,
//! csm-store and csm-plot, a module that reaches into another (`use`, a `crate::`,
//! `super::` or `self::` path, or a parent naming its child) must not be reached back
//! from it. What two modules both need lives in a third, which imports neither.
//!
//! Read as text, with what a text scan can do: test modules (after the first
//! `#[cfg(test)]`), comments and macro bodies' `$crate` paths are left out; a path counts
//! for the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

type Module = Vec<String>;

/// Every module of the crate whose source folder is `src`, with its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("read a source folder") {
            let path = entry.expect("a source folder entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if module.first().is_some_and(|m| m == "bin") {
                continue;
            }
            found.insert(module, path);
        }
    }
    found
}

/// The code of a file as the scan reads it: no tests, comments or macro `$crate` paths.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let comment = Regex::new(r"//.*").unwrap();
    let dollar_crate = Regex::new(r"\$crate(::\w+)+").unwrap();
    let macro_call = Regex::new(r"\bcrate::\w+!").unwrap();
    let text = comment.replace_all(text, "");
    let text = dollar_crate.replace_all(&text, "");
    macro_call.replace_all(&text, "").into_owned()
}

/// `crate::a::b`, `super::c` and each item of `use x::{a, b::c}`, as paths.
fn paths(code: &str) -> Vec<String> {
    let group = Regex::new(r"(?s)use\s+((?:crate|super|self)(?:::\w+)*)::\{([^;]*)\};").unwrap();
    let path = Regex::new(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let mut found: Vec<String> = path.find_iter(code).map(|m| m.as_str().into()).collect();
    for g in group.captures_iter(code) {
        for item in g[2].split(',') {
            let item = item.split(" as ").next().unwrap_or("");
            let item = item.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace());
            if !item.is_empty() {
                found.push(format!("{}::{item}", &g[1]));
            }
        }
    }
    found
}

/// The modules `module` (whose code is `code`) reaches.
fn reaches(module: &Module, code: &str, all: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let mut reached = BTreeSet::new();
    for path in paths(code) {
        let mut parts = path.split("::").map(String::from).peekable();
        let mut at = module.clone();
        if parts.peek().is_some_and(|p| p == "crate") {
            at.clear();
            parts.next();
        }
        while let Some(step) = parts.next_if(|p| p == "super" || p == "self") {
            if step == "super" {
                at.pop();
            }
        }
        at.extend(parts);
        let longest = (0..=at.len())
            .rev()
            .map(|n| at[..n].to_vec())
            .find(|prefix| all.contains_key(prefix));
        if let Some(target) = longest.filter(|t| !t.is_empty() && t != module) {
            reached.insert(target);
        }
    }
    // A parent names its children without a prefix: `child::f`, `use child::X`.
    for child in all
        .keys()
        .filter(|c| c.len() == module.len() + 1 && c.starts_with(module))
    {
        let name = regex::escape(child.last().unwrap());
        let named = Regex::new(&format!(r"(?:^|[^:\w]){name}::|use\s+{name}\b")).unwrap();
        if named.is_match(code) {
            reached.insert(child.clone());
        }
    }
    reached
}

/// The pairs of modules of the crate in `src` that reach each other.
fn cycles(src: &Path) -> Vec<String> {
    let all = modules(src);
    let graph: BTreeMap<&Module, BTreeSet<Module>> = all
        .iter()
        .map(|(module, file)| {
            let text = fs::read_to_string(file).expect("read a source file");
            (module, reaches(module, &code(&text), &all))
        })
        .collect();
    let mut pairs = Vec::new();
    for (a, reached) in &graph {
        for b in reached.iter().filter(|b| *a < *b) {
            if graph.get(b).is_some_and(|back| back.contains(*a)) {
                pairs.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    pairs
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["csm-user", "csm-store", "csm-plot"] {
        let pairs = cycles(&root.join(krate).join("src"));
        assert!(
            pairs.is_empty(),
            "{krate}: modules that import each other: {pairs:#?}"
        );
    }
}

#[test]
fn a_parent_and_a_child_that_import_each_other_are_found() {
    let src = std::env::temp_dir().join(format!("csm-module-cycles-{}", std::process::id()));
    fs::create_dir_all(src.join("report")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod report;\npub mod store;\n").unwrap();
    fs::write(src.join("store.rs"), "pub struct Rows;\n").unwrap();
    fs::write(
        src.join("report/mod.rs"),
        "pub mod ping;\npub fn rfc3339() {}\nuse ping::Target;\n",
    )
    .unwrap();
    fs::write(
        src.join("report/ping.rs"),
        "use super::rfc3339;\nuse crate::store::Rows;\npub struct Target;\n",
    )
    .unwrap();
    let pairs = cycles(&src);
    fs::remove_dir_all(&src).unwrap();
    assert_eq!(pairs, vec!["report <-> report::ping".to_string()]);
}
