use super::*;

fn directives(value: &str) -> Directives {
    Directives::parse([value.as_bytes()])
}

#[test]
fn cache_control_is_read_as_rfc_9111_says() {
    let read = directives(
        r#"Max-Age=60, s-maxage = "120", no-cache="Set-Cookie, X", private, foo=bar, public"#,
    );
    assert_eq!(read.max_age, Some(60));
    assert_eq!(
        read.s_maxage,
        Some(120),
        "quoted delta-seconds are accepted"
    );
    assert!(read.no_cache && read.private && read.public);
    assert!(!read.invalid);
    // The first of two counts; a later one does not change it.
    assert_eq!(directives("max-age=10, max-age=20").max_age, Some(10));
    // Too large is 2^31 (§1.2.2).
    assert_eq!(
        directives("max-age=99999999999999999999999").max_age,
        Some(MAX_DELTA)
    );
    // An invalid freshness value makes the response stale.
    for bad in ["max-age=abc", "max-age=-1", "max-age", "s-maxage=1.5"] {
        assert!(directives(bad).invalid, "{bad}");
    }
    assert_eq!(directives("max-stale").max_stale, Some(MAX_DELTA));
    assert_eq!(directives("max-stale=5").max_stale, Some(5));
    assert!(directives(",,, ,no-store,").no_store);
    assert_eq!(directives("").max_age, None);
    // Several field lines are one list.
    let two = Directives::parse([&b"max-age=5"[..], b"must-revalidate"]);
    assert!(two.must_revalidate && two.max_age == Some(5));
}

#[test]
fn dates_in_all_three_forms_and_invalid_expires() {
    let imf = http_date(b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(imf, Some(784111777));
    assert_eq!(http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), imf);
    assert_eq!(http_date(b"Sun Nov  6 08:49:37 1994"), imf);
    assert_eq!(http_date(b"0"), None);
    let read = Freshness::read(
        [],
        None,
        Some(b"Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(b"0"),
        None,
        784111777,
    );
    assert_eq!(read.expires, Some(0), "\"0\" is already expired");
    assert_eq!(read.explicit, Some(0));
}

/// §4.2.1: s-maxage, then max-age, then Expires − Date; then heuristics
/// for the statuses that allow them.
#[test]
fn the_freshness_lifetime() {
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    let expires = b"Sun, 06 Nov 1994 08:59:37 GMT";
    let lifetime = |cache_control: &str, expires: Option<&[u8]>, status: u16, heuristic: u64| {
        Freshness::read(
            [cache_control.as_bytes()],
            None,
            Some(date),
            expires,
            None,
            784111777,
        )
        .lifetime(status, heuristic)
    };
    assert_eq!(
        lifetime("max-age=60, s-maxage=30", Some(expires), 200, 0),
        30
    );
    assert_eq!(lifetime("max-age=60", Some(expires), 200, 0), 60);
    assert_eq!(lifetime("", Some(expires), 200, 0), 600);
    assert_eq!(lifetime("", None, 200, 300), 300, "heuristic for 200");
    assert_eq!(
        lifetime("", None, 302, 300),
        0,
        "302 is not heuristically cacheable"
    );
    assert_eq!(lifetime("public", None, 302, 300), 300, "unless public");
    assert_eq!(lifetime("max-age=x", None, 200, 300), 0, "invalid: stale");
    // Expires without Date: against the time of receipt.
    let no_date = Freshness::read([], None, None, Some(expires), None, 784111777 + 100);
    assert_eq!(no_date.explicit, Some(500));
    // A targeted field (RFC 9213) overrides Cache-Control.
    let targeted = Freshness::read(
        [&b"max-age=10"[..]],
        Some(vec![&b"max-age=3600"[..]]),
        None,
        None,
        None,
        0,
    );
    assert_eq!(targeted.explicit, Some(3600));
}

/// §4.2.3, with odd Age values.
#[test]
fn the_age_calculation() {
    let read =
        |age: Option<&[u8]>, date: Option<&[u8]>| Freshness::read([], None, date, None, age, 1000);
    let date = b"Thu, 01 Jan 1970 00:16:30 GMT"; // 990
    // apparent age 10 (received 1000, dated 990); Age 5 + delay 2 = 7.
    assert_eq!(read(Some(b"5"), Some(date)).initial_age(998, 1000), 10);
    // Age larger: it counts, plus the request's delay.
    assert_eq!(read(Some(b"100"), Some(date)).initial_age(998, 1000), 102);
    // A list: the first member; garbage is ignored; too large is 2^31.
    assert_eq!(read(Some(b"20, 40"), None).initial_age(1000, 1000), 20);
    assert_eq!(read(Some(b"-3"), None).initial_age(1000, 1000), 0);
    assert_eq!(read(Some(b"abc"), None).initial_age(1000, 1000), 0);
    assert_eq!(
        read(Some(b"99999999999999999999"), None).initial_age(1000, 1000),
        MAX_DELTA
    );
    // A Date in the future is no negative age.
    let future = b"Thu, 01 Jan 1970 01:00:00 GMT";
    assert_eq!(read(None, Some(future)).initial_age(1000, 1000), 0);
}

fn stored_or_why(
    request: RequestFacts,
    status: u16,
    cache_control: &str,
    facts: ResponseFacts,
    settings: StoreSettings,
) -> Option<&'static str> {
    let freshness = Freshness::read([cache_control.as_bytes()], None, None, None, None, 0);
    unstorable(&request, status, &freshness, &facts, &settings)
}

