//! The tests of `upstream.rs`.

use super::*;

#[test]
fn the_retry_policy() {
    let pooled = Attempt::new(Target::Pool { pool: 0, key: None });
    let direct = Attempt::new(Target::Address("127.0.0.1:1".parse().unwrap()));
    let cases = [
        (&pooled, Failure::Connect, false, Next::OtherServer),
        (
            &direct,
            Failure::Connect,
            true,
            Next::Answer(ErrorReply::BadGateway),
        ),
        (
            &pooled,
            Failure::KeptConnectionClosed,
            true,
            Next::Reconnect,
        ),
        (
            &direct,
            Failure::KeptConnectionClosed,
            true,
            Next::Reconnect,
        ),
        (&pooled, Failure::NoResponse, true, Next::OtherServer),
        (
            &pooled,
            Failure::NoResponse,
            false,
            Next::Answer(ErrorReply::BadGateway),
        ),
        (
            &direct,
            Failure::NoResponse,
            true,
            Next::Answer(ErrorReply::BadGateway),
        ),
        (
            &pooled,
            Failure::Timeout,
            true,
            Next::Answer(ErrorReply::GatewayTimeout),
        ),
        (&pooled, Failure::MidResponse, true, Next::Abort),
    ];
    let resends = Resends {
        reset: true,
        timeout: false,
        left: true,
    };
    for (attempt, failure, replayable, next) in cases {
        assert_eq!(
            attempt.on_failure(failure, replayable, resends),
            next,
            "{failure:?} {replayable}"
        );
    }
}

/// `retry_on` and `retries` decide after a broken or late answer; a
/// failed connect sent nothing, and always goes to another server.
#[test]
fn retry_on_and_retries_decide_after_an_answer() {
    let pooled = Attempt::new(Target::Pool { pool: 0, key: None });
    let resends = Resends {
        reset: true,
        timeout: false,
        left: true,
    };
    let timeout = Resends {
        timeout: true,
        ..resends
    };
    assert_eq!(
        pooled.on_failure(Failure::Timeout, true, timeout),
        Next::OtherServer
    );
    assert_eq!(
        pooled.on_failure(Failure::Timeout, false, timeout),
        Next::Answer(ErrorReply::GatewayTimeout)
    );
    let used_up = Resends {
        left: false,
        ..timeout
    };
    for failure in [Failure::Timeout, Failure::NoResponse] {
        assert!(matches!(
            pooled.on_failure(failure, true, used_up),
            Next::Answer(_)
        ));
    }
    let no_reset = Resends {
        reset: false,
        ..resends
    };
    assert_eq!(
        pooled.on_failure(Failure::NoResponse, true, no_reset),
        Next::Answer(ErrorReply::BadGateway)
    );
    // A failed connect sent nothing: always another server.
    assert_eq!(
        pooled.on_failure(Failure::Connect, false, used_up),
        Next::OtherServer
    );
    assert_eq!(Failure::Connect.outcome(), Outcome::ConnectFailed);
    assert_eq!(Failure::KeptConnectionClosed.outcome(), Outcome::Ok);
    assert_eq!(Failure::Timeout.outcome(), Outcome::Failed);
}

#[test]
fn idempotent_methods() {
    for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
        assert!(is_idempotent(method));
    }
    for method in ["POST", "PATCH", "CONNECT", "get"] {
        assert!(!is_idempotent(method));
    }
}
