//! Every answer rsp writes itself: the error catalogue and Lua's local
//! replies, each a complete HTTP/1.1 response with a Content-Length, but
//! for those that never have a body (1xx, 204, 304, answers to HEAD),
//! which carry neither a body nor a Content-Length.

use crate::message::{Out, decimal};

/// How a reply is written: what the request asked and what to add.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape<'a> {
    pub keep_alive: bool,
    /// A HEAD request: only the head is sent.
    pub head_only: bool,
    pub request_id: Option<&'a str>,
}

/// An answer from rsp itself instead of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answers rsp gives when it cannot forward a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    BadRequest,
    RequestTimeout,
    BodyTooLarge,
    HeadTooLarge,
    ScriptFailed,
    /// CONNECT: rsp is no forward proxy.
    NotImplemented,
    BadGateway,
    /// A backend's 101 switched to nothing the request offered.
    BadSwitch,
    NoRoute,
    /// The worker is at its memory ceiling: no new request is taken.
    Overloaded,
    GatewayTimeout,
    /// `route()` named rsp's own listener (RFC 5842's 508).
    LoopDetected,
}

impl ErrorReply {
    pub fn status(self) -> u16 {
        match self {
            ErrorReply::BadRequest => 400,
            ErrorReply::RequestTimeout => 408,
            ErrorReply::BodyTooLarge => 413,
            ErrorReply::HeadTooLarge => 431,
            ErrorReply::ScriptFailed => 500,
            ErrorReply::NotImplemented => 501,
            ErrorReply::BadGateway | ErrorReply::BadSwitch => 502,
            ErrorReply::NoRoute | ErrorReply::Overloaded => 503,
            ErrorReply::GatewayTimeout => 504,
            ErrorReply::LoopDetected => 508,
        }
    }

    /// The client connection cannot be trusted to frame another request.
    pub fn must_close(self) -> bool {
        matches!(
            self,
            ErrorReply::BadRequest
                | ErrorReply::RequestTimeout
                | ErrorReply::BodyTooLarge
                | ErrorReply::HeadTooLarge
                | ErrorReply::NotImplemented
                | ErrorReply::BadSwitch
        )
    }

    pub fn body(self) -> &'static str {
        match self {
            ErrorReply::BadRequest => "rsp: the request could not be parsed.\n",
            ErrorReply::HeadTooLarge => "rsp: the request head is too large.\n",
            ErrorReply::ScriptFailed => "rsp: the routing script failed.\n",
            ErrorReply::NotImplemented => "rsp: CONNECT is not supported.\n",
            ErrorReply::BadGateway | ErrorReply::BadSwitch => {
                "rsp: the backend could not be reached or sent an invalid response.\n"
            }
            ErrorReply::NoRoute => "rsp: no backend is available for this request.\n",
            ErrorReply::Overloaded => {
                "rsp: too busy to take this request now; try again shortly.\n"
            }
            ErrorReply::RequestTimeout => "rsp: the request head did not arrive in time.\n",
            ErrorReply::BodyTooLarge => "rsp: the request body is too large.\n",
            ErrorReply::GatewayTimeout => "rsp: the backend did not answer in time.\n",
            ErrorReply::LoopDetected => "rsp: the request was routed back to rsp itself.\n",
        }
    }

    /// The answer as a reply `respond()` may restyle.
    pub fn local(self) -> LocalReply {
        LocalReply {
            status: self.status(),
            headers: vec![(
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            body: self.body().as_bytes().to_vec(),
        }
    }

    pub fn body_length(self) -> usize {
        self.body().len()
    }

    /// Writes the head; whether the body follows it.
    pub fn write_head(self, out: Out, shape: Shape) -> bool {
        write_head(
            out,
            self.status(),
            [("Content-Type", "text/plain; charset=utf-8")].into_iter(),
            self.body().len(),
            shape,
        )
    }
}

impl LocalReply {
    /// Writes the head; whether the body follows it.
    pub fn write_head(&self, out: Out, mut shape: Shape) -> bool {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        if self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        {
            shape.request_id = None;
        }
        write_head(out, self.status, headers, self.body.len(), shape)
    }
}

/// Writes a response head for a body of `length` bytes; whether the body
/// follows it (not for a HEAD request, nor a status without one).
fn write_head<'a>(
    out: Out,
    status: u16,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    length: usize,
    shape: Shape,
) -> bool {
    let mut out = out.response(status, reason(status));
    for (name, value) in headers {
        out.field(name.as_bytes(), value.as_bytes());
    }
    if let Some(id) = shape.request_id {
        out.field(b"X-Request-Id", id.as_bytes());
    }
    let bodiless = shape.head_only || is_bodiless(status);
    if !bodiless {
        let mut digits = [0; 20];
        out.field(b"Content-Length", decimal(length as u64, &mut digits));
    }
    out.connection(if shape.keep_alive {
        b"keep-alive"
    } else {
        b"close"
    });
    out.end(false);
    !bodiless
}

/// Statuses whose responses never have a body (RFC 9110 §6.4.1).
pub fn is_bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::message::Wire;

    fn write(head: impl FnOnce(Out) -> bool, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let wire = Wire::Http1;
        if head(Out {
            wire,
            bytes: &mut out,
        }) {
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn error_replies_are_complete_responses() {
        let error = ErrorReply::HeadTooLarge;
        let shape = Shape {
            request_id: Some("id-1"),
            ..Shape::default()
        };
        let out = write(|out| error.write_head(out, shape), error.body().as_bytes());
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\nX-Request-Id: id-1\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.ends_with("Connection: close"));
    }

    #[test]
    fn local_reply_carries_its_headers() {
        let reply = LocalReply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"pong\n".to_vec(),
        };
        let keep_alive = Shape {
            keep_alive: true,
            ..Shape::default()
        };
        let out = write(|out| reply.write_head(out, keep_alive), &reply.body);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\npong\n"
        );
        // A script that sets its own id is not contradicted.
        let reply = LocalReply {
            headers: vec![("X-Request-Id".into(), "from-lua".into())],
            ..reply
        };
        let shape = Shape {
            request_id: Some("other"),
            head_only: true,
            ..keep_alive
        };
        let out = write(|out| reply.write_head(out, shape), &reply.body);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("X-Request-Id").count(), 1, "{text}");
        // The answer to HEAD: neither the body nor its length.
        assert!(
            text.ends_with("X-Request-Id: from-lua\r\nConnection: keep-alive\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn bodiless_statuses_carry_no_length() {
        for status in [204, 304] {
            let reply = LocalReply {
                status,
                headers: Vec::new(),
                body: b"ignored".to_vec(),
            };
            let out = write(|out| reply.write_head(out, Shape::default()), &reply.body);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"), "{text}");
        }
    }
}
