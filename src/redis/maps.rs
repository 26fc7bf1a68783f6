//! Live maps shared through Redis (`maps = { apps = { shared = true } }`).
//! A map's content is the hash `PREFIX` `map:NAME`; whoever changes it
//! publishes `NAME KEY` (one key) or `NAME` (any part of it) on the
//! channel `PREFIX` `maps`. Every instance subscribes (a second
//! connection: a subscribed RESP2 connection takes no other command),
//! reads the key again (`HGET`) or the whole hash (`HSCAN`, a bounded
//! reply at a time) and applies it to its map and the map's file, which
//! keeps the last content for a start without Redis. At start and after
//! either connection failed, every map is read whole, so a message missed
//! costs at most one reconnect.
//!
//! An admin change goes to Redis first, as one script that changes the
//! hash, counts a version (`map:NAME:version`: the hash was stored, even
//! if it is empty now) and publishes; it is answered once Redis replied,
//! 503 when Redis cannot be reached. A whole read that finds neither the
//! hash nor its version while this instance holds keys means Redis lost
//! them (restarted empty): the instance keeps serving what it holds, says
//! so, and stores it back unless another instance did first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::Registry;

use crate::config::RedisConfig;
use crate::map_file::check_entry;
use crate::state::{LiveMap, MapChange, Settled, Waiting};
use crate::token::TokenKind;

use super::connection::Connection;
use super::pipeline::{MAX_UNSENT, Pipeline};
use super::resp::Reply;
use super::{Purpose, stats};

/// Fields one `HSCAN` asks for.
const SCAN_COUNT: &[u8] = b"512";
/// Keys changed during a whole read that are read again after it; past
/// it, the map is read whole again.
const MAX_TOUCHED: usize = 1024;
/// Whole reads of every map begin at most this often (a Redis that
/// answers them badly is not asked in a loop).
const WHOLE_READS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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

/// A whole read under way: what it found so far.
pub struct Staged {
    entries: BTreeMap<String, String>,
    /// Fields that are no valid entry, or past `max_keys`.
    skipped: usize,
}

/// Where the subscriber is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    No,
    Asked,
    Yes,
}

pub struct Maps {
    maps: Vec<Arc<LiveMap>>,
    subscriber: Connection,
    subscription: Subscription,
    /// Every map is to be read whole, once subscribed.
    stale: bool,
    /// When every map was last read whole.
    whole_read: Option<Instant>,
    /// The maps being read whole, by name: the keys changed meanwhile,
    /// read again after it (`None`: too many; the map is read again).
    scanning: HashMap<String, Option<Vec<String>>>,
    /// Changes read this turn, made at its end (one write of each file).
    read: Vec<(Arc<LiveMap>, MapChange)>,
    /// The admin changes Redis replied to (or could not).
    settled: Vec<Settled>,
}

