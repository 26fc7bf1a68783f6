//! An origin server whose answers the test scripts, path by path (status,
//! fields, body, chunked or not), and which counts the requests it got:
//! for the cache's tests, where what is stored depends on the fields.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;

use super::read_head;

#[derive(Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
    /// How long the origin takes before it answers.
    pub delay: std::time::Duration,
}

#[derive(Default)]
struct State {
    /// Closes every connection without an answer (a dead server).
    down: bool,
    answers: HashMap<String, Answer>,
    /// The heads received, in order.
    heads: Vec<String>,
}

pub struct Origin {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    while let Some(head) = read_head(&mut reader) {
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        let answer = {
                            let mut state = state.lock().unwrap();
                            if state.down {
                                return;
                            }
                            state.heads.push(head.clone());
                            state.answers.get(&path).cloned()
                        };
                        let answer = answer.unwrap_or_else(|| Answer {
                            status: 404,
                            fields: vec![("Cache-Control".into(), "no-store".into())],
                            body: b"no answer set\n".to_vec(),
                            ..Answer::default()
                        });
                        thread::sleep(answer.delay);
                        let head_request = head.starts_with("HEAD ");
                        // A request whose If-None-Match names the answer's
                        // ETag gets 304 with the answer's fields.
                        let etag = answer
                            .fields
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case("etag"))
                            .map(|(_, value)| value.clone());
                        let matched = etag.is_some_and(|etag| {
                            head.lines().any(|line| {
                                line.to_ascii_lowercase().starts_with("if-none-match:")
                                    && line.contains(&etag)
                            })
                        });
                        let answer = match matched {
                            true => Answer {
                                status: 304,
                                body: Vec::new(),
                                chunked: false,
                                ..answer
                            },
                            false => answer,
                        };
                        if writer.write_all(&answer.bytes(head_request)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Origin { address, state }
    }

    /// What `path` answers from now on.
    pub fn set(&self, path: &str, status: u16, fields: &[(&str, &str)], body: &str) {
        self.set_answer(
            path,
            Answer {
                status,
                fields: fields
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect(),
                body: body.as_bytes().to_vec(),
                ..Answer::default()
            },
        );
    }

    pub fn set_answer(&self, path: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(path.to_owned(), answer);
    }

    /// Down: every request's connection is closed unanswered.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .heads
            .iter()
            .filter(|head| head.split(' ').nth(1) == Some(path))
            .count()
    }

    /// The heads of the requests for `path`.
    pub fn heads(&self, path: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .heads
            .iter()
            .filter(|head| head.split(' ').nth(1) == Some(path))
            .cloned()
            .collect()
    }
}

impl Answer {
    fn bytes(&self, head_request: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} Answer\r\n", self.status).into_bytes();
        for (name, value) in &self.fields {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let bodiless = self.status == 204 || self.status == 304;
        if self.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if !head_request {
                for chunk in self.body.chunks(1000) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            return out;
        }
        if !bodiless {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_request && !bodiless {
            out.extend_from_slice(&self.body);
        }
        out
    }
}
