//! Glacier2's per-session request filters: the category, adapter-id and
//! identity sets that decide which requests a session may send upstream.
//!
//! This module owns [`Filters`] and the rule [`Filters::allows`] applies
//! (Glacier2's `ClientBlobject`: every set empty allows everything; otherwise
//! a request passes when any non-empty set matches it), the validation of
//! items, the limits [`MAX_ITEMS`] and [`MAX_ITEM_LEN`], the initial sets of a
//! new session ([`Filters::initial`], Glacier2's `Filter.*.Accept` and
//! `Filter.Category.AcceptUser`), the idempotent `add`/`remove`/`get` of
//! Glacier2's `StringSet` and `IdentitySet`, and the JSON form kept in the
//! session ([`Filters::encode`], [`Filters::decode`]).
//!
//! It must never match on anything but a [`NormalPath`] (the raw path is
//! what allow-list bypasses are made of), never match by prefix or with case
//! folding, and never turn bad input into wider access: an item that does
//! not validate is refused with an error, and stored bytes that do not decode
//! are an error for the caller to treat as "deny", never an empty (allow-all)
//! set. Which status a refused request gets (Glacier2 answers "object does
//! not exist") is the caller's choice.
//!
//! # Items
//! - A **category** is matched against the first path segment
//!   ([`NormalPath::category`]); an **adapter id** against the name of the
//!   upstream the request routes to. Both must be non-empty, without `/` and
//!   without control characters.
//! - An **identity** is a whole path. It is given in request-path form
//!   (`/orders/42`, `/files/my%20doc`), normalised with
//!   [`path::normalise_with`] under [`IDENTITY_RULES`], and kept as
//!   [`NormalPath::as_str`] (decoded, no trailing slash), which is what
//!   requests are compared against: adding
//!   `/a/../b` stores `/b`. [`Filters::get`] hands identities back
//!   re-encoded (`/files/my%20doc`), so what `get` returns is always valid
//!   input to `add` and `remove` and names the same identities.
//!
//! # Stored form
//! Compact JSON of the three sets with empty sets left out (`{}` for no
//! filters), identities in their decoded form. Unknown fields are refused
//! rather than ignored: a filter kind this build does not know might be the
//! only non-empty set, and ignoring it would allow everything.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::path::{self, NormalPath};

/// How identities are normalised: a decoded `%` and two hex digits are kept
/// as text, whatever `gateway.allow_encoded_percent` says. Under the
/// default such a request path is refused before any filter is asked, so an
/// identity like `/%2561` (decoded `/%61`) matches nothing then; with the
/// key on it matches as it always did, and sessions stored before the key
/// existed still decode.
pub const IDENTITY_RULES: path::Allow = path::Allow { encoded_percent: true };

/// The most items one filter set may hold.
pub const MAX_ITEMS: usize = 1024;

/// The longest item accepted, in bytes (as given, before normalising).
pub const MAX_ITEM_LEN: usize = 1024;

/// Whether a new session's user id becomes one of its accepted categories;
/// one type with the configuration key that sets it.
pub use crate::config::AcceptUser;

/// One of the three filter sets; the control API's path words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// First path segments (`categories`).
    Categories,
    /// Upstream names (`adapter_ids`).
    AdapterIds,
    /// Whole normalised paths (`identities`).
    Identities,
}

impl FilterKind {
    /// The three kinds, in the order they are listed to users.
    pub const ALL: [FilterKind; 3] = [FilterKind::Categories, FilterKind::AdapterIds, FilterKind::Identities];

    /// The control API's word for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::Categories => "categories",
            FilterKind::AdapterIds => "adapter_ids",
            FilterKind::Identities => "identities",
        }
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FilterKind {
    type Err = FilterError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        FilterKind::ALL
            .into_iter()
            .find(|k| k.as_str() == word)
            .ok_or_else(|| FilterError::UnknownKind { word: word.to_owned() })
    }
}

