//! Rules across settings: what each section allows alone is checked as it
//! is read; what depends on two of them is checked here.

use mlua::Function;

use super::lua::Script;
use super::types::{AdminConfig, Config, ConfigError, DEFAULT_POOL, ListenMode};

pub fn validate(
    config: &Config,
    script: &Script,
    route: Option<&Function>,
) -> Result<(), ConfigError> {
    for listener in &config.listen {
        if let ListenMode::Tcp { pool: Some(name) } = &listener.mode
            && !config.pools.iter().any(|pool| &pool.name == name)
        {
            return Err(script.error(
                "listen",
                format!("listen: {}: no pool named \"{name}\"", listener.address),
            ));
        }
    }
    for (name, bytes) in [
        ("max_header_bytes", config.max_header_bytes),
        (
            "max_response_header_bytes",
            config.max_response_header_bytes,
        ),
    ] {
        if bytes > config.buffer_bytes {
            return Err(script.error(
                name,
                format!(
                    "{name} ({bytes}) must not exceed buffer_bytes ({})",
                    config.buffer_bytes
                ),
            ));
        }
    }
    if let Some(admin) = &config.admin {
        validate_admin(config, script, admin)?;
    }
    let own = crate::own::OwnListeners::new(config.own_addresses());
    for pool in &config.pools {
        if let Some(server) = pool
            .servers
            .iter()
            .find(|server| own.reached_by(server.address))
        {
            // The default pool may come from `backends` instead.
            let setting = if pool.name == DEFAULT_POOL && script.assigned("backends") {
                "backends"
            } else {
                "pools"
            };
            return Err(script.error(
                setting,
                format!(
                    "pool {}: server {} is rsp's own listener: every request would loop back to rsp",
                    pool.name, server.address
                ),
            ));
        }
    }
    if route.is_none()
        && let Some(listener) = config
            .listen
            .iter()
            .find(|listener| listener.mode == ListenMode::Tcp { pool: None })
    {
        return Err(script.file_error(format!(
            "the tcp listener {} names no pool, and there is no route function to choose one",
            listener.address
        )));
    }
    if route.is_none() && !config.pools.iter().any(|pool| pool.name == DEFAULT_POOL) {
        return Err(script.file_error(
            "no backends: set `backends`, a pool named \"default\", or a `route` function",
        ));
    }
    Ok(())
}

/// The admin port: an address of its own, on loopback unless said public,
/// and then with a token.
fn validate_admin(
    config: &Config,
    script: &Script,
    admin: &AdminConfig,
) -> Result<(), ConfigError> {
    let address = admin.address;
    if config
        .listen
        .iter()
        .any(|listener| listener.address == address)
    {
        return Err(script.error(
            "admin",
            format!("admin: {address} is also in listen; give the admin port its own address"),
        ));
    }
    if !address.ip().is_loopback() && !admin.public {
        return Err(script.error(
            "admin",
            format!(
                "admin: {address} is reachable from other machines and the admin port can drain servers; \
                 write admin = {{ addr = \"{address}\", public = true, token_file = \"...\" }} if that is meant"
            ),
        ));
    }
    if admin.public && admin.token.is_none() {
        return Err(script.error(
            "admin",
            format!(
                "admin: a public admin port ({address}) needs a token: token = \"...\" or token_file = \"...\", \
                 sent by callers as Authorization: Bearer"
            ),
        ));
    }
    Ok(())
}