impl Maps {
    pub fn new(maps: Vec<Arc<LiveMap>>, now: Instant) -> Maps {
        Maps {
            maps,
            subscriber: Connection::subscriber(TokenKind::RedisSubscriber, now),
            subscription: Subscription::No,
            stale: true,
            whole_read: None,
            scanning: HashMap::new(),
            read: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// The shared maps, after a reload: each is read whole again.
    pub fn set_maps(&mut self, maps: Vec<Arc<LiveMap>>) {
        self.maps = maps;
        self.stale = true;
    }

    /// The subscriber's turn: connects, subscribes, reads messages (which
    /// ask `commands` for what changed; `None` while the command
    /// connection is not ready: then every map is read whole once it is).
    /// Returns when it wants its next turn at the latest.
    pub fn drive_subscriber(
        &mut self,
        config: &RedisConfig,
        registry: &Registry,
        mut commands: Option<&mut Pipeline<Purpose>>,
        now: Instant,
    ) -> Instant {
        let mut result = self.subscriber.step(config, registry, now);
        if result.is_ok() && self.subscriber.is_ready() && self.subscription == Subscription::No {
            let channel = channel(config);
            let subscribe: &[&[u8]] = &[b"SUBSCRIBE", channel.as_bytes()];
            let _ = self
                .subscriber
                .pipeline
                .push(Purpose::Subscribe, subscribe, now);
            self.subscription = Subscription::Asked;
            result = match (result, self.subscriber.exchange(config, now)) {
                (Ok(mut replies), Ok(more)) => {
                    replies.extend(more);
                    Ok(replies)
                }
                (Err(why), _) | (_, Err(why)) => Err(why),
            };
        }
        match result {
            Ok(replies) => {
                for (purpose, reply) in replies {
                    let commands = commands.as_deref_mut();
                    self.on_subscriber_reply(config, purpose, reply, commands, now);
                }
            }
            Err(why) => {
                self.subscriber.fail(registry, &why, now);
                self.subscription = Subscription::No;
                self.stale = true;
                stats().subscribed.store(false, Ordering::Relaxed);
            }
        }
        self.subscriber.next_turn(config, now)
    }

    fn on_subscriber_reply(
        &mut self,
        config: &RedisConfig,
        purpose: Purpose,
        reply: Reply,
        commands: Option<&mut Pipeline<Purpose>>,
        now: Instant,
    ) {
        match (purpose, reply) {
            (Purpose::Subscribe, Reply::Array(_)) => {
                self.subscription = Subscription::Yes;
                self.stale = true;
                stats().subscribed.store(true, Ordering::Relaxed);
                log::info!(
                    "redis: following the shared maps' changes on {}",
                    channel(config)
                );
            }
            (Purpose::Message, Reply::Array(parts)) => {
                let mut parts = parts.into_iter().skip(1);
                let (Some(Reply::BulkString(on)), Some(Reply::BulkString(payload))) =
                    (parts.next(), parts.next())
                else {
                    return;
                };
                if on == channel(config).as_bytes() {
                    stats().map_messages.fetch_add(1, Ordering::Relaxed);
                    self.on_message(config, &payload, commands, now);
                }
            }
            (purpose, reply) => log::debug!(
                "redis (subscriber): unexpected reply {reply:?} to {}",
                purpose.name()
            ),
        }
    }

    /// `NAME KEY` (one key changed) or `NAME` (read the map whole).
    fn on_message(
        &mut self,
        config: &RedisConfig,
        payload: &[u8],
        commands: Option<&mut Pipeline<Purpose>>,
        now: Instant,
    ) {
        let Some(commands) = commands.filter(|_| !self.stale) else {
            // A whole read is due anyway.
            self.stale = true;
            return;
        };
        let text = String::from_utf8_lossy(payload);
        let (name, key) = match text.trim().split_once(' ') {
            Some((name, key)) => (name, Some(key.trim())),
            None => (text.trim(), None),
        };
        let Some(map) = self.maps.iter().find(|map| map.name == name).cloned() else {
            log::debug!("redis: a change to {name:?}, no shared map of this config");
            return;
        };
        match (key, self.scanning.get_mut(name)) {
            (Some(key), Some(Some(touched))) if touched.len() < MAX_TOUCHED => {
                touched.push(key.to_owned())
            }
            (_, Some(touched)) => *touched = None,
            (Some(key), None) => get(config, commands, map, key, now, &mut self.stale),
            (None, None) => self.scan(config, commands, map, now),
        }
    }

    /// Reads `map` whole: its first `HSCAN`.
    fn scan(
        &mut self,
        config: &RedisConfig,
        commands: &mut Pipeline<Purpose>,
        map: Arc<LiveMap>,
        now: Instant,
    ) {
        self.scanning.insert(map.name.clone(), Some(Vec::new()));
        let staged = Box::new(Staged {
            entries: BTreeMap::new(),
            skipped: 0,
        });
        if !hscan(config, commands, map, b"0", staged, now) {
            self.stale = true;
        }
    }

    /// What is due on the command connection (`ready`): every map read
    /// whole, once subscribed.
    pub fn queue(
        &mut self,
        config: &RedisConfig,
        commands: &mut Pipeline<Purpose>,
        ready: bool,
        now: Instant,
    ) {
        let recent = self
            .whole_read
            .is_some_and(|last| now.saturating_duration_since(last) < WHOLE_READS_EVERY);
        if !ready || !self.stale || self.subscription != Subscription::Yes || recent {
            return;
        }
        self.stale = false;
        self.whole_read = Some(now);
        self.scanning.clear();
        for map in self.maps.clone() {
            self.scan(config, commands, map, now);
        }
    }

    /// A reply on the command connection for the maps.
    pub fn on_reply(
        &mut self,
        config: &RedisConfig,
        purpose: Purpose,
        reply: Reply,
        commands: &mut Pipeline<Purpose>,
        now: Instant,
    ) {
        match (purpose, reply) {
            (Purpose::MapGet { map, key }, reply) => {
                let key = key.to_ascii_lowercase();
                match reply {
                    Reply::BulkString(value) => match entry(&key, value) {
                        Some(value) => self.read.push((map, MapChange::Put { key, value })),
                        None => log::warn!("map {}: Redis holds a bad entry at {key:?}", map.name),
                    },
                    Reply::Null => self.read.push((map, MapChange::Delete { key })),
                    reply => log::warn!("map {}: HGET answered {reply:?}", map.name),
                }
            }
            (Purpose::MapScan { map, mut staged }, Reply::Array(parts)) => {
                let mut parts = parts.into_iter();
                let (Some(Reply::BulkString(cursor)), Some(Reply::Array(fields))) =
                    (parts.next(), parts.next())
                else {
                    log::warn!("map {}: HSCAN answered no cursor and fields", map.name);
                    self.stale = true;
                    return;
                };
                stage(&map, &mut staged, fields);
                if cursor != b"0" {
                    if !hscan(config, commands, map, &cursor, staged, now) {
                        self.stale = true;
                    }
                    return;
                }
                self.scanned(config, commands, map, *staged, now);
            }
            (Purpose::MapSeed { map }, Reply::Array(parts)) => {
                let stored = matches!(parts.first(), Some(Reply::Integer(1)));
                let fields = match parts.get(1) {
                    Some(Reply::Integer(fields)) => *fields,
                    _ => 0,
                };
                if stored {
                    stats().map_restores.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "map {}: stored this instance's {} keys back in Redis",
                        map.name,
                        map.len()
                    );
                } else if fields == 0 {
                    // Emptied on purpose (its version says it was stored).
                    self.read.push((map, MapChange::Replace(BTreeMap::new())));
                } else {
                    log::info!(
                        "map {}: another instance stored its keys back first",
                        map.name
                    );
                    self.scan(config, commands, map, now);
                }
            }
            (Purpose::MapStore(waiting), reply) => self.stored(*waiting, reply),
            (purpose, reply) => {
                log::warn!("redis: unexpected reply {reply:?} to {}", purpose.name());
                self.stale = true;
            }
        }
    }

    /// A whole read of `map` is done: Redis's content becomes the map's;
    /// none at all (no hash, no version) while this instance holds keys is
    /// a Redis that lost them.
    fn scanned(
        &mut self,
        config: &RedisConfig,
        commands: &mut Pipeline<Purpose>,
        map: Arc<LiveMap>,
        staged: Staged,
        now: Instant,
    ) {
        // `None`: another whole read of it began since (after a reconnect).
        let touched = self.scanning.remove(&map.name);
        stats().map_reloads.fetch_add(1, Ordering::Relaxed);
        if staged.skipped > 0 {
            log::warn!(
                "map {}: {} fields in Redis skipped (not valid entries, or past max_keys {})",
                map.name,
                staged.skipped,
                map.max_keys
            );
        }
        if staged.entries.is_empty() && !map.is_empty() {
            stats().map_missing.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "map {}: Redis holds none of its keys (restarted empty?); serving the {} held here",
                map.name,
                map.len()
            );
            seed(config, commands, map, now);
            return;
        }
        if staged.entries != map.all() {
            log::info!(
                "map {}: {} keys from Redis (held {})",
                map.name,
                staged.entries.len(),
                map.len()
            );
            self.read
                .push((Arc::clone(&map), MapChange::Replace(staged.entries)));
        }
        match touched {
            Some(Some(keys)) => {
                for key in keys {
                    let map = Arc::clone(&map);
                    get(config, commands, map, &key, now, &mut self.stale);
                }
            }
            // Changed past what was noted: read whole again.
            Some(None) => self.scan(config, commands, map, now),
            None => {}
        }
    }

