//! The exchange and the cache (`cache/`): a request to a pool with
//! `cache = true` is looked up before it goes anywhere; a stored response
//! that may answer it (RFC 9111 §4) is served as the `Cache` upstream,
//! through the same client queue and body path as any answer. A miss goes
//! to the backend; its response, when §3 allows, is stored as it streams
//! to the client (`Fill`). A non-error answer to an unsafe method
//! invalidates what is stored for its target (§4.4).

use std::sync::Arc;

use crate::cache::policy::{self, Usable};
use crate::cache::{self, Entry, Fill, Now};
use crate::http::ResponseInfo;
use crate::reply::ErrorReply;
use crate::services::Services;

use super::attempt::Target;
use super::forward::Queue;
use super::{Exchange, State};

/// What the cache made of a request that went on to its backend.
#[derive(Debug)]
pub struct Lookup {
    pub key: String,
    /// A stored response too stale to answer, which may still stand in
    /// if the backend fails (`stale-if-error`, `serve_stale_on_error`).
    pub stale: Option<Arc<Entry>>,
    /// When the request went (seconds since the epoch), for the age.
    pub requested: u64,
    /// Why it went on, for `Cache-Status` (`fwd=`).
    pub forward: &'static str,
    /// The response is being stored.
    pub store: bool,
    /// The request's method is unsafe: a non-error answer invalidates.
    pub unsafe_method: bool,
    /// rsp added the stale entry's validators to the request: a 304
    /// refreshes it (§4.3).
    pub revalidating: bool,
    /// What the response's fields said of its freshness, read before the
    /// targeted fields were taken off.
    pub freshness: Option<policy::Freshness>,
    /// Other requests for the key wait for this one's answer.
    pub leader: bool,
    /// What of the request the cache looks at, read once.
    pub facts: policy::RequestFacts,
}

/// What the cache did with a request.
pub enum Consulted {
    /// A stored response answered it.
    Answered,
    /// rsp answers (`only-if-cached` with nothing stored: 504).
    Refused(ErrorReply),
    /// It goes to its backend.
    Forward,
    /// Another request is fetching the same response: this one waits
    /// for it until the deadline, then looks again (request collapsing).
    Wait(std::time::Instant),
}

impl Exchange {
    /// Before the request goes to `target`: a pool that caches answers
    /// it from the store when it may.
    pub fn consult_cache(
        &mut self,
        services: &mut Services,
        (target, waiter, collapse): (&Target, usize, bool),
        to_client: &mut Queue,
    ) -> Consulted {
        self.lookup = None;
        let Some(cache) = services.cache.as_mut() else {
            return Consulted::Forward;
        };
        let Target::Pool { pool, .. } = target else {
            return Consulted::Forward;
        };
        if !services.pools.get(*pool).is_some_and(|pool| pool.cache) {
            return Consulted::Forward;
        }
        let head = &self.request.head;
        let facts = cache::request_facts(head);
        // A pool's responses are its own: route()'s choice of pool holds.
        let unscoped = self
            .request
            .cache_key
            .clone()
            .unwrap_or_else(|| default_key(head));
        let key = cache::scoped(&services.pools[*pool].name, &unscoped);
        let now = Now::read();
        let mut lookup = Lookup {
            key,
            stale: None,
            requested: now.wall,
            forward: "miss",
            store: false,
            unsafe_method: !facts.get && !crate::exchange::attempt::is_safe(head.method()),
            revalidating: false,
            freshness: None,
            leader: false,
            facts,
        };
        if !facts.get
            || self.request.no_cache
            || head.upgrade
            || head.framing != crate::framing::Framing::Empty
        {
            lookup.forward = "bypass";
            self.lookup = Some(Box::new(lookup));
            return Consulted::Forward;
        }
        let found = cache
            .store
            .get(&lookup.key, |name| cache::combined(head, name));
        match found {
            Some(entry) => {
                let age = entry.age(now.instant);
                match policy::usable(entry.directives(), entry.lifetime, age, &facts.directives) {
                    Usable::Stale => {
                        lookup.forward = "stale";
                        lookup.stale = Some(entry);
                    }
                    _ if self.serve_hit(services, &entry, age, to_client) => {
                        return Consulted::Answered;
                    }
                    _ => {}
                }
            }
            None if facts.directives.no_cache => lookup.forward = "request",
            None => {}
        }
        if facts.directives.only_if_cached {
            return Consulted::Refused(ErrorReply::GatewayTimeout);
        }
        let Some(cache) = services.cache.as_mut() else {
            return Consulted::Forward;
        };
        if let Some(deadline) = wait_or_lead(cache, &mut lookup, (waiter, collapse), now) {
            return Consulted::Wait(deadline);
        }
        cache.counters.misses += 1;
        // Only a request that goes on to the backend is asked to validate
        // (one that waits looks again first).
        if let Some(stale) = lookup.stale.clone() {
            lookup.revalidating = self.ask_validation(&stale);
        }
        self.lookup = Some(Box::new(lookup));
        Consulted::Forward
    }

