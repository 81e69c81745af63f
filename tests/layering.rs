//! The module graph has no cycles (docs/design.md §2.10): each top-level
//! module of `src/` may use only modules below it. Read from the source
//! itself, ignoring comments and unit-test code, so a new `use crate::…`
//! that closes a loop fails here with the loop spelled out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn deps_of(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
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
            let deps = deps_of(&std::fs::read_to_string(&p).unwrap());
            graph.entry(module.clone()).or_default().extend(deps.into_iter().filter(|d| *d != module));
        }
    }
}

#[test]
fn the_module_graph_has_no_cycles() {
    let mut graph = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut graph);
    assert!(graph.contains_key("region") && graph.contains_key("session"), "{graph:?}");
    // Depth-first search with an explicit path.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(format!("{} -> {n}", path[i..].join(" -> ")));
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {cycle}\nmodule graph: {graph:#?}");
        }
    }
    // The leaves stay leaves, and the region never reaches up.
    for leaf in ["dirlock", "disk", "clock", "crypto"] {
        assert!(graph[leaf].is_empty(), "{leaf} must import nothing from the crate: {:?}", graph[leaf]);
    }
    for above in ["config", "session", "datadir", "contexts", "http", "sys", "metrics"] {
        assert!(!graph["region"].contains(above), "region must not import {above}");
    }
}
