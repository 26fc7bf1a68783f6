//! RFC 9111 as rsp applies it, a shared cache: what `Cache-Control` (or
//! the targeted field that overrides it, RFC 9213) says, whether a
//! response may be stored (§3), how long it is fresh (§4.2.1, §4.2.2),
//! how old it is (§4.2.3), and whether a request may be answered from it
//! (§4, §4.2.4). Pure functions of fields and times; the choices RFC 9111
//! leaves open are named where they are made (and in the README).

use std::time::SystemTime;

/// The largest delta-seconds rsp represents: a larger value, or a
/// calculation that overflows, is taken as 2^31 (§1.2.2).
pub const MAX_DELTA: u64 = 1 << 31;

/// What a `Cache-Control` field (or fields) says, requests' and
/// responses' directives alike.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    /// Unqualified or with field names: rsp treats both as unqualified,
    /// the stricter (§5.2.2.4 leaves the qualified form's handling to the
    /// cache).
    pub no_cache: bool,
    /// Likewise, qualified `private` is taken as unqualified: not stored.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub no_transform: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A request's `max-stale` (`Some(MAX_DELTA)` without a value).
    pub max_stale: Option<u64>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
    /// A freshness directive had an invalid value: the response is taken
    /// as stale (§4.2.1 encourages it).
    pub invalid: bool,
}

impl Directives {
    /// The directives of every value of the field, in order; of a
    /// directive given twice, the first counts (§4.2.1).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Directives {
        let mut directives = Directives::default();
        for value in values {
            for (name, argument) in Items::new(value) {
                directives.take(&name, argument.as_deref());
            }
        }
        directives
    }

    fn take(&mut self, name: &str, argument: Option<&[u8]>) {
        let seconds = || argument.map(delta_seconds);
        match name {
            "max-age" => first(&mut self.max_age, seconds(), &mut self.invalid),
            "s-maxage" => first(&mut self.s_maxage, seconds(), &mut self.invalid),
            "stale-while-revalidate" => {
                let mut ignored = false;
                first(&mut self.stale_while_revalidate, seconds(), &mut ignored)
            }
            "stale-if-error" => {
                let mut ignored = false;
                first(&mut self.stale_if_error, seconds(), &mut ignored)
            }
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = match argument.map(delta_seconds) {
                    None => Some(MAX_DELTA),
                    Some(Ok(seconds)) => Some(seconds),
                    // An invalid value asks for no stale answer.
                    Some(Err(Invalid)) => Some(0),
                };
            }
            "min-fresh" => {
                let mut ignored = false;
                first(&mut self.min_fresh, seconds(), &mut ignored)
            }
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "no-transform" => self.no_transform = true,
            "only-if-cached" => self.only_if_cached = true,
            // Extensions rsp does not know are ignored (§5.2.3).
            _ => {}
        }
    }

    /// A stale response may not be served without revalidation (§4.2.4):
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` (§5.2.2.10), or
    /// `no-cache`.
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some() || self.no_cache
    }
}

/// Sets `slot` from the first occurrence; an invalid one marks `invalid`.
fn first(slot: &mut Option<u64>, value: Option<Result<u64, Invalid>>, invalid: &mut bool) {
    match value {
        _ if slot.is_some() => {}
        Some(Ok(seconds)) => *slot = Some(seconds),
        Some(Err(Invalid)) | None => *invalid = true,
    }
}

/// A value that is no delta-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// delta-seconds (§1.2.2): digits; too large is 2^31.
pub fn delta_seconds(text: &[u8]) -> Result<u64, Invalid> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(Invalid);
    }
    let mut value: u64 = 0;
    for digit in text {
        value = value * 10 + u64::from(digit - b'0');
        if value >= MAX_DELTA {
            return Ok(MAX_DELTA);
        }
    }
    Ok(value)
}

/// The items of a comma-separated list of `token [ "=" ( token /
/// quoted-string ) ]`, names lower-cased, quoted values unescaped.
struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    fn new(value: &'a [u8]) -> Items<'a> {
        Items { rest: value }
    }
}

impl Iterator for Items<'_> {
    type Item = (String, Option<Vec<u8>>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest.trim_ascii_start();
            if rest.is_empty() {
                return None;
            }
            let name_end = rest
                .iter()
                .position(|&byte| matches!(byte, b'=' | b',') || byte.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let name = String::from_utf8_lossy(&rest[..name_end]).to_ascii_lowercase();
            let mut after = rest[name_end..].trim_ascii_start();
            let mut argument = None;
            if let Some(value) = after.strip_prefix(b"=") {
                let value = value.trim_ascii_start();
                let (parsed, remaining) = if let Some(quoted) = value.strip_prefix(b"\"") {
                    quoted_string(quoted)
                } else {
                    let end = value
                        .iter()
                        .position(|&byte| byte == b',' || byte.is_ascii_whitespace())
                        .unwrap_or(value.len());
                    (value[..end].to_vec(), &value[end..])
                };
                argument = Some(parsed);
                after = remaining;
            }
            // Up to the next comma (anything else there is malformed and
            // skipped).
            let next = after
                .iter()
                .position(|&byte| byte == b',')
                .map_or(after.len(), |comma| comma + 1);
            self.rest = &after[next..];
            if !name.is_empty() {
                return Some((name, argument));
            }
        }
    }
}

/// A quoted-string's content (after its opening quote), unescaped, and
/// what follows its closing quote.
fn quoted_string(text: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut value = Vec::new();
    let mut index = 0;
    while index < text.len() {
        match text[index] {
            b'"' => return (value, &text[index + 1..]),
            b'\\' if index + 1 < text.len() => {
                value.push(text[index + 1]);
                index += 2;
            }
            byte => {
                value.push(byte);
                index += 1;
            }
        }
    }
    (value, &[])
}

/// An HTTP-date in any of its three forms (RFC 9110 §5.6.7), as seconds
/// since the epoch; `None` for anything else ("0" included).
pub fn http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let time = httpdate::parse_http_date(text).ok()?;
    Some(time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs())
}