    /// Serves a hit (fresh, or stale as the request or `stale-while-
    /// revalidate` allows) and counts it.
    fn serve_hit(
        &mut self,
        services: &mut Services,
        entry: &Arc<Entry>,
        age: u64,
        to_client: &mut Queue,
    ) -> bool {
        let stale = age >= entry.lifetime;
        if let Some(cache) = services.cache.as_mut() {
            cache.counters.hits += 1;
            cache.counters.stale += u64::from(stale);
        }
        let detail = if stale { "hit; fwd=stale" } else { "hit" };
        self.serve(services, entry, age, detail, to_client)
    }

    /// A request that waited for another's fetch of its response (woken,
    /// or out of patience) looks again: answered from the store, or on to
    /// the backend itself.
    pub(super) fn look_again(
        &mut self,
        link: &mut super::Link,
        services: &mut Services,
    ) -> super::Turn {
        let State::Dialing { attempt, body, .. } = self.take_state() else {
            return super::Turn::Wait;
        };
        let target = (&attempt.target, link.waiter, false);
        match self.consult_cache(services, target, link.to_client) {
            Consulted::Answered => super::Turn::Moved,
            Consulted::Refused(reply) => super::Turn::Answer(reply, body),
            Consulted::Forward | Consulted::Wait(_) => {
                self.dial(link, services, attempt, body, true)
            }
        }
    }

    /// The requests waiting for this one's fetch look again: its answer
    /// is stored, will not be, or never came.
    pub fn release_collapsed(&mut self, services: &mut Services) {
        let Some(lookup) = self.lookup.as_deref_mut().filter(|lookup| lookup.leader) else {
            return;
        };
        lookup.leader = false;
        if let Some(cache) = services.cache.as_mut()
            && let Some(waiters) = cache.pending.remove(&lookup.key)
        {
            services.wakeups.extend(waiters);
        }
    }

    /// The stale entry that may stand in for a failed backend, and its
    /// age: when its `stale-if-error`, the request's, or
    /// `serve_stale_on_error` allows (RFC 5861 §4; RFC 9111 §4.2.4: the
    /// cache is disconnected).
    fn stale_allowed(&self, services: &Services) -> Option<(Arc<Entry>, u64)> {
        let entry = self.lookup.as_deref()?.stale.clone()?;
        let cache = services.cache.as_ref()?;
        let age = entry.age(crate::timer::now());
        let staleness = age.saturating_sub(entry.lifetime);
        let request = &self.lookup.as_deref()?.facts;
        let always = cache.config.serve_stale_on_error;
        policy::serves_on_error(entry.directives(), &request.directives, staleness, always)
            .then_some((entry, age))
    }

    /// The backend failed (no server, a failed connect or read, a
    /// timeout: rsp was about to answer 502-504): a stale entry answers
    /// instead when it may. Whether it did.
    pub fn stale_on_error(&mut self, services: &mut Services, to_client: &mut Queue) -> bool {
        let Some((entry, age)) = self.stale_allowed(services) else {
            return false;
        };
        if let Some(cache) = services.cache.as_mut() {
            cache.counters.stale += 1;
        }
        to_client.clear();
        self.serve(
            services,
            &entry,
            age,
            "hit; fwd=stale; detail=backend-error",
            to_client,
        )
    }

