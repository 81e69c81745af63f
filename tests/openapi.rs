//! `docs/openapi.yaml` and the router name the same routes and methods.
//!
//! The router's table is read from the source: the arms of `dispatch`'s
//! `match (sp.segments(), &m)` in `src/http/mod.rs` (an arm whose method is
//! `_` contributes the `Method::X` arms of its body, or of `attr_route` when
//! it delegates there), and the arms of `route` in `src/http/gateway.rs` for
//! the `/v1/gateway/sessions/…` paths it is handed. Arms that only answer 405
//! add nothing. The spec's paths are read line by line (`  /path:` and its
//! `    method:` keys). Path parameters compare equal whatever their names.

use std::collections::BTreeSet;

type Routes = BTreeSet<(String, String)>;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of the block opened by the first `{` at or after `from`.
fn block(src: &str, from: usize) -> &str {
    let open = from + src[from..].find('{').expect("a block");
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &src[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced block")
}

/// The arms of a match body: (pattern, body), split at depth 0.
fn arms(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // pattern: up to `=>` at depth 0
        let start = i;
        let mut depth = 0i32;
        let mut in_str = false;
        while i + 1 < b.len() {
            let c = b[i];
            if in_str {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth -= 1,
                    b'=' if depth == 0 && b[i + 1] == b'>' => break,
                    _ => {}
                }
            }
            i += 1;
        }
        if i + 1 >= b.len() {
            break;
        }
        let pat = body[start..i].trim().to_string();
        i += 2;
        // body: up to `,` at depth 0, or the end of a `{ … }` block
        let bstart = i;
        let mut depth = 0i32;
        let mut in_str = false;
        let mut saw_block = false;
        while i < b.len() {
            let c = b[i];
            if in_str {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' if depth == 0 && body[bstart..i].trim().is_empty() => {
                        saw_block = true;
                        depth += 1;
                    }
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 && saw_block {
                            i += 1;
                            break;
                        }
                    }
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        out.push((pat, body[bstart..i.min(b.len())].trim().to_string()));
        i += 1;
    }
    out
}

/// Splits at `sep` outside brackets and strings.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut in_str) = (Vec::new(), String::new(), 0, false);
    for c in s.chars() {
        match c {
            '"' => in_str = !in_str,
            '(' | '[' if !in_str => depth += 1,
            ')' | ']' if !in_str => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !in_str {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter().map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

/// The paths a slice pattern matches, with `{}` for parameters; `..` rests stay as `..`.
fn paths_of(slice: &str, prefix: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for alt in split_top(slice, '|') {
        let inner = alt.trim().trim_start_matches('[').trim_end_matches(']');
        let mut paths: Vec<Vec<String>> = vec![prefix.to_vec()];
        for el in split_top(inner, ',') {
            let choices: Vec<String> = if let Some(lit) = el.strip_prefix('"') {
                vec![lit.trim_end_matches('"').to_string()]
            } else if let Some((_, alts)) = el.split_once(" @ ") {
                if alts.trim() == ".." {
                    vec!["..".into()]
                } else {
                    split_top(alts.trim().trim_start_matches('(').trim_end_matches(')'), '|')
                        .into_iter()
                        .map(|a| a.trim_matches('"').to_string())
                        .collect()
                }
            } else {
                vec!["{}".into()]
            };
            paths = paths
                .into_iter()
                .flat_map(|p| {
                    choices.iter().map(move |c| {
                        let mut q = p.clone();
                        q.push(c.clone());
                        q
                    })
                })
                .collect();
        }
        out.extend(paths);
    }
    out
}

fn methods_in(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(p) = rest.find("Method::") {
        let after = &rest[p + 8..];
        let name: String = after.chars().take_while(|c| c.is_ascii_uppercase()).collect();
        let tail = after[name.len()..].trim_start();
        if !name.is_empty() && (tail.starts_with("=>") || tail.starts_with('|')) {
            out.push(name.to_lowercase());
        }
        rest = after;
    }
    out
}

/// The routes of one match: `(slice, method)` arms, `prefix` prepended.
fn routes_of(match_body: &str, prefix: &[String], src: &str, gateway: &str) -> Routes {
    let mut routes = Routes::new();
    for (pat, body) in arms(match_body) {
        let pat = pat.split(" if ").next().unwrap().trim();
        let Some(tuple) = pat.strip_prefix('(').and_then(|p| p.strip_suffix(')')) else { continue };
        let parts = split_top(tuple, ',');
        let [slice, method] = &parts[..] else { continue };
        for path in paths_of(slice, prefix) {
            if path.last().map(String::as_str) == Some("..") {
                // delegated: the gateway control API
                let mut base = path.clone();
                base.pop();
                let f = gateway.find("pub async fn route").expect("gateway::route");
                let inner = block(gateway, gateway[f..].find("match (rest, method)").unwrap() + f);
                routes.extend(routes_of(inner, &base, src, gateway));
                continue;
            }
            let methods = if method.trim() == "_" {
                if body.contains("attr_route(") {
                    let f = src.find("async fn attr_route").expect("attr_route");
                    methods_in(block(src, f + src[f..].find("match").unwrap()))
                } else {
                    methods_in(&body)
                }
            } else {
                vec![method.trim().trim_start_matches('&').trim_start_matches("Method::").to_lowercase()]
            };
            for m in methods {
                routes.insert((format!("/{}", path.join("/")), m));
            }
        }
    }
    routes
}

fn router() -> Routes {
    let src = read("src/http/mod.rs");
    let gateway = read("src/http/gateway.rs");
    let at = src.find("match (sp.segments(), &m)").expect("dispatch's route match in src/http/mod.rs");
    routes_of(block(&src, at), &[], &src, &gateway)
}

fn spec() -> Routes {
    let text = read("docs/openapi.yaml");
    let mut routes = Routes::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.starts_with("paths:");
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            let p = p.trim_end().trim_end_matches(':');
            let norm: Vec<String> =
                p.split('/').map(|s| if s.starts_with('{') { "{}".to_string() } else { s.to_string() }).collect();
            path = Some(format!("/{}", norm.join("/")));
        } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
            let key = m.trim_end().trim_end_matches(':');
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&key) {
                routes.insert((p.clone(), key.to_string()));
            }
        }
    }
    routes
}

#[test]
fn router_and_openapi_name_the_same_routes() {
    let (router, spec) = (router(), spec());
    assert!(router.len() > 20, "read too few routes from the router: {router:?}");
    let only_router: Vec<_> = router.difference(&spec).collect();
    let only_spec: Vec<_> = spec.difference(&router).collect();
    assert!(
        only_router.is_empty() && only_spec.is_empty(),
        "docs/openapi.yaml and src/http/mod.rs disagree.\n  in the router, not the spec: {only_router:?}\n  in the spec, not the router: {only_spec:?}"
    );
}

#[test]
fn the_parser_reads_known_routes() {
    let r = router();
    for (p, m) in [
        ("/healthz", "get"),
        ("/v1/sessions", "post"),
        ("/v1/sessions/{}", "patch"),
        ("/v1/sessions/{}/attributes/{}", "put"),
        ("/v1/session", "post"),
        ("/v1/gateway/sessions/{}/filters/{}/add", "post"),
    ] {
        assert!(r.contains(&(p.to_string(), m.to_string())), "{m} {p} not read from the router: {r:?}");
    }
    assert!(!r.iter().any(|(p, _)| p.contains("..")), "{r:?}");
}