/// Seconds since the epoch, now.
pub fn wall_clock() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Status codes heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// What a response's fields say for caching, read once when it arrives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub directives: Directives,
    /// `Date`, `Expires` (invalid: `Some(0)`, long expired), `Age`.
    pub date: Option<u64>,
    pub expires: Option<u64>,
    pub age: Option<u64>,
    /// The explicit lifetime (§4.2.1), if the response has one.
    pub explicit: Option<u64>,
}

impl Freshness {
    /// Reads `Cache-Control` (the `targeted` values instead when there
    /// are any), `Date`, `Expires` and `Age`. `received`: when the
    /// response arrived, standing in for a missing `Date`.
    pub fn read<'a>(
        cache_control: impl IntoIterator<Item = &'a [u8]>,
        targeted: Option<Vec<&'a [u8]>>,
        date: Option<&[u8]>,
        expires: Option<&[u8]>,
        age: Option<&[u8]>,
        received: u64,
    ) -> Freshness {
        let directives = match targeted {
            Some(values) if !values.is_empty() => Directives::parse(values),
            _ => Directives::parse(cache_control),
        };
        let date = date.and_then(http_date);
        // An invalid Expires (\"0\" above all) is already expired (§5.3).
        let expires = expires.map(|value| http_date(value).unwrap_or(0));
        // A list-valued Age: its first member; an invalid one is ignored (§5.1).
        let age = age.and_then(|value| {
            let first = value.split(|&byte| byte == b',').next()?;
            delta_seconds(first.trim_ascii()).ok()
        });
        let explicit = if directives.invalid {
            Some(0)
        } else if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
            Some(seconds)
        } else {
            expires.map(|expires| expires.saturating_sub(date.unwrap_or(received)))
        };
        Freshness {
            directives,
            date,
            expires,
            age,
            explicit,
        }
    }

    /// The freshness lifetime: the explicit one, else `heuristic` (the
    /// config's `default_ttl`, 0 for none) for a status that allows it or
    /// a `public` response (§4.2.2).
    pub fn lifetime(&self, status: u16, heuristic: u64) -> u64 {
        match self.explicit {
            Some(seconds) => seconds,
            None if heuristically_cacheable(status) || self.directives.public => heuristic,
            None => 0,
        }
    }

    /// The response's age when it arrived (§4.2.3's
    /// `corrected_initial_age`), given when the request went
    /// (`requested`) and when the response came (`received`).
    pub fn initial_age(&self, requested: u64, received: u64) -> u64 {
        let apparent = self.date.map_or(0, |date| received.saturating_sub(date));
        let delay = received.saturating_sub(requested);
        let corrected = self.age.unwrap_or(0).saturating_add(delay);
        apparent.max(corrected).min(MAX_DELTA)
    }
}