    /// A 5xx from the backend that a stale entry may stand in for: the
    /// backend's answer is dropped, its connection closed.
    pub(super) fn stale_for_5xx(
        &mut self,
        link: &mut super::Link,
        services: &mut Services,
    ) -> Option<super::Turn> {
        if self.response.head.status() < 500 {
            return None;
        }
        self.stale_allowed(services)?;
        let super::H1 { mut attempt, .. } = self.take_h1()?;
        attempt.release(services, crate::balancer::Outcome::ServerError);
        link.outbound.consume(link.outbound.len());
        Some(match self.stale_on_error(services, link.to_client) {
            true => super::Turn::Moved,
            false => super::Turn::Answer(ErrorReply::BadGateway, None),
        })
    }

    /// Adds `entry`'s validators to the request, unless the client sent
    /// its own conditions (its answer is then the client's, passed on):
    /// whether it did. The one change rsp makes to a request after
    /// `route()` saw it, and only for its own revalidation (README).
    fn ask_validation(&mut self, entry: &Entry) -> bool {
        let head = &mut self.request.head;
        let conditional = [
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
            "if-range",
            "range",
        ]
        .iter()
        .any(|name| head.header(name).is_some());
        if conditional {
            return false;
        }
        let mut asked = false;
        if let Some(etag) = entry.field(b"etag") {
            asked |= head.add_header(b"If-None-Match", etag).is_ok();
        }
        if let Some(modified) = entry.field(b"last-modified") {
            asked |= head.add_header(b"If-Modified-Since", modified).is_ok();
        }
        asked
    }

    /// The backend's 304 to rsp's own revalidation: the stored response,
    /// its fields updated by the 304's (RFC 9111 §4.3.4), is fresh again
    /// and answers the client; the backend's connection is kept.
    pub(super) fn revalidated(
        &mut self,
        link: &mut super::Link,
        services: &mut Services,
        length: usize,
    ) -> Option<super::Turn> {
        let lookup = self.lookup.as_deref()?;
        if !lookup.revalidating || self.response.head.status() != 304 {
            return None;
        }
        let stale = lookup.stale.clone()?;
        let key = lookup.key.clone();
        let requested = lookup.requested;
        let cache = services.cache.as_mut()?;
        let fields = updated_fields(cache, &stale, &self.response.head);
        let mut refreshed = crate::http::ResponseHead::default();
        refreshed.stored(
            stale.status,
            fields.iter().map(|(name, value)| (&**name, &**value)),
        );
        let received = policy::wall_clock();
        let freshness = cache.freshness(&refreshed, received);
        let entry = Entry {
            status: stale.status,
            lifetime: stale
                .ttl
                .unwrap_or_else(|| freshness.lifetime(stale.status, cache.config.default_ttl)),
            ttl: stale.ttl,
            initial_age: freshness.initial_age(requested, received),
            freshness,
            fields,
            body: Arc::clone(&stale.body),
            stored_at: crate::timer::now(),
            vary: stale.vary.clone(),
        };
        cache.counters.revalidations += 1;
        let entry = cache.store.insert(&key, entry)?;
        link.outbound.consume(length);
        self.release_revalidated(link, services);
        let age = entry.age(crate::timer::now());
        let served = self.serve(
            services,
            &entry,
            age,
            "hit; fwd=stale; fwd-status=304",
            link.to_client,
        );
        Some(match served {
            true => super::Turn::Moved,
            false => super::Turn::Answer(ErrorReply::BadGateway, None),
        })
    }