/// Why a filter change, a filter set's word or stored filters were refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The word is not one of the three filter kinds.
    #[error("unknown filter kind {word:?}; use categories, adapter_ids or identities")]
    UnknownKind {
        /// The word given.
        word: String,
    },
    /// The set would hold more than [`MAX_ITEMS`] items.
    #[error("too many {kind}: the set would hold {n} items, over the limit of {max}; remove some first")]
    TooMany {
        /// The set.
        kind: FilterKind,
        /// How many items it would hold.
        n: usize,
        /// The limit, [`MAX_ITEMS`].
        max: usize,
    },
    /// An item is longer than [`MAX_ITEM_LEN`].
    #[error("one of the {kind} is {len} bytes, over the {max}-byte limit")]
    ItemTooLong {
        /// The set.
        kind: FilterKind,
        /// The item's length in bytes.
        len: usize,
        /// The limit, [`MAX_ITEM_LEN`].
        max: usize,
    },
    /// An item is the empty string.
    #[error("one of the {kind} is empty; items must be non-empty")]
    EmptyItem {
        /// The set.
        kind: FilterKind,
    },
    /// An item is not valid for its set.
    #[error("{kind} item {item:?} is refused: {why}")]
    BadItem {
        /// The set.
        kind: FilterKind,
        /// The item as given.
        item: String,
        /// What is wrong with it.
        why: String,
    },
    /// Stored filters are not well-formed JSON of valid sets.
    #[error("stored filters do not decode: {0}")]
    Decode(String),
}

/// A session's filters: three sets of exact-match items. Build and change
/// them through [`Filters::initial`], [`Filters::add`] and
/// [`Filters::remove`], which validate; the fields are public for reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Accepted first path segments.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub categories: BTreeSet<String>,
    /// Accepted upstream names.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub adapter_ids: BTreeSet<String>,
    /// Accepted whole paths, in [`NormalPath::as_str`] form.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub identities: BTreeSet<String>,
}

/// Refuses an empty or oversized item.
fn check_size(kind: FilterKind, item: &str) -> Result<(), FilterError> {
    if item.is_empty() {
        return Err(FilterError::EmptyItem { kind });
    }
    if item.len() > MAX_ITEM_LEN {
        return Err(FilterError::ItemTooLong { kind, len: item.len(), max: MAX_ITEM_LEN });
    }
    Ok(())
}

/// Validates an item as given to `add` or `remove` and returns the form it
/// is kept in.
fn canonical(kind: FilterKind, item: &str) -> Result<String, FilterError> {
    check_size(kind, item)?;
    let bad = |why: String| FilterError::BadItem { kind, item: item.to_owned(), why };
    match kind {
        FilterKind::Identities => {
            path::normalise_with(item, IDENTITY_RULES).map(|p| p.as_str().to_owned()).map_err(|e| bad(e.to_string()))
        }
        FilterKind::Categories | FilterKind::AdapterIds => {
            if item.contains('/') {
                Err(bad("it contains '/', and it is matched against a single name".into()))
            } else if item.chars().any(char::is_control) {
                Err(bad("it contains a control character".into()))
            } else {
                Ok(item.to_owned())
            }
        }
    }
}

/// Checks an item as it is kept (what [`Filters::decode`] reads back).
fn check_kept(kind: FilterKind, item: &str) -> Result<(), FilterError> {
    match kind {
        FilterKind::Categories | FilterKind::AdapterIds => canonical(kind, item).map(drop),
        FilterKind::Identities => {
            check_size(kind, item)?;
            // An identity is kept decoded (it may hold a literal '%'), so it is
            // checked through its encoding: it is a normal form exactly when
            // normalising its encoding gives it back.
            if path::normalise_with(&path::encode_text(item), IDENTITY_RULES).is_ok_and(|p| p.as_str() == item) {
                Ok(())
            } else {
                Err(FilterError::BadItem { kind, item: item.to_owned(), why: "it is not a normalised path".into() })
            }
        }
    }
}

