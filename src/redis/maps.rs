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
//! An admin change goes to Redis first (`map_writes`), and is answered
//! once Redis replied and this instance made it too; 503 when Redis
//! cannot be reached. A whole read that finds neither the hash nor its
//! version while this instance holds keys means Redis lost them
//! (restarted empty): the instance keeps serving what it holds, says so,
//! and stores it back unless another instance did first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::Registry;

use crate::config::RedisConfig;
use crate::map_file::check_entry;
use crate::state::{LiveMap, MapChange, Settled, Waiting};
use crate::token::TokenKind;

use super::connection::{Connection, Turn};
use super::map_writes::{self, channel, hash};
use super::pipeline::Pipeline;
use super::resp::Reply;
use super::{Purpose, stats};

/// Fields one `HSCAN` asks for.
const SCAN_COUNT: &[u8] = b"512";
/// Keys changed during a whole read that are read again after it; past
/// it, the map is read whole again.
const MAX_TOUCHED: usize = 1024;
/// Whole reads of every map begin at most this often (a Redis that
/// answers them badly is not asked in a loop).
const WHOLE_READS_EVERY: Duration = Duration::from_secs(1);

/// A whole read under way: which it is, and what it found so far.
pub struct Staged {
    read: u64,
    entries: BTreeMap<String, String>,
    /// Fields that are no valid entry, or past `max_keys`.
    skipped: usize,
}

/// The whole read of a map that counts (an older one's replies are
/// dropped), and the keys changed meanwhile, read again after it
/// (`None`: too many, or the whole map; it is read whole again).
struct Scan {
    read: u64,
    touched: Option<Vec<String>>,
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
    /// The whole reads under way, by map name.
    scanning: HashMap<String, Scan>,
    /// Counts whole reads begun.
    reads: u64,
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
            reads: 0,
            read: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// The shared maps, after a reload: each is read whole again.
    pub fn set_maps(&mut self, maps: Vec<Arc<LiveMap>>) {
        self.maps = maps;
        self.stale = true;
        self.whole_read = None;
    }