    /// The backend answered the revalidation: its lease goes back, and
    /// its connection is kept when the 304 left it fit for another.
    fn release_revalidated(&mut self, link: &super::Link, services: &mut Services) {
        let closes = self
            .response
            .head
            .header(b"connection")
            .is_some_and(|value| {
                value
                    .split(|&byte| byte == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
            });
        let Some(super::H1 {
            mut backend,
            mut attempt,
            request,
            ..
        }) = self.take_h1()
        else {
            return;
        };
        let keeps = !closes
            && link.outbound.is_empty()
            && request.body.is_none()
            && self.to_backend.is_empty()
            && !services.draining
            && backend.is_reusable();
        attempt.release(services, crate::balancer::Outcome::Ok);
        if keeps {
            super::response::keep(services, backend);
        }
    }

    /// The final response head, as the client will get it (after
    /// `respond()`): whether it is stored (then `took_final_head` starts
    /// its fill), `Cache-Status` said, targeted fields taken off.
    pub(super) fn cache_response_head(&mut self, services: &mut Services) {
        let Some(lookup) = self.lookup.as_deref_mut() else {
            return;
        };
        let Some(cache) = services.cache.as_mut() else {
            return;
        };
        let head = &mut self.response.head;
        let status = head.status();
        if lookup.unsafe_method {
            if (200..400).contains(&status) {
                // Every worker's cache, every pool's: a purge of the keys.
                let keys = invalidated(&self.request.head, head);
                services.commands.extend(
                    keys.into_iter()
                        .map(|key| crate::workers::Command::PurgeCache { key, prefix: false }),
                );
            }
            return;
        }
        let received = policy::wall_clock();
        let freshness = cache.freshness(head, received);
        let facts = lookup.facts;
        let refused = if self.request.head.is_head() || lookup.forward == "bypass" {
            Some("not stored")
        } else {
            policy::unstorable(
                &facts,
                status,
                &freshness,
                &cache::response_facts(head),
                &cache.settings(),
            )
            // res.ttl stands for the lifetime the fields lack; every
            // other rule still keeps the response out.
            .filter(|why| !(self.response.ttl.is_some() && *why == "no freshness information"))
        };
        lookup.store = refused.is_none();
        lookup.freshness = Some(freshness);
        let release = !lookup.store;
        if !cache.config.forward_targeted {
            for name in &cache.config.targeted {
                let _ = head.del_header(name.as_bytes());
            }
        }
        if cache.config.status_header {
            let stored = if lookup.store { "; stored" } else { "" };
            let value = format!("rsp; fwd={}; fwd-status={status}{stored}", lookup.forward);
            let _ = head.add_header(b"Cache-Status", value.as_bytes());
        }
        if release {
            // Not stored: those waiting for it go to the backend now.
            self.release_collapsed(services);
        }
    }

    /// The fill of a response `cache_response_head` chose to store.
    pub(super) fn start_fill(&self, services: &Services, info: &ResponseInfo) -> Option<Box<Fill>> {
        let lookup = self.lookup.as_deref().filter(|lookup| lookup.store)?;
        let cache = services.cache.as_ref()?;
        if let crate::framing::Framing::Length(length) = info.framing
            && length > cache.config.max_object as u64
        {
            return None;
        }
        let head = &self.response.head;
        let received = policy::wall_clock();
        let freshness = lookup
            .freshness
            .unwrap_or_else(|| cache.freshness(head, received));
        let lifetime = match self.response.ttl {
            Some(ttl) => ttl,
            None => freshness.lifetime(head.status(), cache.config.default_ttl),
        };
        // Neither hop-by-hop fields nor those its Connection names (§3.1).
        let options = crate::http::connection_options(head.fields());
        let fields = head
            .fields()
            .filter(|(name, _)| {
                !crate::http::is_hop_by_hop(name, options.clone())
                    && !cache::never_stored(name)
                    && !cache.is_targeted(name)
                    && !name.eq_ignore_ascii_case(b"age")
                    && !name.eq_ignore_ascii_case(b"cache-status")
            })
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        let request = &self.request.head;
        let vary = cache::vary_names(head)
            .into_iter()
            .map(|name| {
                let value = cache::combined(request, &name).map(Vec::into_boxed_slice);
                (name.into_boxed_slice(), value)
            })
            .collect();
        let entry = Entry {
            status: head.status(),
            fields,
            body: Arc::from(&[][..]),
            freshness,
            lifetime,
            initial_age: freshness.initial_age(lookup.requested, received),
            stored_at: crate::timer::now(),
            vary,
            ttl: self.response.ttl,
        };
        let fill = Fill::new(lookup.key.clone(), entry, &info.framing, cache);
        Some(Box::new(fill))
    }
}

/// A miss of a key another request is fetching waits for it (its
/// deadline), unless it may not (`collapse`: it waited once already) or
/// too many do; the first miss of a key leads, the others wait for it.
fn wait_or_lead(
    cache: &mut cache::Cache,
    lookup: &mut Lookup,
    (waiter, collapse): (usize, bool),
    now: Now,
) -> Option<std::time::Instant> {
    match cache.pending.get_mut(&lookup.key) {
        Some(waiters) if collapse && waiters.len() < cache::MAX_WAITERS => {
            waiters.push(waiter);
            cache.counters.collapsed += 1;
            Some(now.instant + cache.config.lock_timeout)
        }
        None if collapse => {
            cache.pending.insert(lookup.key.clone(), Vec::new());
            lookup.leader = true;
            None
        }
        _ => None,
    }
}

/// A stored response's fields updated by a 304 (RFC 9111 §4.3.4): the
/// 304's replace those of the same name; hop-by-hop fields, those its
/// Connection names, targeted ones and `Age` are not kept.
fn updated_fields(
    cache: &cache::Cache,
    stale: &Entry,
    update: &crate::http::ResponseHead,
) -> Vec<cache::store::StoredField> {
    let options = crate::http::connection_options(update.fields());
    let kept = |name: &[u8]| {
        !crate::http::is_hop_by_hop(name, options.clone())
            && !cache::never_stored(name)
            && !cache.is_targeted(name)
            && !name.eq_ignore_ascii_case(b"age")
            && !name.eq_ignore_ascii_case(b"cache-status")
    };
    let mut fields: Vec<cache::store::StoredField> = stale
        .fields
        .iter()
        .filter(|(name, _)| update.header(name).is_none())
        .cloned()
        .collect();
    // An entry rsp encoded keeps what encoding made of it: a weak ETag,
    // and a Vary that names Accept-Encoding.
    let encoded = stale.field(b"content-encoding").is_some();
    let weak = stale
        .field(b"etag")
        .is_some_and(|etag| etag.starts_with(b"W/"));
    fields.extend(
        update
            .fields()
            .filter(|(name, _)| kept(name))
            .map(|(name, value)| {
                let strong = name.eq_ignore_ascii_case(b"etag") && !value.starts_with(b"W/");
                let value: Box<[u8]> = match encoded && weak && strong {
                    true => [b"W/", value].concat().into(),
                    false => value.into(),
                };
                (name.into(), value)
            }),
    );
    let varies = |fields: &[cache::store::StoredField]| {
        fields.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(b"vary")
                && value
                    .split(|&byte| byte == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
        })
    };
    if encoded && varies(&stale.fields) && !varies(&fields) {
        fields.push((b"Vary"[..].into(), b"Accept-Encoding"[..].into()));
    }
    fields
}

