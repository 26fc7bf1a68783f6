//! `/maps/NAME[/KEY]`: the script's live maps, read and changed. A change
//! is answered 200 only once the map's file holds it (`state::map`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::map_file::check_entry;
use crate::reply::LocalReply;
use crate::state::{LiveMap, MapChange, Store};

use super::{reply, text};

/// What a `/maps/...` request comes to: a page now, or a change to a
/// shared map that is answered once Redis has it.
pub enum MapPage {
    Now(LocalReply),
    Store(Store),
}

/// The answer to `method` on `/maps/...` (`rest` is the path after it),
/// with the request's `body` (a changing request's whole body).
pub(super) fn answer(
    method: &str,
    rest: &str,
    body: &[u8],
    maps: &HashMap<String, Arc<LiveMap>>,
) -> MapPage {
    let (name, key) = match rest.split_once('/') {
        Some((name, key)) => (name, Some(key)),
        None => (rest, None),
    };
    let Some(map) = maps.get(name) else {
        let mut names: Vec<&str> = maps.keys().map(String::as_str).collect();
        names.sort_unstable();
        return MapPage::Now(text(
            404,
            format!(
                "rsp admin: no map named {name:?} (maps: {})\n",
                names.join(", ")
            ),
        ));
    };
    let key = match key.map(decode) {
        Some(Ok(key)) => Some(key),
        Some(Err(why)) => return MapPage::Now(text(400, format!("rsp admin: the key {why}\n"))),
        None => None,
    };
    let change = match (method, key) {
        ("GET" | "HEAD", None) => {
            return MapPage::Now(reply(200, "application/json", json(&map.all())));
        }
        ("GET" | "HEAD", Some(key)) => {
            return MapPage::Now(match map.get(&key) {
                Some(value) => text(200, format!("{value}\n")),
                None => text(404, format!("rsp admin: map {name} has no key {key:?}\n")),
            });
        }
        ("PUT", Some(key)) => put(&key, body).map(|change| (change, key)),
        ("DELETE", Some(key)) => Ok((
            MapChange::Delete {
                key: key.to_ascii_lowercase(),
            },
            key,
        )),
        ("POST", None) => replace(map, body).map(|change| (change, String::new())),
        (_, None) => Err(super::not_allowed(
            "GET, HEAD, POST",
            &format!("/maps/{name}"),
        )),
        (_, Some(_)) => Err(super::not_allowed(
            "GET, HEAD, PUT, DELETE",
            &format!("/maps/{name}/KEY"),
        )),
    };
    match change {
        Err(page) => MapPage::Now(page),
        Ok((change, key)) if map.shared => MapPage::Store(Store {
            map: Arc::clone(map),
            change,
            key,
        }),
        Ok((change, key)) => {
            let done = map.make(std::slice::from_ref(&change)).map(|done| done[0]);
            MapPage::Now(changed(name, &key, &change, done))
        }
    }
}

/// `PUT /maps/NAME/KEY`: the body is the key's new value.
fn put(key: &str, body: &[u8]) -> Result<MapChange, LocalReply> {
    let Ok(value) = std::str::from_utf8(body) else {
        return Err(text(400, "rsp admin: the value is not UTF-8\n".into()));
    };
    let value = value.trim_end_matches(['\r', '\n']);
    if let Err(why) = check_entry(key, value) {
        return Err(text(400, format!("rsp admin: {why}\n")));
    }
    Ok(MapChange::Put {
        key: key.to_ascii_lowercase(),
        value: value.to_owned(),
    })
}

/// `POST /maps/NAME`: the body is the whole map, a JSON object.
fn replace(map: &LiveMap, body: &[u8]) -> Result<MapChange, LocalReply> {
    let entries = replacement(body).map_err(|why| text(400, format!("rsp admin: {why}\n")))?;
    if entries.len() > map.max_keys {
        return Err(text(
            413,
            format!(
                "rsp admin: {} keys, over map {}'s max_keys of {}\n",
                entries.len(),
                map.name,
                map.max_keys
            ),
        ));
    }
    Ok(MapChange::Replace(entries))
}

/// The answer to a change to map `name` (`key` as the client wrote it):
/// `done` says whether it was made (false: the map is full, or has no
/// such key), or why it could not be stored.
fn changed(name: &str, key: &str, change: &MapChange, done: Result<bool, String>) -> LocalReply {
    let done = match done {
        Ok(done) => done,
        Err(why) => return stored_error(name, &why),
    };
    match (change, done) {
        (MapChange::Put { .. }, true) => text(200, format!("rsp admin: map {name}: {key} set\n")),
        (MapChange::Put { .. }, false) => text(
            507,
            format!("rsp admin: map {name} is full (max_keys); {key:?} not added\n"),
        ),
        (MapChange::Delete { .. }, true) => {
            text(200, format!("rsp admin: map {name}: {key} deleted\n"))
        }
        (MapChange::Delete { .. }, false) => {
            text(404, format!("rsp admin: map {name} has no key {key:?}\n"))
        }
        (MapChange::Replace(entries), _) => text(
            200,
            format!("rsp admin: map {name} replaced ({} keys)\n", entries.len()),
        ),
    }
}

/// The answer to a shared map's change, once Redis replied (or could
/// not).
pub fn settled(store: &Store, outcome: Result<bool, String>) -> LocalReply {
    match outcome {
        Ok(done) => changed(&store.map.name, &store.key, &store.change, Ok(done)),
        Err(why) => unstored(&store.map.name, &why),
    }
}

/// A shared map's change that Redis could not take: nothing changed
/// anywhere.
fn unstored(name: &str, why: &str) -> LocalReply {
    log::warn!("admin: map {name}: {why}; the map is unchanged");
    text(
        503,
        format!("rsp admin: map {name} unchanged: Redis {why}; try again\n"),
    )
}

fn stored_error(name: &str, why: &str) -> LocalReply {
    log::error!("admin: map {name}: {why}; the map is unchanged");
    text(500, format!("rsp admin: map {name} unchanged: {why}\n"))
}

/// A whole map from a JSON object of strings.
fn replacement(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("not JSON: {error}"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("the body must be a JSON object of key: value strings".into());
    };
    let mut entries = BTreeMap::new();
    for (key, value) in object {
        let serde_json::Value::String(value) = value else {
            return Err(format!("the value of {key:?} is not a string"));
        };
        check_entry(&key, &value).map_err(|why| format!("{key:?}: {why}"))?;
        entries.insert(key.to_ascii_lowercase(), value);
    }
    Ok(entries)
}

fn json(entries: &BTreeMap<String, String>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
        .collect();
    let mut text = serde_json::Value::Object(object).to_string();
    text.push('\n');
    text
}

/// A key from the path: %-escapes decoded, UTF-8.
fn decode(key: &str) -> Result<String, &'static str> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("has a broken %-escape")?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8")
}