    /// `map` is one of the maps followed now (not one a reload replaced).
    fn follows(&self, map: &Arc<LiveMap>) -> bool {
        self.maps.iter().any(|followed| Arc::ptr_eq(followed, map))
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
        let mut turn = self.subscriber.step(config, registry, now);
        if turn.failed.is_none()
            && self.subscriber.is_ready()
            && self.subscription == Subscription::No
        {
            let channel = channel(config);
            let subscribe: &[&[u8]] = &[b"SUBSCRIBE", channel.as_bytes()];
            let _ = self
                .subscriber
                .pipeline
                .push(Purpose::Subscribe, subscribe, now);
            self.subscription = Subscription::Asked;
            turn = turn.and(self.subscriber.exchange(config, now));
        }
        let Turn {
            replies,
            mut failed,
        } = turn;
        for (purpose, reply) in replies {
            let commands = commands.as_deref_mut();
            if let Err(why) = self.on_subscriber_reply(config, purpose, reply, commands, now) {
                failed = failed.or(Some(why));
            }
        }
        if let Some(why) = failed {
            self.subscriber.fail(registry, &why, now);
            self.subscription = Subscription::No;
            self.stale = true;
            stats().subscribed.store(false, Ordering::Relaxed);
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
    ) -> Result<(), String> {
        match (purpose, reply) {
            (Purpose::Subscribe, Reply::Error(error)) => Err(format!("SUBSCRIBE refused: {error}")),
            (Purpose::Subscribe, _) => {
                self.subscription = Subscription::Yes;
                self.stale = true;
                stats().subscribed.store(true, Ordering::Relaxed);
                log::info!(
                    "redis: following the shared maps' changes on {}",
                    channel(config)
                );
                Ok(())
            }
            (Purpose::Message, Reply::Array(parts)) => {
                let mut parts = parts.into_iter().skip(1);
                if let (Some(Reply::BulkString(on)), Some(Reply::BulkString(payload))) =
                    (parts.next(), parts.next())
                    && on == channel(config).as_bytes()
                {
                    stats().map_messages.fetch_add(1, Ordering::Relaxed);
                    self.on_message(config, &payload, commands, now);
                }
                Ok(())
            }
            (purpose, reply) => {
                log::debug!(
                    "redis (subscriber): unexpected reply {reply:?} to {}",
                    purpose.name()
                );
                Ok(())
            }
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
            Some((name, key)) => (name, Some(key.trim().to_ascii_lowercase())),
            None => (text.trim(), None),
        };
        let Some(map) = self.maps.iter().find(|map| map.name == name).cloned() else {
            log::debug!("redis: a change to {name:?}, no shared map of this config");
            return;
        };
        // No map holds such a key: nothing to read of it.
        if let Some(key) = &key
            && check_entry(key, "-").is_err()
        {
            log::debug!("map {name}: a change announced to a key no map holds");
            return;
        }
        match (key, self.scanning.get_mut(name)) {
            (
                Some(key),
                Some(Scan {
                    touched: Some(touched),
                    ..
                }),
            ) if touched.len() < MAX_TOUCHED => touched.push(key),
            (_, Some(scan)) => scan.touched = None,
            (Some(key), None) => {
                if !get(config, commands, map, key, now) {
                    self.stale = true;
                }
            }
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
        self.reads += 1;
        let scan = Scan {
            read: self.reads,
            touched: Some(Vec::new()),
        };
        self.scanning.insert(map.name.clone(), scan);
        let staged = Box::new(Staged {
            read: self.reads,
            entries: BTreeMap::new(),
            skipped: 0,
        });
        if !hscan(config, commands, map, b"0", staged, now) {
            self.stale = true;
        }
    }

    /// What is due on the command connection (`ready`): every map read
    /// whole, once subscribed (at most once a second).
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
            (Purpose::MapStore(waiting), reply) => self.stored(*waiting, reply),
            // A map a reload replaced: its replies are not the new one's.
            (
                Purpose::MapGet { map, .. }
                | Purpose::MapScan { map, .. }
                | Purpose::MapSeed { map },
                _,
            ) if !self.follows(&map) => {}
            (Purpose::MapGet { map, key }, reply) => match reply {
                Reply::BulkString(value) => match entry(&key, value) {
                    Some(value) => self.read.push((map, MapChange::Put { key, value })),
                    None => log::warn!("map {}: Redis holds a bad entry at {key:?}", map.name),
                },
                Reply::Null => self.read.push((map, MapChange::Delete { key })),
                reply => log::warn!("map {}: HGET answered {reply:?}", map.name),
            },
            (Purpose::MapScan { map, mut staged }, Reply::Array(parts)) => {
                let current = self.scanning.get(&map.name);
                if current.is_none_or(|scan| scan.read != staged.read) {
                    // A newer whole read of it began since.
                    return;
                }
                let mut parts = parts.into_iter();
                let (Some(Reply::BulkString(cursor)), Some(Reply::Array(fields))) =
                    (parts.next(), parts.next())
                else {
                    log::warn!("map {}: HSCAN answered no cursor and fields", map.name);
                    self.scanning.remove(&map.name);
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
                    self.stale = true;
                }
            }
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
        let touched = self
            .scanning
            .remove(&map.name)
            .and_then(|scan| scan.touched);
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
            if staged.skipped == 0 {
                stats().map_missing.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "map {}: Redis holds none of its keys (restarted empty?); serving the {} held here",
                    map.name,
                    map.len()
                );
                map_writes::seed(config, commands, &map, now);
            }
            return;
        }
        if staged.entries != map.all() {
            log::info!(
                "map {}: {} keys from Redis (held {})",
                map.name,
                staged.entries.len(),
                map.len()
            );
            let change = MapChange::Replace(staged.entries);
            self.read.push((Arc::clone(&map), change));
        }
        match touched {
            Some(keys) => {
                for key in keys {
                    if !get(config, commands, Arc::clone(&map), key, now) {
                        self.stale = true;
                    }
                }
            }
            // Changed past what was noted: read whole again.
            None => self.scan(config, commands, map, now),
        }
    }

    /// Redis's reply to an admin change: made here too (after what was
    /// read before it), then answered.
    fn stored(&mut self, waiting: Waiting, reply: Reply) {
        let done = match reply {
            Reply::Integer(done) => done == 1,
            Reply::Error(error) => {
                let why = format!("refused it: {error}");
                return self.settled.push((waiting, Err(why)));
            }
            reply => {
                let why = format!("answered {reply:?}; the change may or may not be made");
                return self.settled.push((waiting, Err(why)));
            }
        };
        self.apply();
        let store = &waiting.store;
        // A delete Redis had nothing of is made here too: the copy follows.
        // (A map a reload replaced is read whole again anyway.)
        let made = match (&store.change, done) {
            _ if !self.follows(&store.map) => Ok(vec![true]),
            (_, true) | (MapChange::Delete { .. }, false) => {
                store.map.make(std::slice::from_ref(&store.change))
            }
            _ => Ok(vec![true]),
        };
        let outcome = match made {
            Ok(made) => {
                if made.contains(&false) && done {
                    // The copy is full where Redis was not: read it again.
                    self.stale = true;
                }
                Ok(done)
            }
            Err(why) => {
                self.stale = true;
                Err(format!(
                    "took the change, but this instance's copy is not written ({why})"
                ))
            }
        };
        self.settled.push((waiting, outcome));
    }

    /// An admin change to a shared map: to Redis, or settled at once when
    /// the command connection is not `ready` or its queue is full.
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
        } else if let Err(waiting) = map_writes::store(config, commands, waiting, now) {
            stats().refused.fetch_add(1, Ordering::Relaxed);
            let why = "has too many commands waiting; send it again".into();
            self.settled.push((waiting, Err(why)));
        }
    }

    /// The command connection failed: what it awaited will not come. The
    /// admin changes are settled as unknown; the maps are read whole again.
    pub fn lost(&mut self, purposes: Vec<Purpose>) {
        for purpose in purposes {
            if let Purpose::MapStore(waiting) = purpose {
                let why = "closed the connection before it replied: the change may or may not \
                           be made; send it again"
                    .into();
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

/// `HGET` of one key that changed; false if the queue is full.
fn get(
    config: &RedisConfig,
    commands: &mut Pipeline<Purpose>,
    map: Arc<LiveMap>,
    key: String,
    now: Instant,
) -> bool {
    let hash = hash(config, &map.name);
    let field = key.clone();
    let args: &[&[u8]] = &[b"HGET", hash.as_bytes(), field.as_bytes()];
    commands
        .push(Purpose::MapGet { map, key }, args, now)
        .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Store;

    fn waiting(map: &Arc<LiveMap>, ticket: u64) -> Waiting {
        Waiting {
            waiter: 7,
            ticket,
            store: Store {
                map: Arc::clone(map),
                change: MapChange::Put {
                    key: "a.example".into(),
                    value: "127.0.0.1:1".into(),
                },
                key: "a.example".into(),
            },
        }
    }

    /// Every admin change is settled, whatever becomes of its command: not
    /// sent (no connection, a full queue), or sent and lost with the
    /// connection.
    #[test]
    fn every_admin_change_is_settled() {
        let dir = std::env::temp_dir().join(format!("rsp-settled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = Arc::new(LiveMap::open("apps", &dir.join("apps.map"), 10, true).unwrap());
        let config = RedisConfig {
            servers: vec!["127.0.0.1:1".parse().unwrap()],
            password: None,
            db: 0,
            prefix: "rsp:".into(),
            timeout: Duration::from_millis(200),
        };
        let now = Instant::now();
        let mut maps = Maps::new(vec![Arc::clone(&map)], now);
        let mut commands = Pipeline::default();
        maps.store(&config, &mut commands, waiting(&map, 1), false, now);
        maps.store(&config, &mut commands, waiting(&map, 2), true, now);
        while commands.push(Purpose::Ping, &[b"PING"], now).is_ok() {}
        maps.store(&config, &mut commands, waiting(&map, 3), true, now);
        maps.lost(commands.reset());
        let mut settled: Vec<(u64, bool)> = maps
            .take_settled()
            .into_iter()
            .map(|(waiting, outcome)| (waiting.ticket, outcome.is_err()))
            .collect();
        settled.sort_unstable();
        assert_eq!(settled, [(1, true), (2, true), (3, true)]);
        assert!(map.is_empty(), "nothing was made");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_whole_read_keeps_valid_entries_up_to_max_keys() {
        let dir = std::env::temp_dir().join(format!("rsp-shared-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = LiveMap::open("apps", &dir.join("apps.map"), 2, true).unwrap();
        let mut staged = Staged {
            read: 1,
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