/// Why a response is not stored (`None`: it may be).
pub fn unstorable(
    request: &RequestFacts,
    status: u16,
    freshness: &Freshness,
    facts: &ResponseFacts,
    settings: &StoreSettings,
) -> Option<&'static str> {
    let directives = &freshness.directives;
    if !request.get {
        return Some("not a GET");
    }
    if !(200..=599).contains(&status) || status == 206 || status == 304 {
        return Some("a status rsp does not store");
    }
    if directives.no_store || request.directives.no_store {
        return Some("no-store");
    }
    if directives.private {
        return Some("private");
    }
    if request.authorization
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return Some("a request with Authorization");
    }
    if facts.vary_star {
        return Some("Vary: *");
    }
    let explicit = freshness.explicit.is_some() || directives.public;
    if facts.set_cookie && !(settings.store_set_cookie && freshness.explicit.is_some()) {
        return Some("Set-Cookie");
    }
    let heuristic = settings.default_ttl > 0 && heuristically_cacheable(status);
    if !explicit && !heuristic && !directives.no_cache {
        return Some("no freshness information");
    }
    None
}

/// What of a request the cache looks at.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts {
    pub get: bool,
    pub authorization: bool,
    pub directives: Directives,
}

/// What of a response head, besides its freshness, decides storing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts {
    pub set_cookie: bool,
    pub vary_star: bool,
}

/// The config's say in storing.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreSettings {
    pub default_ttl: u64,
    pub store_set_cookie: bool,
}

/// How a stored response stands for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Fresh for this request: served.
    Fresh,
    /// Stale, but `stale-while-revalidate` lets it be served while it is
    /// refreshed.
    StaleWhileRevalidate,
    /// Stale within what the client's `max-stale` accepts.
    StaleAccepted,
    /// Must be validated (or fetched) first; it may still answer if the
    /// backend fails (`stale_if_error`).
    Stale,
}

/// Whether a stored response of `lifetime` and `age` (both seconds)
/// answers a request with `request` directives (§4.2, §4.2.4, RFC 5861).
pub fn usable(stored: &Directives, lifetime: u64, age: u64, request: &Directives) -> Usable {
    let pragma_like = request.no_cache || stored.no_cache;
    let fresh_for = lifetime.saturating_sub(age);
    // `max-age=0` asks for a response validated now (a browser's
    // reload); rsp's ages are whole seconds, so it never takes a stored one.
    let limit = match request.max_age {
        Some(0) => false,
        Some(max_age) => age <= max_age,
        None => true,
    };
    let min_fresh = request.min_fresh.is_none_or(|min| fresh_for >= min);
    if !pragma_like && age < lifetime && limit && min_fresh {
        return Usable::Fresh;
    }
    if pragma_like || stored.forbids_stale() {
        return Usable::Stale;
    }
    let staleness = age.saturating_sub(lifetime);
    if let Some(max_stale) = request.max_stale
        && staleness <= max_stale
        && limit
    {
        return Usable::StaleAccepted;
    }
    if let Some(window) = stored.stale_while_revalidate
        && staleness <= window
        && request.max_age.is_none()
    {
        return Usable::StaleWhileRevalidate;
    }
    Usable::Stale
}

/// Whether a stale response may stand in for a backend that failed
/// (`stale-if-error` of the response or the request, RFC 5861 §4; or the
/// config's `serve_stale_on_error`), `staleness` seconds past its
/// lifetime.
pub fn serves_on_error(
    stored: &Directives,
    request: &Directives,
    staleness: u64,
    always: bool,
) -> bool {
    if stored.forbids_stale() {
        return false;
    }
    let window = request.stale_if_error.or(stored.stale_if_error);
    always || window.is_some_and(|window| staleness <= window)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