/// Stores a fill whose body is complete.
pub fn finish_fill(services: &mut Services, fill: Box<Fill>) {
    let Some(cache) = services.cache.as_mut() else {
        return;
    };
    if let Some((key, entry)) = fill.finish()
        && cache.store.insert(&key, entry).is_some()
    {
        cache.counters.stored += 1;
    }
}

/// The key a request is stored under unless `route()` chose one: its
/// host and target (GET and HEAD share it).
pub fn default_key(head: &crate::http::RequestHead) -> String {
    let mut key = String::with_capacity(head.host().len() + head.target().len());
    key.push_str(&head.host().to_ascii_lowercase());
    key.push_str(head.target());
    key
}

/// Removes what is stored for an unsafe request's target and for the
/// same-origin `Location` and `Content-Location` of its answer (RFC 9111
/// §4.4): the keys, as a purge names them.
fn invalidated(
    request: &crate::http::RequestHead,
    response: &crate::http::ResponseHead,
) -> Vec<String> {
    let host = request.host().to_ascii_lowercase();
    let mut keys = vec![default_key(request)];
    for name in [&b"location"[..], b"content-location"] {
        let Some(value) = response.header(name) else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let path = match value.split_once("://") {
            Some((_, rest)) => {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                if !authority.eq_ignore_ascii_case(&host) {
                    continue;
                }
                path
            }
            None if value.starts_with('/') => value,
            None => continue,
        };
        keys.push(format!("{host}{path}"));
    }
    keys
}