const GET: RequestFacts = RequestFacts {
    get: true,
    authorization: false,
    directives: Directives {
        max_age: None,
        s_maxage: None,
        no_store: false,
        no_cache: false,
        private: false,
        public: false,
        must_revalidate: false,
        proxy_revalidate: false,
        no_transform: false,
        stale_while_revalidate: None,
        stale_if_error: None,
        max_stale: None,
        min_fresh: None,
        only_if_cached: false,
        invalid: false,
    },
};

/// §3: what of a response keeps it out, one row per rule.
#[test]
fn what_of_a_response_is_stored() {
    let settings = StoreSettings::default();
    let plain = ResponseFacts::default();
    let check = |status, cache_control, facts, settings| {
        stored_or_why(GET, status, cache_control, facts, settings)
    };
    assert_eq!(check(200, "max-age=60", plain, settings), None);
    assert_eq!(
        check(200, "", plain, settings),
        Some("no freshness information")
    );
    let heuristic = StoreSettings {
        default_ttl: 60,
        ..settings
    };
    assert_eq!(check(200, "", plain, heuristic), None);
    assert_eq!(
        check(302, "", plain, heuristic),
        Some("no freshness information")
    );
    assert_eq!(
        check(206, "max-age=60", plain, settings),
        Some("a status rsp does not store")
    );
    assert_eq!(
        check(200, "max-age=60, no-store", plain, settings),
        Some("no-store")
    );
    assert_eq!(
        check(200, "max-age=60, private", plain, settings),
        Some("private")
    );
    assert_eq!(
        check(200, "max-age=60, private=\"X\"", plain, settings),
        Some("private")
    );
    let cookie = ResponseFacts {
        set_cookie: true,
        ..plain
    };
    assert_eq!(
        check(200, "max-age=60", cookie, settings),
        Some("Set-Cookie")
    );
    let stores_cookies = StoreSettings {
        store_set_cookie: true,
        ..heuristic
    };
    assert_eq!(check(200, "max-age=60", cookie, stores_cookies), None);
    assert_eq!(
        check(200, "", cookie, stores_cookies),
        Some("Set-Cookie"),
        "only an explicitly fresh one"
    );
    let vary_star = ResponseFacts {
        vary_star: true,
        ..plain
    };
    assert_eq!(
        check(200, "max-age=60", vary_star, settings),
        Some("Vary: *")
    );
}

/// §3: what of a request keeps its response out.
#[test]
fn what_of_a_request_keeps_its_response_out() {
    let settings = StoreSettings::default();
    let plain = ResponseFacts::default();
    let post = RequestFacts { get: false, ..GET };
    assert_eq!(
        stored_or_why(post, 200, "max-age=60", plain, settings),
        Some("not a GET")
    );
    let no_store = RequestFacts {
        directives: directives("no-store"),
        ..GET
    };
    assert_eq!(
        stored_or_why(no_store, 200, "max-age=60", plain, settings),
        Some("no-store")
    );
    let authorized = RequestFacts {
        authorization: true,
        ..GET
    };
    assert_eq!(
        stored_or_why(authorized, 200, "max-age=60", plain, settings),
        Some("a request with Authorization")
    );
    for allowed in [
        "max-age=60, public",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        assert_eq!(
            stored_or_why(authorized, 200, allowed, plain, settings),
            None,
            "{allowed}"
        );
    }
}

/// §4.2, §4.2.4 and RFC 5861: when a stored response answers.
#[test]
fn when_a_stored_response_answers() {
    let none = Directives::default();
    let stored = directives("max-age=60");
    assert_eq!(usable(&stored, 60, 10, &none), Usable::Fresh);
    assert_eq!(
        usable(&stored, 60, 60, &none),
        Usable::Stale,
        "age == lifetime is stale"
    );
    assert_eq!(
        usable(&stored, 60, 10, &directives("max-age=5")),
        Usable::Stale
    );
    assert_eq!(
        usable(&stored, 60, 10, &directives("min-fresh=55")),
        Usable::Stale
    );
    assert_eq!(
        usable(&stored, 60, 10, &directives("no-cache")),
        Usable::Stale
    );
    assert_eq!(
        usable(&stored, 60, 70, &directives("max-stale=20")),
        Usable::StaleAccepted
    );
    assert_eq!(
        usable(&stored, 60, 90, &directives("max-stale=20")),
        Usable::Stale
    );
    let revalidated = directives("max-age=60, must-revalidate");
    assert_eq!(
        usable(&revalidated, 60, 70, &directives("max-stale")),
        Usable::Stale
    );
    let swr = directives("max-age=60, stale-while-revalidate=30");
    assert_eq!(usable(&swr, 60, 80, &none), Usable::StaleWhileRevalidate);
    assert_eq!(usable(&swr, 60, 100, &none), Usable::Stale);
    let no_cache = directives("no-cache");
    assert_eq!(
        usable(&no_cache, 600, 0, &none),
        Usable::Stale,
        "always revalidated"
    );
    // stale-if-error: the response's window, the request's, or the setting.
    let sie = directives("max-age=60, stale-if-error=100");
    assert!(serves_on_error(&sie, &none, 50, false));
    assert!(!serves_on_error(&sie, &none, 150, false));
    assert!(serves_on_error(
        &stored,
        &directives("stale-if-error=10"),
        5,
        false
    ));
    assert!(serves_on_error(&stored, &none, 1_000_000, true));
    assert!(
        !serves_on_error(&revalidated, &none, 1, true),
        "must-revalidate forbids it"
    );
}
