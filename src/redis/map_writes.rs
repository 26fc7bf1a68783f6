//! What rsp writes to a shared map's hash: an admin change (one script
//! that changes the hash, counts its version and publishes the change)
//! and a copy stored back into a Redis that lost it. The names of the
//! keys and the channel are here too (README, "Live maps shared through
//! Redis").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::RedisConfig;
use crate::state::{LiveMap, MapChange, Waiting};

use super::Purpose;
use super::pipeline::{Full, MAX_UNSENT, Pipeline};

/// `PUT`: sets a field unless that would take the hash past `max_keys`.
const PUT_SCRIPT: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"#;

/// `DELETE`: removes a field, if there.
const DELETE_SCRIPT: &str = r#"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then
  redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return removed
"#;

/// `POST`: the whole hash, replaced (`ARGV[3..]`: field, value, ...).
const REPLACE_SCRIPT: &str = r#"
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"#;

/// Stores a map back when Redis has neither the hash nor its version;
/// replies `{stored, fields now}`.
const SEED_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return {0, redis.call('HLEN', KEYS[1])}
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {1, redis.call('HLEN', KEYS[1])}
"#;

/// Queues an admin change; gives it back when the queue is full.
pub fn store(
    config: &RedisConfig,
    commands: &mut Pipeline<Purpose>,
    waiting: Waiting,
    now: Instant,
) -> Result<(), Waiting> {
    let name = waiting.store.map.name.clone();
    let channel = channel(config);
    let max_keys = waiting.store.map.max_keys.to_string();
    let mut args: Vec<Vec<u8>> = Vec::new();
    let script = match &waiting.store.change {
        MapChange::Put { key, value } => {
            let message = format!("{name} {key}");
            let parts = [key, value, &max_keys, &channel, &message];
            args.extend(parts.map(|arg| arg.as_bytes().to_vec()));
            PUT_SCRIPT
        }
        MapChange::Delete { key } => {
            let message = format!("{name} {key}");
            let parts = [key, &channel, &message];
            args.extend(parts.map(|arg| arg.as_bytes().to_vec()));
            DELETE_SCRIPT
        }
        MapChange::Replace(entries) => {
            args.extend([channel.into_bytes(), name.as_bytes().to_vec()]);
            pairs(&mut args, entries);
            REPLACE_SCRIPT
        }
    };
    let keys = [&hash(config, &name), &version(config, &name)];
    let purpose = Purpose::MapStore(Box::new(waiting));
    match eval(commands, script, keys, &args, purpose, now) {
        Err(Full(Purpose::MapStore(waiting))) => Err(*waiting),
        _ => Ok(()),
    }
}

/// Stores `map`'s keys back into a Redis that lost them, unless another
/// instance did first; one command, so a map too large for the queue is
/// only served from here. Whether it was queued.
pub fn seed(
    config: &RedisConfig,
    commands: &mut Pipeline<Purpose>,
    map: &Arc<LiveMap>,
    now: Instant,
) -> bool {
    let name = &map.name;
    let mut args = vec![channel(config).into_bytes(), name.as_bytes().to_vec()];
    pairs(&mut args, &map.all());
    let size: usize = args.iter().map(|arg| arg.len() + 16).sum();
    if size + SEED_SCRIPT.len() + 256 > MAX_UNSENT {
        log::warn!(
            "map {name}: {size} bytes, too large to store back in one command; served from here only"
        );
        return false;
    }
    let keys = [&hash(config, name), &version(config, name)];
    let purpose = Purpose::MapSeed {
        map: Arc::clone(map),
    };
    eval(commands, SEED_SCRIPT, keys, &args, purpose, now).is_ok()
}

/// Queues `EVAL script 2 KEYS... ARGS...`.
fn eval(
    commands: &mut Pipeline<Purpose>,
    script: &str,
    keys: [&String; 2],
    args: &[Vec<u8>],
    purpose: Purpose,
    now: Instant,
) -> Result<(), Full<Purpose>> {
    let mut command: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), b"2"];
    command.extend(keys.map(String::as_bytes));
    command.extend(args.iter().map(Vec::as_slice));
    commands.push(purpose, &command, now)
}

/// `entries` as field, value arguments.
fn pairs(args: &mut Vec<Vec<u8>>, entries: &BTreeMap<String, String>) {
    for (key, value) in entries {
        args.push(key.as_bytes().to_vec());
        args.push(value.as_bytes().to_vec());
    }
}

/// The hash that holds map `name`.
pub fn hash(config: &RedisConfig, name: &str) -> String {
    format!("{}map:{name}", config.prefix)
}

/// The counter that says map `name` was stored (even if empty now).
pub fn version(config: &RedisConfig, name: &str) -> String {
    format!("{}map:{name}:version", config.prefix)
}

/// The channel the maps' changes are published on.
pub fn channel(config: &RedisConfig) -> String {
    format!("{}maps", config.prefix)
}
