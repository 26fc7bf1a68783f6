//! rsp: a reverse proxy and HTTP load balancer scripted in Lua.
//!
//! The path of a request: `worker` accepts, a `session` reads the request
//! head (`http`), asks `router` (Lua `route(req)`), `balancer` picks a
//! server, and bytes flow through `buffer`s framed by `framing`.

pub mod access_log;
pub mod admin;
pub mod balancer;
pub mod buffer;
pub mod cache;
pub mod client;
pub mod compress;
pub mod config;
pub mod exchange;
pub mod forwarding;
pub mod framing;
pub mod h2;
pub mod health;
pub mod hook;
pub mod host;
pub mod hpack;
pub mod http;
pub mod idle;
pub mod limits;
pub mod logging;
pub mod map_file;
pub mod memory;
pub mod message;
pub mod own;
pub mod proxy_protocol;
pub mod redis;
pub mod reply;
pub mod request_id;
pub mod router;
pub mod services;
pub mod session;
pub mod state;
pub mod stats;
pub mod target;
pub mod timer;
pub mod tls;
pub mod token;
pub mod transaction;
pub mod transport;
pub mod worker;
pub mod workers;
