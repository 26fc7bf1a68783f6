//! `/maps/NAME[/KEY]`: the script's live maps, read and changed. A change
//! is answered 200 only once the map's file holds it (`state::map`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::map_file::check_entry;
use crate::reply::LocalReply;
use crate::state::LiveMap;

use super::{reply, text};

/// The answer to `method` on `/maps/...` (`rest` is the path after it),
/// with the request's `body` (a changing request's whole body).
pub(super) fn answer(
    method: &str,
    rest: &str,
    body: &[u8],
    maps: &HashMap<String, Arc<LiveMap>>,
) -> LocalReply {
    let (name, key) = match rest.split_once('/') {
        Some((name, key)) => (name, Some(key)),
        None => (rest, None),
    };
    let Some(map) = maps.get(name) else {
        let mut names: Vec<&str> = maps.keys().map(String::as_str).collect();
        names.sort_unstable();
        return text(
            404,
            format!(
                "rsp admin: no map named {name:?} (maps: {})\n",
                names.join(", ")
            ),
        );
    };
    let key = match key.map(decode) {
        Some(Ok(key)) => Some(key),
        Some(Err(why)) => return text(400, format!("rsp admin: the key {why}\n")),
        None => None,
    };
    match (method, key) {
        ("GET" | "HEAD", None) => reply(200, "application/json", json(&map.all())),
        ("GET" | "HEAD", Some(key)) => match map.get(&key) {
            Some(value) => text(200, format!("{value}\n")),
            None => text(404, format!("rsp admin: map {name} has no key {key:?}\n")),
        },
        ("PUT", Some(key)) => put(name, map, &key, body),
        ("DELETE", Some(key)) => {
            let lower = key.to_ascii_lowercase();
            match map.change(|entries| entries.remove(&lower)) {
                Ok(Some(_)) => text(200, format!("rsp admin: map {name}: {key} deleted\n")),
                Ok(None) => text(404, format!("rsp admin: map {name} has no key {key:?}\n")),
                Err(why) => stored_error(name, &why),
            }
        }
        ("POST", None) => {
            let entries = match replacement(body) {
                Ok(entries) => entries,
                Err(why) => return text(400, format!("rsp admin: {why}\n")),
            };
            let count = entries.len();
            if count > map.max_keys {
                return text(
                    413,
                    format!(
                        "rsp admin: {count} keys, over map {name}'s max_keys of {}\n",
                        map.max_keys
                    ),
                );
            }
            stored(name, map.change(|current| *current = entries), || {
                text(
                    200,
                    format!("rsp admin: map {name} replaced ({count} keys)\n"),
                )
            })
        }
        (_, None) => super::not_allowed("GET, HEAD, POST", &format!("/maps/{name}")),
        (_, Some(_)) => super::not_allowed("GET, HEAD, PUT, DELETE", &format!("/maps/{name}/KEY")),
    }
}

/// `PUT /maps/NAME/KEY`: the body is the key's new value.
fn put(name: &str, map: &LiveMap, key: &str, body: &[u8]) -> LocalReply {
    let Ok(value) = std::str::from_utf8(body) else {
        return text(400, "rsp admin: the value is not UTF-8\n".into());
    };
    let value = value.trim_end_matches(['\r', '\n']);
    if let Err(why) = check_entry(key, value) {
        return text(400, format!("rsp admin: {why}\n"));
    }
    let lower = key.to_ascii_lowercase();
    let value = value.to_owned();
    let max_keys = map.max_keys;
    let written = map.change(|entries| {
        if entries.len() >= max_keys && !entries.contains_key(&lower) {
            return false;
        }
        entries.insert(lower, value);
        true
    });
    match written {
        Ok(true) => text(200, format!("rsp admin: map {name}: {key} set\n")),
        Ok(false) => text(
            507,
            format!("rsp admin: map {name} holds its max_keys of {max_keys}; {key:?} not added\n"),
        ),
        Err(why) => stored_error(name, &why),
    }
}

/// The answer once a change was (or could not be) written.
fn stored<T>(
    name: &str,
    written: Result<T, String>,
    done: impl FnOnce() -> LocalReply,
) -> LocalReply {
    match written {
        Ok(_) => done(),
        Err(why) => stored_error(name, &why),
    }
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
