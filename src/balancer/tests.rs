//! Unit tests of the pools: picking, weights, backups, queues, leases.

use super::*;
use crate::config::ServerConfig;

fn pool(algorithm: Algorithm, servers: &[(u16, u32, bool)]) -> Pool {
    Pool::new(&PoolConfig {
        algorithm,
        ..PoolConfig::new(
            "test",
            servers
                .iter()
                .map(|&(port, weight, backup)| ServerConfig {
                    address: SocketAddr::from(([127, 0, 0, 1], port)),
                    weight,
                    backup,
                })
                .collect(),
        )
    })
}

fn server_of(pick: Pick) -> usize {
    match pick {
        Pick::Server(server) => server,
        other => panic!("no server: {other:?}"),
    }
}

#[test]
fn a_lease_is_released_once_and_wakes_the_next_in_line() {
    let mut pools = vec![pool(Algorithm::RoundRobin, &[(1, 1, false)])];
    pools[0].max_conns = Some(1);
    let lease = Lease::new(0, server_of(pools[0].pick(None, &[], false)));
    assert_eq!(pools[0].servers()[0].active, 1);
    assert_eq!(pools[0].pick(None, &[], false), Pick::Full);
    pools[0].enqueue(7, false);
    assert_eq!(lease.release(&mut pools, Outcome::Ok), Some(7));
    assert_eq!(pools[0].servers()[0].active, 0);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "dropped without release")]
fn a_lease_dropped_unreleased_is_caught() {
    let _lease = Lease::new(0, 0);
}

#[test]
fn max_conns_makes_requests_wait_in_order() {
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false)]);
    pool.max_conns = Some(1);
    assert_eq!(pool.pick(None, &[], false), Pick::Server(0));
    assert_eq!(pool.pick(None, &[], false), Pick::Full);
    pool.enqueue(7, false);
    pool.release(0, Outcome::Ok);
    // A newcomer queues behind the waiting session.
    assert_eq!(pool.pick(None, &[], false), Pick::Full);
    assert_eq!(pool.next_waiting(), Some(7));
    assert_eq!(pool.pick(None, &[], true), Pick::Server(0));
}

fn shares(pool: &mut Pool, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.servers().len()];
    for _ in 0..picks {
        let server = server_of(pool.pick(None, &[], false));
        counts[server] += 1;
        pool.release(server, Outcome::Ok);
    }
    counts
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_interleaved() {
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false), (2, 3, false)]);
    let order: Vec<usize> = (0..8)
        .map(|_| {
            let server = server_of(pool.pick(None, &[], false));
            pool.release(server, Outcome::Ok);
            server
        })
        .collect();
    assert_eq!(order, vec![1, 0, 1, 1, 1, 0, 1, 1]);
    let mut even = self::pool(
        Algorithm::RoundRobin,
        &[(1, 1, false), (2, 1, false), (3, 1, false)],
    );
    assert_eq!(shares(&mut even, 3000), vec![1000, 1000, 1000]);
}

#[test]
fn random_honours_weights() {
    let mut pool = pool(Algorithm::Random, &[(1, 1, false), (2, 3, false)]);
    let counts = shares(&mut pool, 40_000);
    let share = counts[1] as f64 / 40_000.0;
    assert!((share - 0.75).abs() < 0.02, "{counts:?}");
}

#[test]
fn least_connections_prefers_the_idle_server() {
    let mut pool = pool(Algorithm::LeastConn, &[(1, 1, false), (2, 1, false)]);
    let busy = server_of(pool.pick(None, &[], false));
    for _ in 0..10 {
        let server = server_of(pool.pick(None, &[], false));
        assert_ne!(server, busy);
        pool.release(server, Outcome::Ok);
    }
}

#[test]
fn hash_is_stable_case_insensitive_and_moves_few_keys() {
    let servers: Vec<(u16, u32, bool)> = (1..=5).map(|port| (port, 1, false)).collect();
    let mut five = pool(Algorithm::Hash, &servers);
    let mut four = pool(Algorithm::Hash, &servers[..4]);
    let mut moved = 0;
    let keys = 10_000;
    for index in 0..keys {
        let key = format!("host{index}.example.com");
        let with_five = server_of(five.pick(Some(key.as_bytes()), &[], false));
        assert_eq!(
            server_of(five.pick(Some(key.to_uppercase().as_bytes()), &[], false)),
            with_five
        );
        let with_four = server_of(four.pick(Some(key.as_bytes()), &[], false));
        if with_five == 4 {
            continue; // the removed server's keys must move
        }
        moved += usize::from(with_four != with_five);
    }
    assert_eq!(moved, 0, "keys of remaining servers moved");
}

#[test]
fn adding_a_server_moves_about_one_in_n_keys() {
    let servers: Vec<(u16, u32, bool)> = (1..=5).map(|port| (port, 1, false)).collect();
    let mut four = pool(Algorithm::Hash, &servers[..4]);
    let mut five = pool(Algorithm::Hash, &servers);
    let keys = 10_000;
    let mut moved = 0;
    for index in 0..keys {
        let key = format!("user-{index}");
        let before = four.pick(Some(key.as_bytes()), &[], false);
        let after = five.pick(Some(key.as_bytes()), &[], false);
        if before != after {
            assert_eq!(after, Pick::Server(4), "a key moved between old servers");
            moved += 1;
        }
    }
    let share = moved as f64 / keys as f64;
    eprintln!(
        "adding a 5th server moved {moved} of {keys} keys ({:.1}%)",
        share * 100.0
    );
    // Ideal is 1/5.
    assert!((share - 0.2).abs() < 0.02, "{share}");
}

#[test]
fn failed_servers_rest_and_backups_stand_in() {
    let mut pool = pool(
        Algorithm::RoundRobin,
        &[(1, 1, false), (2, 1, false), (3, 1, true)],
    );
    for server in [0, 1] {
        pool.servers[server].active += 1;
        pool.release(server, Outcome::ConnectFailed);
    }
    for _ in 0..4 {
        assert_eq!(pool.pick(None, &[], false), Pick::Server(2));
    }
    assert_eq!(pool.pick(None, &[2], false), Pick::NoneUp);
    pool.release(0, Outcome::Ok);
    assert_eq!(pool.pick(None, &[], false), Pick::Server(0));
}