    /// Redis's reply to an admin change: made here too, then answered.
    fn stored(&mut self, waiting: Waiting, reply: Reply) {
        let outcome = match reply {
            Reply::Integer(done) => {
                let store = &waiting.store;
                if done == 1 {
                    self.read
                        .push((Arc::clone(&store.map), store.change.clone()));
                }
                Ok(done == 1)
            }
            Reply::Error(error) => Err(format!("refused it: {error}")),
            reply => Err(format!("answered {reply:?}")),
        };
        self.settled.push((waiting, outcome));
    }

    /// An admin change to a shared map: to Redis, or answered 503 when the
    /// command connection is not `ready`.
    pub fn store(
        &mut self,
        config: &RedisConfig,
        commands: &mut Pipeline<Purpose>,
        waiting: Waiting,
        ready: bool,
        now: Instant,
    ) {
        if !ready {
            self.settled
                .push((waiting, Err("cannot be reached".into())));
            return;
        }
        let name = waiting.store.map.name.clone();
        let (hash, version, channel) =
            (hash(config, &name), version(config, &name), channel(config));
        let max_keys = waiting.store.map.max_keys.to_string();
        let mut args: Vec<Vec<u8>> = Vec::new();
        let script = match &waiting.store.change {
            MapChange::Put { key, value } => {
                let message = format!("{name} {key}");
                args.extend(
                    [key, value, &max_keys, &channel, &message].map(|arg| arg.as_bytes().to_vec()),
                );
                PUT_SCRIPT
            }
            MapChange::Delete { key } => {
                let message = format!("{name} {key}");
                args.extend([key, &channel, &message].map(|arg| arg.as_bytes().to_vec()));
                DELETE_SCRIPT
            }
            MapChange::Replace(entries) => {
                args.extend([channel.as_bytes().to_vec(), name.as_bytes().to_vec()]);
                pairs(&mut args, entries);
                REPLACE_SCRIPT
            }
        };
        if eval(
            commands,
            script,
            [&hash, &version],
            &args,
            Purpose::MapStore(Box::new(waiting)),
            now,
        )
        .is_err()
        {
            // The purpose came back: no Redis reply will answer it.
            stats().refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The command connection failed: what it awaited will not come. The
    /// admin changes are answered 503; the maps are read whole again.
    pub fn lost(&mut self, purposes: Vec<Purpose>) {
        for purpose in purposes {
            if let Purpose::MapStore(waiting) = purpose {
                let why = "closed the connection before it replied".into();
                self.settled.push((*waiting, Err(why)));
            }
        }
        self.scanning.clear();
        self.stale = true;
    }

    /// Makes what was read this turn, one write of each map's file.
    pub fn apply(&mut self) {
        while let Some((map, _)) = self.read.first() {
            let map = Arc::clone(map);
            let (changes, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read)
                .into_iter()
                .partition(|(other, _)| Arc::ptr_eq(other, &map));
            self.read = rest;
            let changes: Vec<MapChange> = changes.into_iter().map(|(_, change)| change).collect();
            match map.make(&changes) {
                Ok(made) if made.contains(&false) => log::warn!(
                    "map {}: a key from Redis past max_keys {} is not held here",
                    map.name,
                    map.max_keys
                ),
                Ok(_) => {}
                Err(why) => log::error!("map {}: {why}", map.name),
            }
        }
    }

    /// The admin changes settled since the last look.
    pub fn take_settled(&mut self) -> Vec<Settled> {
        std::mem::take(&mut self.settled)
    }
}

/// `HGET` of one key that changed.
fn get(
    config: &RedisConfig,
    commands: &mut Pipeline<Purpose>,
    map: Arc<LiveMap>,
    key: &str,
    now: Instant,
    stale: &mut bool,
) {
    let hash = hash(config, &map.name);
    let args: &[&[u8]] = &[b"HGET", hash.as_bytes(), key.as_bytes()];
    let purpose = Purpose::MapGet {
        map,
        key: key.to_owned(),
    };
    if commands.push(purpose, args, now).is_err() {
        // Too much in flight: read everything once it drains.
        *stale = true;
    }
}

/// The next `HSCAN` of a whole read; false if the queue is full.
fn hscan(
    config: &RedisConfig,
    commands: &mut Pipeline<Purpose>,
    map: Arc<LiveMap>,
    cursor: &[u8],
    staged: Box<Staged>,
    now: Instant,
) -> bool {
    let hash = hash(config, &map.name);
    let args: &[&[u8]] = &[b"HSCAN", hash.as_bytes(), cursor, b"COUNT", SCAN_COUNT];
    commands
        .push(Purpose::MapScan { map, staged }, args, now)
        .is_ok()
}

/// Stores `map`'s keys back into a Redis that lost them, unless another
/// instance did first; one command, so a map too large for the queue is
/// only served from here.
fn seed(config: &RedisConfig, commands: &mut Pipeline<Purpose>, map: Arc<LiveMap>, now: Instant) {
    let name = &map.name;
    let mut args = vec![channel(config).into_bytes(), name.as_bytes().to_vec()];
    pairs(&mut args, &map.all());
    let size: usize = args.iter().map(|arg| arg.len() + 16).sum();
    if size + SEED_SCRIPT.len() + 256 > MAX_UNSENT {
        log::warn!(
            "map {name}: {size} bytes, too large to store back in one command; served from here only"
        );
        return;
    }
    let keys = [&hash(config, name), &version(config, name)];
    let purpose = Purpose::MapSeed {
        map: Arc::clone(&map),
    };
    let _ = eval(commands, SEED_SCRIPT, keys, &args, purpose, now);
}

/// Queues `EVAL script 2 KEYS... ARGS...`.
fn eval(
    commands: &mut Pipeline<Purpose>,
    script: &str,
    keys: [&String; 2],
    args: &[Vec<u8>],
    purpose: Purpose,
    now: Instant,
) -> Result<(), ()> {
    let mut command: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), b"2"];
    command.extend(keys.map(String::as_bytes));
    command.extend(args.iter().map(Vec::as_slice));
    commands.push(purpose, &command, now).map_err(|_| ())
}

