//! The one URL check and the one URL redaction.
//!
//! [`check`] accepts an absolute `http://` or `https://` URL with a host,
//! under [`Rules`] that say whether user info, a query or a fragment may
//! appear; its [`UrlError`] says what is wrong in words a config error or a
//! start-up error can quote. [`redact`] shows a URL in a log line or a
//! message without its secrets, in one of three forms ([`Shown`]).

use hyper::Uri;

/// What an accepted URL may carry besides scheme, host, port and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `user:password@` before the host.
    pub userinfo: bool,
    /// `?query`.
    pub query: bool,
    /// `#fragment`.
    pub fragment: bool,
}

impl Rules {
    /// Any http(s) URL with a host (the configuration's receiver keys).
    pub const ANY: Rules = Rules { userinfo: true, query: true, fragment: true };
    /// A webhook receiver: no credentials in the URL.
    pub const RECEIVER: Rules = Rules { userinfo: false, query: true, fragment: true };
    /// A gateway upstream: no credentials, no query (each request's own is
    /// passed on), no fragment.
    pub const UPSTREAM: Rules = Rules { userinfo: false, query: false, fragment: false };
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://` or `https://` (or not absolute).
    #[error("must start with http:// or https://")]
    Scheme,
    /// The URL does not parse.
    #[error("not a valid URL ({0})")]
    Invalid(String),
    /// There is no host after the scheme.
    #[error("the URL has no host")]
    NoHost,
    /// `user:password@` where none is allowed.
    #[error("the URL carries a user name or password (user:password@); remove the 'user@' part")]
    UserInfo,
    /// A query where none is allowed.
    #[error("the URL has a query, which is not allowed here (each request's own query is passed on)")]
    Query,
    /// A fragment where none is allowed.
    #[error("the URL has a fragment; remove the '#' part")]
    Fragment,
}

/// Checks `url` against `rules`; the parsed URL on success.
pub fn check(url: &str, rules: Rules) -> Result<Uri, UrlError> {
    let scheme_ok = |s: &str| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
    if !(scheme_ok("http://") || scheme_ok("https://")) {
        return Err(UrlError::Scheme);
    }
    if !rules.fragment && url.contains('#') {
        return Err(UrlError::Fragment);
    }
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(UrlError::NoHost);
    };
    if !rules.userinfo && authority.as_str().contains('@') {
        return Err(UrlError::UserInfo);
    }
    if !rules.query && (uri.query().is_some() || url.contains('?')) {
        return Err(UrlError::Query);
    }
    Ok(uri)
}

/// How much of a URL a log line or a message may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// No user info and no fragment; a query (which often carries a
    /// token) is shown as `?…`. Webhook receivers.
    QueryElided,
    /// No user info, no query, no fragment. Session managers.
    PathOnly,
    /// User names kept; the password of the user info and every
    /// `password=` query parameter shown as `***`. Store URLs, whose user
    /// and database an operator needs to see.
    PasswordMasked,
}

/// `url` as a log line or message may show it.
pub fn redact(url: &str, shown: Shown) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let auth_end = if scheme.is_some() { rest.find(['/', '?', '#']).unwrap_or(rest.len()) } else { 0 };
    let (authority, tail) = rest.split_at(auth_end);
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (tail, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    if let (Shown::PasswordMasked, Some(info)) = (shown, userinfo) {
        match info.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(info),
        }
        out.push('@');
    }
    out.push_str(host);
    out.push_str(path);
    match (shown, query) {
        (_, None) | (Shown::PathOnly, _) => {}
        (Shown::QueryElided, Some(_)) => out.push_str("?…"),
        (Shown::PasswordMasked, Some(q)) => {
            out.push('?');
            let parts: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&parts.join("&"));
        }
    }
    if let (Shown::PasswordMasked, Some(f)) = (shown, fragment) {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_applies_the_rules_and_says_what_is_wrong() {
        assert!(check("https://[::1]:9443/base/path", Rules::UPSTREAM).is_ok());
        assert!(check("HTTP://example.com/h?x=1", Rules::RECEIVER).is_ok());
        for (url, rules, want) in [
            ("ftp://example.com/x", Rules::ANY, UrlError::Scheme),
            ("/relative", Rules::ANY, UrlError::Scheme),
            ("not a url", Rules::ANY, UrlError::Scheme),
            ("https://u:pw@example.com/h", Rules::RECEIVER, UrlError::UserInfo),
            ("http://127.0.0.1:9000/?a=b", Rules::UPSTREAM, UrlError::Query),
            ("http://127.0.0.1:9000/#top", Rules::UPSTREAM, UrlError::Fragment),
        ] {
            assert_eq!(check(url, rules).unwrap_err(), want, "{url}");
        }
        assert!(matches!(check("http://bad host/", Rules::ANY), Err(UrlError::Invalid(_))));
        assert!(matches!(check("http://", Rules::ANY), Err(UrlError::Invalid(_) | UrlError::NoHost)));
        assert!(check("https://u:pw@example.com/h", Rules::ANY).is_ok());
    }

    #[test]
    fn redact_hides_credentials_in_each_form() {
        let url = "https://u:pw@example.com:8443/h?token=t0k&password=p#frag";
        assert_eq!(redact(url, Shown::QueryElided), "https://example.com:8443/h?…");
        assert_eq!(redact(url, Shown::PathOnly), "https://example.com:8443/h");
        assert_eq!(redact(url, Shown::PasswordMasked), "https://u:***@example.com:8443/h?token=t0k&password=***#frag");
        assert_eq!(redact("http://example.com:8080/h", Shown::QueryElided), "http://example.com:8080/h");
        assert_eq!(redact("ftp://example.com/x", Shown::QueryElided), "ftp://example.com/x");
        assert_eq!(redact("rediss://:pw@cache:6380/1", Shown::PasswordMasked), "rediss://:***@cache:6380/1");
        assert_eq!(redact("postgresql://u@h/db?password=x", Shown::PasswordMasked), "postgresql://u@h/db?password=***");
    }
}