impl Filters {
    /// The initial filters of a new session: the configured sets, plus the
    /// user as a category under [`AcceptUser::Category`] (`alice`) or
    /// [`AcceptUser::Underscore`] (`_alice`). A user id that is not a valid
    /// category (it contains `/`, say) is refused.
    pub fn initial(
        categories: &[String],
        adapter_ids: &[String],
        identities: &[String],
        accept_user: AcceptUser,
        user: &str,
    ) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        f.add(FilterKind::Categories, categories)?;
        f.add(FilterKind::AdapterIds, adapter_ids)?;
        f.add(FilterKind::Identities, identities)?;
        match accept_user {
            AcceptUser::None => {}
            AcceptUser::Category => f.add(FilterKind::Categories, &[user.to_owned()])?,
            AcceptUser::Underscore => f.add(FilterKind::Categories, &[format!("_{user}")])?,
        }
        Ok(f)
    }

    /// Glacier2's rule: every set empty → allowed. Otherwise allowed when ANY
    /// non-empty set matches: `categories` contains `path.category()`;
    /// `adapter_ids` contains `adapter_id` (the upstream the request routes
    /// to; `None` never matches); `identities` contains `path.as_str()`.
    /// Matching is exact (no prefixes, no case folding).
    pub fn allows(&self, path: &NormalPath, adapter_id: Option<&str>) -> bool {
        if self.categories.is_empty() && self.adapter_ids.is_empty() && self.identities.is_empty() {
            return true;
        }
        path.category().is_some_and(|c| self.categories.contains(c))
            || adapter_id.is_some_and(|a| self.adapter_ids.contains(a))
            || self.identities.contains(path.as_str())
    }

    /// The set of one kind.
    fn set(&self, kind: FilterKind) -> &BTreeSet<String> {
        match kind {
            FilterKind::Categories => &self.categories,
            FilterKind::AdapterIds => &self.adapter_ids,
            FilterKind::Identities => &self.identities,
        }
    }

    /// The set of one kind, to change.
    fn set_mut(&mut self, kind: FilterKind) -> &mut BTreeSet<String> {
        match kind {
            FilterKind::Categories => &mut self.categories,
            FilterKind::AdapterIds => &mut self.adapter_ids,
            FilterKind::Identities => &mut self.identities,
        }
    }

    /// The items of one set, sorted. Identities come back in request-path
    /// (percent-encoded) form, valid input to [`add`](Self::add) and
    /// [`remove`](Self::remove).
    pub fn get(&self, kind: FilterKind) -> Vec<String> {
        match kind {
            FilterKind::Identities => {
                let mut v: Vec<String> = self.identities.iter().map(|i| path::encode_text(i)).collect();
                v.sort();
                v
            }
            FilterKind::Categories | FilterKind::AdapterIds => self.set(kind).iter().cloned().collect(),
        }
    }

    /// Adds items to one set. Idempotent: duplicates are ignored. Every item
    /// is validated first (all or nothing); the limit applies to the
    /// resulting set.
    pub fn add(&mut self, kind: FilterKind, items: &[String]) -> Result<(), FilterError> {
        let items = items.iter().map(|i| canonical(kind, i)).collect::<Result<BTreeSet<String>, _>>()?;
        let set = self.set_mut(kind);
        let n = set.len() + items.iter().filter(|i| !set.contains(*i)).count();
        if n > MAX_ITEMS {
            return Err(FilterError::TooMany { kind, n, max: MAX_ITEMS });
        }
        set.extend(items);
        Ok(())
    }

    /// Removes items from one set. Idempotent: missing items are ignored.
    /// Every item is validated first (all or nothing); identities are
    /// normalised, so `/a/../b` removes `/b`.
    pub fn remove(&mut self, kind: FilterKind, items: &[String]) -> Result<(), FilterError> {
        let items = items.iter().map(|i| canonical(kind, i)).collect::<Result<Vec<String>, _>>()?;
        let set = self.set_mut(kind);
        for i in &items {
            set.remove(i);
        }
        Ok(())
    }

    /// Compact JSON for storing in the session (the caller checks it fits
    /// the context's maximum value size).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising sets of strings cannot fail; if it ever did, returning
        // anything (say `{}`) would drop the filters and allow everything.
        serde_json::to_vec(self).expect("serialising sets of strings to JSON cannot fail")
    }

    /// Reads filters back from [`encode`](Self::encode)'s form. Malformed
    /// JSON, unknown fields, oversized sets and items that `add` would not
    /// have kept are refused with [`FilterError::Decode`]; it never panics.
    pub fn decode(bytes: &[u8]) -> Result<Filters, FilterError> {
        let f: Filters = serde_json::from_slice(bytes).map_err(|e| FilterError::Decode(e.to_string()))?;
        for kind in FilterKind::ALL {
            let set = f.set(kind);
            if set.len() > MAX_ITEMS {
                let e = FilterError::TooMany { kind, n: set.len(), max: MAX_ITEMS };
                return Err(FilterError::Decode(e.to_string()));
            }
            for item in set {
                check_kept(kind, item).map_err(|e| FilterError::Decode(e.to_string()))?;
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::path::normalise;
    use proptest::prelude::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn with(kind: FilterKind, items: &[&str]) -> Filters {
        let mut f = Filters::default();
        f.add(kind, &strings(items)).unwrap();
        f
    }

    fn allows(f: &Filters, raw: &str, adapter: Option<&str>) -> bool {
        f.allows(&normalise(raw).unwrap(), adapter)
    }

    #[test]
    fn no_filters_allow_everything() {
        let f = Filters::default();
        assert!(allows(&f, "/", None));
        assert!(allows(&f, "/anything/at/all", None));
        assert!(allows(&f, "/x", Some("up")));
    }

    #[test]
    fn categories_alone_match_the_first_segment_exactly() {
        let f = with(FilterKind::Categories, &["_alice"]);
        assert!(allows(&f, "/_alice", None));
        assert!(allows(&f, "/_alice/orders/1", Some("up")));
        assert!(allows(&f, "//_alice/./x", None));
        assert!(!allows(&f, "/", None));
        assert!(!allows(&f, "/_bob/x", None));
        assert!(!allows(&f, "/_alicex", None));
        assert!(!allows(&f, "/_ALICE", None));
        assert!(!allows(&f, "/x/_alice", None));
        assert!(!allows(&f, "/_alice/../_bob", None));
        assert!(!allows(&f, "/_alice/..;/_bob", None));
    }

    #[test]
    fn adapter_ids_alone_match_the_upstream_exactly() {
        let f = with(FilterKind::AdapterIds, &["orders"]);
        assert!(allows(&f, "/anything", Some("orders")));
        assert!(!allows(&f, "/orders", None));
        assert!(!allows(&f, "/anything", Some("orders2")));
        assert!(!allows(&f, "/anything", Some("Orders")));
    }

    #[test]
    fn identities_alone_match_the_whole_normal_path() {
        let f = with(FilterKind::Identities, &["/a/b"]);
        assert!(allows(&f, "/a/b", None));
        assert!(allows(&f, "/a/b/", None));
        assert!(allows(&f, "/a/x/../b", None));
        assert!(allows(&f, "/a;p=1/b", None));
        assert!(!allows(&f, "/a", None));
        assert!(!allows(&f, "/a/b/c", None));
        assert!(!allows(&f, "/A/b", None));
    }

    #[test]
    fn any_non_empty_set_that_matches_allows() {
        let mut f = with(FilterKind::Categories, &["pub"]);
        f.add(FilterKind::AdapterIds, &strings(&["files"])).unwrap();
        f.add(FilterKind::Identities, &strings(&["/admin/status"])).unwrap();
        assert!(allows(&f, "/pub/x", Some("other")));
        assert!(allows(&f, "/private/x", Some("files")));
        assert!(allows(&f, "/admin/status", None));
        assert!(!allows(&f, "/admin/other", Some("other")));
        assert!(!allows(&f, "/admin/other", None));
    }

    #[test]
    fn add_and_remove_are_idempotent() {
        let mut f = Filters::default();
        let items = strings(&["b", "a", "b"]);
        f.add(FilterKind::Categories, &items).unwrap();
        f.add(FilterKind::Categories, &items).unwrap();
        assert_eq!(f.get(FilterKind::Categories), ["a", "b"]);
        f.remove(FilterKind::Categories, &strings(&["a", "missing"])).unwrap();
        f.remove(FilterKind::Categories, &strings(&["a"])).unwrap();
        assert_eq!(f.get(FilterKind::Categories), ["b"]);
        assert!(f.get(FilterKind::AdapterIds).is_empty());
        f.remove(FilterKind::AdapterIds, &strings(&["nothing"])).unwrap();
        assert_eq!(f, with(FilterKind::Categories, &["b"]));
    }

    #[test]
    fn initial_adds_the_user_as_accept_user_says() {
        let cats = strings(&["pub"]);
        let ids = strings(&["/status/"]);
        let none = Filters::initial(&cats, &[], &ids, AcceptUser::None, "alice").unwrap();
        assert_eq!(none.get(FilterKind::Categories), ["pub"]);
        assert_eq!(none.get(FilterKind::Identities), ["/status"]);
        let plain = Filters::initial(&cats, &[], &[], AcceptUser::Category, "alice").unwrap();
        assert_eq!(plain.get(FilterKind::Categories), ["alice", "pub"]);
        let under = Filters::initial(&[], &strings(&["up"]), &[], AcceptUser::Underscore, "alice").unwrap();
        assert_eq!(under.get(FilterKind::Categories), ["_alice"]);
        assert_eq!(under.get(FilterKind::AdapterIds), ["up"]);
        assert!(allows(&under, "/_alice/x", None));
        assert!(!allows(&under, "/alice/x", None));
        assert!(matches!(
            Filters::initial(&[], &[], &[], AcceptUser::Category, "a/b"),
            Err(FilterError::BadItem { kind: FilterKind::Categories, .. })
        ));
        assert!(matches!(
            Filters::initial(&[], &[], &[], AcceptUser::Category, ""),
            Err(FilterError::EmptyItem { kind: FilterKind::Categories })
        ));
        assert!(Filters::initial(&[], &[], &[], AcceptUser::None, "").unwrap() == Filters::default());
        assert_eq!(serde_json::to_string(&AcceptUser::Underscore).unwrap(), "\"underscore\"");
        assert_eq!(serde_json::from_str::<AcceptUser>("\"none\"").unwrap(), AcceptUser::None);
    }

    #[test]
    fn identities_are_normalised_when_added_and_removed() {
        let mut f = with(FilterKind::Identities, &["/a/../b"]);
        assert_eq!(f.identities, BTreeSet::from(["/b".to_string()]));
        assert!(allows(&f, "/b", None));
        assert!(allows(&f, "/a/../b", None));
        f.remove(FilterKind::Identities, &strings(&["//b/"])).unwrap();
        assert!(f.identities.is_empty());
        assert!(matches!(
            f.add(FilterKind::Identities, &strings(&["/ok", "/a%2fb"])),
            Err(FilterError::BadItem { kind: FilterKind::Identities, .. })
        ));
        assert!(f.identities.is_empty(), "all or nothing");
        assert!(matches!(f.add(FilterKind::Identities, &strings(&["b"])), Err(FilterError::BadItem { .. })));
    }

    #[test]
    fn identities_come_back_in_a_form_add_and_remove_accept() {
        let mut f = with(FilterKind::Identities, &["/%2561dmin", "/my%20doc/", "/caf%C3%A9"]);
        assert_eq!(f.identities, ["/%61dmin", "/café", "/my doc"].into_iter().map(String::from).collect());
        let got = f.get(FilterKind::Identities);
        assert_eq!(got, ["/%2561dmin", "/caf%C3%A9", "/my%20doc"]);
        let before = f.clone();
        f.add(FilterKind::Identities, &got).unwrap();
        assert_eq!(f, before);
        f.add(FilterKind::Identities, &strings(&["/admin"])).unwrap();
        f.remove(FilterKind::Identities, &got).unwrap();
        assert_eq!(f.get(FilterKind::Identities), ["/admin"]);
    }

    #[test]
    fn items_are_validated_all_or_nothing() {
        let mut f = Filters::default();
        for (kind, item) in
            [(FilterKind::Categories, "a/b"), (FilterKind::AdapterIds, "x\u{7}"), (FilterKind::Categories, "\n")]
        {
            let e = f.add(kind, &strings(&["fine", item])).unwrap_err();
            assert!(matches!(e, FilterError::BadItem { .. }), "{e}");
            assert!(e.to_string().contains(kind.as_str()), "{e}");
        }
        assert!(matches!(
            f.add(FilterKind::AdapterIds, &strings(&["fine", ""])),
            Err(FilterError::EmptyItem { kind: FilterKind::AdapterIds })
        ));
        assert!(matches!(
            f.remove(FilterKind::Categories, &strings(&[""])),
            Err(FilterError::EmptyItem { kind: FilterKind::Categories })
        ));
        assert_eq!(f, Filters::default());
        // Anything else is a fine name, matched exactly.
        f.add(FilterKind::Categories, &strings(&["é", "a b", "%41", ".."])).unwrap();
        assert_eq!(f.categories.len(), 4);
    }

    #[test]
    fn limits_apply_to_the_resulting_set_and_to_each_item() {
        let mut f = Filters::default();
        let full: Vec<String> = (0..MAX_ITEMS).map(|i| format!("c{i}")).collect();
        f.add(FilterKind::Categories, &full).unwrap();
        // Duplicates do not count against the limit.
        f.add(FilterKind::Categories, &full[..10]).unwrap();
        let e = f.add(FilterKind::Categories, &strings(&["c0", "new"])).unwrap_err();
        assert!(matches!(e, FilterError::TooMany { kind: FilterKind::Categories, n: 1025, max: MAX_ITEMS }), "{e}");
        assert_eq!(f.categories.len(), MAX_ITEMS);
        f.remove(FilterKind::Categories, &full[..1]).unwrap();
        f.add(FilterKind::Categories, &strings(&["new"])).unwrap();
        // Other sets have their own limit.
        f.add(FilterKind::AdapterIds, &strings(&["up"])).unwrap();

        let long = "x".repeat(MAX_ITEM_LEN + 1);
        assert!(matches!(
            f.add(FilterKind::AdapterIds, &[long]),
            Err(FilterError::ItemTooLong { len: 1025, max: MAX_ITEM_LEN, .. })
        ));
        assert!(matches!(
            f.add(FilterKind::Identities, &[format!("/{}", "a".repeat(MAX_ITEM_LEN))]),
            Err(FilterError::ItemTooLong { kind: FilterKind::Identities, .. })
        ));
        f.add(FilterKind::AdapterIds, &["x".repeat(MAX_ITEM_LEN)]).unwrap();
    }

    #[test]
    fn kinds_parse_and_print_as_the_control_api_words() {
        for kind in FilterKind::ALL {
            assert_eq!(kind.to_string().parse::<FilterKind>().unwrap(), kind);
        }
        assert_eq!("adapter_ids".parse::<FilterKind>().unwrap(), FilterKind::AdapterIds);
        let e = "adapterIds".parse::<FilterKind>().unwrap_err().to_string();
        assert!(e.contains("\"adapterIds\"") && e.contains("categories, adapter_ids or identities"), "{e}");
    }

    #[test]
    fn encode_is_compact_and_decodes_back() {
        assert_eq!(Filters::default().encode(), b"{}");
        let mut f =
            Filters::initial(&[], &strings(&["up"]), &strings(&["/my%20doc"]), AcceptUser::Underscore, "al").unwrap();
        assert_eq!(f.encode(), br#"{"categories":["_al"],"adapter_ids":["up"],"identities":["/my doc"]}"#);
        assert_eq!(Filters::decode(&f.encode()).unwrap(), f);
        f.add(FilterKind::Identities, &strings(&["/%2561", "/"])).unwrap();
        assert_eq!(Filters::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn decode_refuses_garbage() {
        let many = format!(
            r#"{{"categories":[{}]}}"#,
            (0..=MAX_ITEMS).map(|i| format!("\"c{i}\"")).collect::<Vec<_>>().join(",")
        );
        let garbage: Vec<&[u8]> = vec![
            b"",
            b"{",
            b"null",
            b"42",
            b"\"categories\"",
            b"\xff\xfe",
            br#"{"categories":"a"}"#,
            br#"{"categories":[1]}"#,
            br#"{"categories":["a/b"]}"#,
            br#"{"categories":[""]}"#,
            br#"{"adapter_ids":["a\u0000"]}"#,
            br#"{"identities":["/a/../b"]}"#,
            br#"{"identities":["/a/"]}"#,
            br#"{"identities":["//a"]}"#,
            br#"{"identities":["a"]}"#,
            br#"{"identities":["/a;b"]}"#,
            br#"{"identities":["/a\\b"]}"#,
            br#"{"widgets":["x"]}"#,
            br#"{"categories":["a"]} trailing"#,
            many.as_bytes(),
        ];
        for bytes in garbage {
            let e = Filters::decode(bytes);
            assert!(matches!(e, Err(FilterError::Decode(_))), "{:?} gave {e:?}", String::from_utf8_lossy(bytes));
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(Filters::decode(deep.as_bytes()), Err(FilterError::Decode(_))));
    }

    /// The rule written the plain way, on the raw pieces.
    fn reference(f: &Filters, p: &NormalPath, adapter: Option<&str>) -> bool {
        let all_empty = f.categories.is_empty() && f.adapter_ids.is_empty() && f.identities.is_empty();
        let segs: Vec<&str> = p.as_str().split('/').filter(|s| !s.is_empty()).collect();
        let by_category = f.categories.iter().any(|c| segs.first() == Some(&c.as_str()));
        let by_adapter = f.adapter_ids.iter().any(|a| adapter == Some(a.as_str()));
        let by_identity = f.identities.iter().any(|i| i == &format!("/{}", segs.join("/")));
        all_empty || by_category || by_adapter || by_identity
    }

    fn subset(of: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        prop::sample::subsequence(of, 0..=of.len()).prop_map(|v| v.into_iter().map(String::from).collect())
    }

    proptest! {
        #[test]
        fn allows_agrees_with_the_reference(
            cats in subset(&["a", "b", "_alice", "%61"]),
            adapters in subset(&["up1", "up2"]),
            ids in subset(&["/a", "/a/b", "/b/", "/c/../d", "/%2561"]),
            segs in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "c", "d", "_alice", "..", ".", "", "%61", "%2561", "a;x"]),
                0..4,
            ),
            adapter in prop::option::of(prop::sample::select(vec!["up1", "up2", "up3"])),
        ) {
            let mut f = Filters::default();
            f.add(FilterKind::Categories, &cats).unwrap();
            f.add(FilterKind::AdapterIds, &adapters).unwrap();
            f.add(FilterKind::Identities, &ids).unwrap();
            let p = path::normalise_with(&format!("/{}", segs.join("/")), IDENTITY_RULES).unwrap();
            prop_assert_eq!(f.allows(&p, adapter), reference(&f, &p, adapter));
            // The stored form keeps the decision.
            let back = Filters::decode(&f.encode()).unwrap();
            prop_assert_eq!(back.allows(&p, adapter), f.allows(&p, adapter));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Filters::decode(&bytes);
        }
    }
}
