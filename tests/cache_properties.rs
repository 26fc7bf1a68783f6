//! A property of the cache, through the binary: for generated sequences
//! of origin answers and requests, nothing is served from the store that
//! RFC 9111 forbids: a response that was `private` or `no-store`, had no
//! freshness, is stale (`max-age=0`), answered another variant (`Vary`),
//! or that a request asked to bypass (`no-cache`, `max-age=0`); and what
//! is served is the latest stored answer of its variant.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::origin::Origin;
use common::*;
use proptest::prelude::*;

/// What the origin answers at one step.
#[derive(Debug, Clone)]
struct Answer {
    cache_control: Option<&'static str>,
    vary: bool,
}

/// What the client asks at one step.
#[derive(Debug, Clone)]
struct Ask {
    variant: Option<&'static str>,
    cache_control: Option<&'static str>,
}

fn answer() -> impl Strategy<Value = Answer> {
    let cache_control = prop_oneof![
        Just(Some("max-age=60")),
        Just(Some("max-age=60, private")),
        Just(Some("max-age=60, no-store")),
        Just(Some("max-age=0")),
        Just(Some("s-maxage=60, max-age=0")),
        Just(Some("no-cache")),
        Just(None),
    ];
    (cache_control, any::<bool>()).prop_map(|(cache_control, vary)| Answer {
        cache_control,
        vary,
    })
}

fn ask() -> impl Strategy<Value = Ask> {
    let variant = prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))];
    let cache_control = prop_oneof![
        4 => Just(None),
        1 => Just(Some("no-cache")),
        1 => Just(Some("max-age=0")),
    ];
    (variant, cache_control).prop_map(|(variant, cache_control)| Ask {
        variant,
        cache_control,
    })
}

/// Whether an answer may be stored and then serve a later request.
fn storable(answer: &Answer) -> bool {
    matches!(
        answer.cache_control,
        Some("max-age=60") | Some("s-maxage=60, max-age=0")
    )
}

struct Harness {
    origin: Origin,
    proxy: Proxy,
    next: AtomicUsize,
}

impl Harness {
    /// One origin and one rsp for every case (each its own path); both
    /// end with the test.
    fn start() -> Harness {
        let origin = Origin::start();
        let proxy = Proxy::start(&format!(
            r#"workers = 1
cache = {{ }}
pools = {{ web = {{ servers = {{ "{}" }}, cache = true }} }}
function route(req) return "web" end"#,
            origin.address
        ));
        Harness {
            origin,
            proxy,
            next: AtomicUsize::new(0),
        }
    }
}

#[test]
fn nothing_forbidden_is_served_from_the_store() {
    let harness = Harness::start();
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let steps = prop::collection::vec((answer(), ask()), 1..8);
    let result = runner.run(&steps, |steps| check(&harness, &steps));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// One generated case: its steps, each an origin answer and a request.
fn check(harness: &Harness, steps: &[(Answer, Ask)]) -> Result<(), TestCaseError> {
    let path = format!("/case/{}", harness.next.fetch_add(1, Ordering::Relaxed));
    // Per variant (the X-V value a Vary answer selected, `None` for an
    // answer without Vary): the body of the latest answer stored.
    let mut stored: Vec<(Option<Option<&str>>, String)> = Vec::new();
    for (index, (answer, ask)) in steps.iter().enumerate() {
        let body = format!("version {index}");
        let mut fields = Vec::new();
        if let Some(cache_control) = answer.cache_control {
            fields.push(("Cache-Control", cache_control));
        }
        if answer.vary {
            fields.push(("Vary", "X-V"));
        }
        harness.origin.set(&path, 200, &fields, &body);
        let mut request = String::new();
        if let Some(variant) = ask.variant {
            request.push_str(&format!("X-V: {variant}\r\n"));
        }
        if let Some(cache_control) = ask.cache_control {
            request.push_str(&format!("Cache-Control: {cache_control}\r\n"));
        }
        let before = harness.origin.hits(&path);
        let response = harness.proxy.get_raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: p.example\r\n{request}Connection: close\r\n\r\n"
        ));
        prop_assert_eq!(response.status, 200);
        let from_store = harness.origin.hits(&path) == before;
        if from_store {
            prop_assert!(
                ask.cache_control.is_none(),
                "served from the store to {:?}",
                ask
            );
            // The entry that answers: the one of this request's
            // variant, or the one stored without Vary.
            let entry = stored
                .iter()
                .rev()
                .find(|(selected, _)| selected.is_none_or(|value| value == ask.variant));
            let Some((_, expected)) = entry else {
                return Err(TestCaseError::fail(format!(
                    "{} served from the store with nothing storable for {:?}",
                    response.text(),
                    ask
                )));
            };
            prop_assert_eq!(&response.text(), expected);
        } else {
            prop_assert_eq!(response.text(), body.clone());
            if storable(answer) {
                let selected = answer.vary.then_some(ask.variant);
                // A new answer replaces what its variant held; an answer
                // without Vary stands beside the varied ones.
                stored.retain(|(other, _)| *other != selected);
                stored.push((selected, body));
            }
        }
    }
    Ok(())
}
