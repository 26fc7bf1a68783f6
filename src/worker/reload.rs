//! SIGHUP: read the config again, diff it against the running one into a
//! plan, and apply the plan. Servers that stay keep their state, requests
//! in flight finish where they started, and an invalid config changes
//! nothing.

use crate::access_log::AccessLog;
use crate::balancer::Pool;
use crate::config::{self, AccessLogConfig, Loaded};
use crate::idle::IdleConnections;
use crate::request_id::RequestIds;
use crate::router::Router;

use super::listeners::{self, ListenKey, Listeners};
use super::{EventLoop, log_pools};
use crate::services::Settings;

/// Where each old pool and server is in the new config.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moves {
    /// `servers[pool][server]`: the new (pool, server), `None` when removed.
    pub servers: Vec<Vec<Option<(usize, usize)>>>,
    /// `pools[pool]`: the new pool, `None` when removed.
    pub pools: Vec<Option<usize>>,
}

/// Maps the running pools onto the new ones (by pool name and server
/// address), and lets the new ones take over the state of what they keep.
pub fn carry_over(old: &[Pool], new: &mut [Pool]) -> Moves {
    let mut moves = Moves::default();
    for pool in old {
        let index = new.iter().position(|candidate| candidate.name == pool.name);
        moves.pools.push(index);
        moves.servers.push(
            pool.servers()
                .iter()
                .map(|server| {
                    let index = index?;
                    let position = new[index]
                        .servers()
                        .iter()
                        .position(|candidate| candidate.address == server.address)?;
                    Some((index, position))
                })
                .collect(),
        );
        if let Some(index) = index {
            new[index].inherit(pool);
        }
    }
    moves
}

impl EventLoop {
    pub(super) fn reload(&mut self) {
        log::info!("SIGHUP: reloading {}", self.config_path.display());
        let loaded = match config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(error) => {
                log::error!("reload failed, the running config stays: {error}");
                return;
            }
        };
        if let Err(error) = self.reload_listeners(&loaded) {
            log::error!("reload failed, the running config stays: {error}");
            return;
        }
        let mut pools: Vec<Pool> = loaded.config.pools.iter().map(Pool::new).collect();
        let moves = carry_over(&self.services.pools, &mut pools);
        log_pools(&pools);
        let mut to_drive = Vec::new();
        self.services.pools = pools;
        for (key, session) in self.sessions.iter_mut() {
            if session.follow_reload(&moves.servers, &moves.pools, &mut self.services) {
                to_drive.push(key);
            }
        }
        self.apply(&loaded);
        self.follow_redis(loaded.config.redis.as_ref());
        self.schedule_health_checks();
        for key in to_drive {
            self.drive(key, None);
        }
        log::info!("reload done");
    }

    /// Opens the new listen addresses and closes the removed ones; all
    /// new ones bind, or nothing changes.
    fn reload_listeners(&mut self, loaded: &Loaded) -> std::io::Result<()> {
        let wanted = listeners::wanted(&loaded.config, self.services.worker.index);
        let new: Vec<ListenKey> = wanted
            .iter()
            .filter(|key| !self.listeners.keys().any(|open| open == *key))
            .cloned()
            .collect();
        let opened = Listeners::bind_all(&new, self.services.worker.count > 1)?;
        let registry = self.poll.registry();
        self.listeners
            .close_unless(registry, |key| wanted.contains(key));
        if let Err(error) = self.listeners.open(registry, opened) {
            log::error!("reload: cannot register a new listener: {error}");
        }
        self.listeners
            .configure(&loaded.config, &loaded.certificates);
        Ok(())
    }

    /// The rest of the new config: `route`, settings, ids, the access log,
    /// the idle store's limits; then the new generation begins.
    fn apply(&mut self, loaded: &Loaded) {
        let config = &loaded.config;
        let services = &mut self.services;
        services.router = Router::new(loaded, &services.pools);
        services.settings = Settings::of(config);
        if config.request_id != services.request_ids.is_some() {
            services.request_ids = config.request_id.then(RequestIds::new);
        }
        reconfigure_access_log(&mut services.access_log, config.access_log.as_ref());
        configure_idle(&mut services.idle, config);
        // A cache of other settings starts empty; the same one keeps
        // what it stored.
        if services.cache.as_ref().map(|cache| &cache.config) != config.cache.as_ref() {
            let workers = services.worker.count;
            services.cache = config
                .cache
                .clone()
                .map(|cache| crate::cache::Cache::new(cache, workers));
        }
        services.next_generation();
    }

    /// SIGUSR1: logrotate moved the file away; start a new one.
    pub(super) fn reopen_access_log(&mut self) {
        if let Some(access_log) = &mut self.services.access_log {
            match access_log.reopen() {
                Ok(()) => log::info!("SIGUSR1: access log reopened"),
                Err(error) => log::error!("SIGUSR1: {error}; still writing to the old file"),
            }
        }
    }
}

fn configure_idle(idle: &mut IdleConnections, config: &config::Config) {
    idle.configure(config.backend_keepalive, config.timeouts.backend_keepalive);
}

/// A reload that changes `access_log` or its format opens the new log; if
/// it cannot, the old one stays.
fn reconfigure_access_log(access_log: &mut Option<AccessLog>, wanted: Option<&AccessLogConfig>) {
    if access_log.as_ref().map(AccessLog::config) == wanted {
        return;
    }
    if let Some(old) = access_log {
        old.flush();
    }
    match wanted.map(AccessLog::open).transpose() {
        Ok(new) => *access_log = new,
        Err(error) => log::error!("reload: {error}; the access log stays as it was"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolConfig, ServerConfig};

    fn pool(name: &str, ports: &[u16]) -> Pool {
        Pool::new(&PoolConfig::new(
            name,
            ports
                .iter()
                .map(|&port| {
                    ServerConfig::plain(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                })
                .collect(),
        ))
    }

    #[test]
    fn servers_that_stay_are_found_and_keep_their_state() {
        let mut old = vec![pool("api", &[1, 2]), pool("web", &[3, 4])];
        old[1].set_drained("127.0.0.1:4".parse().unwrap(), true);
        let mut new = vec![pool("web", &[4, 5]), pool("static", &[6])];
        let moves = carry_over(&old, &mut new);
        assert_eq!(moves.pools, vec![None, Some(0)]);
        assert_eq!(
            moves.servers,
            vec![vec![None, None], vec![None, Some((0, 0))]]
        );
        assert!(new[0].servers()[0].drained, "a drain outlives the reload");
        assert!(!new[0].servers()[1].drained);
    }
}