/// `entries` as field, value arguments.
fn pairs(args: &mut Vec<Vec<u8>>, entries: &BTreeMap<String, String>) {
    for (key, value) in entries {
        args.push(key.as_bytes().to_vec());
        args.push(value.as_bytes().to_vec());
    }
}

/// A whole read's fields, checked as the admin API checks them.
fn stage(map: &LiveMap, staged: &mut Staged, fields: Vec<Reply>) {
    let mut fields = fields.into_iter();
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        let (Reply::BulkString(key), Reply::BulkString(value)) = (key, value) else {
            staged.skipped += 1;
            continue;
        };
        let key = String::from_utf8_lossy(&key).to_ascii_lowercase();
        let full = staged.entries.len() >= map.max_keys && !staged.entries.contains_key(&key);
        match entry(&key, value) {
            Some(value) if !full => {
                staged.entries.insert(key, value);
            }
            _ => staged.skipped += 1,
        }
    }
}

/// A value from Redis, if `key` and it make a valid entry.
fn entry(key: &str, value: Vec<u8>) -> Option<String> {
    let value = String::from_utf8(value).ok()?;
    check_entry(key, &value).ok()?;
    Some(value)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_read_keeps_valid_entries_up_to_max_keys() {
        let dir = std::env::temp_dir().join(format!("rsp-shared-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = LiveMap::open("apps", &dir.join("apps.map"), 2, true).unwrap();
        let mut staged = Staged {
            entries: BTreeMap::new(),
            skipped: 0,
        };
        let bulk = |text: &str| Reply::BulkString(text.as_bytes().to_vec());
        let fields = vec![
            bulk("A.Example"),
            bulk("127.0.0.1:1"),
            bulk("bad key"),
            bulk("127.0.0.1:2"),
            bulk("b.example"),
            bulk(" padded "),
            Reply::Integer(1),
            bulk("127.0.0.1:3"),
            bulk("c.example"),
            bulk("127.0.0.1:4"),
            bulk("d.example"),
            bulk("127.0.0.1:5"),
            // A field without its value is dropped.
            bulk("e.example"),
        ];
        stage(&map, &mut staged, fields);
        let kept: Vec<(&str, &str)> = staged
            .entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            kept,
            [("a.example", "127.0.0.1:1"), ("c.example", "127.0.0.1:4")]
        );
        assert_eq!(
            staged.skipped, 4,
            "bad key, bad value, not a string, past max_keys"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
