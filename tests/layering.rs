//! Layers only point down (docs/design.md §2.10). The order is the one in
//! `src/lib.rs`'s `# Layout` table, read from the file itself: each
//! top-level module of `src/` may use only modules in rows below its own.
//! Modules sharing a row (the leaves) use none of each other, and every
//! module must appear in the table. Edges are read from the source,
//! ignoring comments and unit-test code, with every `crate::` form
//! (`use crate::a::b`, `use crate::{a, b::{c, d}}`, paths in expressions),
//! so a new import that points up fails here naming both modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules a piece of Rust source names through `crate::`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i + "crate::".len();
        // `$crate::` and identifiers ending in `crate` are not ours.
        let before = code[..at + i].chars().next_back();
        at = start;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if b.get(start) == Some(&b'{') {
            // A group: take the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            let mut j = start;
            while j < b.len() {
                match b[j] {
                    b'{' => {
                        depth += 1;
                        if depth == 1 {
                            item_start = true;
                        }
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && (c.is_ascii_lowercase() || c == b'_') => {
                        let name: String = code[j..]
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                            .collect();
                        j += name.len();
                        item_start = false;
                        if name != "self" {
                            out.insert(name);
                        }
                        continue;
                    }
                    c if !c.is_ascii_whitespace() && depth == 1 => item_start = false,
                    _ => {}
                }
                j += 1;
            }
            at = j;
        } else {
            let name: String = code[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A file's code without comments and without its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    code.lines().map(strip_comment).collect::<Vec<_>>().join("\n")
}

/// A line up to its first `//` outside a string literal.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            // A '"' character literal is not a string.
            b'"' if !(i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'')) => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn walk(dir: &Path, top: Option<&str>, graph: &mut BTreeMap<String, BTreeSet<String>>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if top.is_none() && name == "bin" {
                continue;
            }
            walk(&p, Some(top.unwrap_or(&name)), graph);
        } else if p.extension().is_some_and(|x| x == "rs") && name != "tests" {
            let module = top.map(str::to_string).unwrap_or(name.clone());
            if module == "lib" {
                continue;
            }
            let deps = crate_refs(&code_of(&std::fs::read_to_string(&p).unwrap()));
            graph.entry(module.clone()).or_default().extend(deps.into_iter().filter(|d| *d != module));
        }
    }
}

/// The `# Layout` table of `src/lib.rs`: each module with its row, top row 0.
fn layout(lib: &str) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    let mut row = 0;
    for line in lib.lines().filter(|l| l.starts_with("//! |")) {
        let mut any = false;
        let mut rest = line;
        while let Some(i) = rest.find("[`") {
            rest = &rest[i + 2..];
            let Some(j) = rest.find("`]") else { break };
            let name = &rest[..j];
            rest = &rest[j + 2..];
            // Only the module column names modules: `[`a`]`, not `[`a::B`]`.
            if !name.contains("::") && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                rows.entry(name.to_string()).or_insert(row);
                any = true;
            }
        }
        if any {
            row += 1;
        }
    }
    rows
}

#[test]
fn every_crate_path_form_is_read() {
    let code = code_of(
        "use crate::a::b;\nuse crate::{c, d::{e, f}, self as g};\nlet x = crate::h::i();\n\
         // use crate::commented;\nlet s = \"http://x\"; crate::j::k; // crate::trailing\nmacro $crate::no;\n\
         let q = '\"'; crate::l::m; // crate::after_char",
    );
    let got: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(got, ["a", "c", "d", "h", "j", "l"]);
    let rows = layout(
        "//! | layer | module | concept |\n//! | --- | --- | --- |\n//! | top | [`x`] | uses [`y::Z`] |\n//! | leaves | [`y`], [`z`] | |",
    );
    assert_eq!(rows.get("x"), Some(&0));
    assert_eq!(rows.get("y"), Some(&1));
    assert_eq!(rows.get("z"), Some(&1));
    assert_eq!(rows.len(), 3);
}

#[test]
fn layers_only_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut graph = BTreeMap::new();
    walk(&root.join("src"), None, &mut graph);
    assert!(graph.contains_key("region") && graph.contains_key("session"), "{graph:?}");
    let rows = layout(&std::fs::read_to_string(root.join("src/lib.rs")).unwrap());
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        let Some(&mine) = rows.get(m) else {
            wrong.push(format!("module `{m}` is not in src/lib.rs's # Layout table: add it in its layer"));
            continue;
        };
        for d in deps {
            match rows.get(d) {
                Some(&theirs) if theirs > mine => {}
                Some(_) => wrong.push(format!("`{m}` uses `{d}`, which is not below it in src/lib.rs's layer table")),
                None => wrong.push(format!("`{m}` uses `{d}`, which is not in src/lib.rs's layer table")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}\nmodule graph: {graph:#?}", wrong.join("\n"));
    // Nothing under the front ends names the cluster protocol or a store:
    // the session layer is their one door.
    for front in ["http", "gateway", "web"] {
        assert!(!graph[front].contains("store"), "{front} must reach sessions through the session layer only");
    }
    for dir in ["http", "gateway", "web"] {
        for e in std::fs::read_dir(root.join("src").join(dir)).unwrap().flatten() {
            let text = code_of(&std::fs::read_to_string(e.path()).unwrap());
            assert!(
                !text.contains("session::cluster") && !text.contains("crate::cluster"),
                "{} names the cluster protocol; go through crate::session::Sessions",
                e.path().display()
            );
        }
    }
}
