//! Unit tests of the pools: picking, weights, backups, queues, leases.

use super::outage::FIRST_REST;
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
    pool.release(0, Outcome::Ok, timer::now());
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
        pool.release(server, Outcome::Ok, timer::now());
    }
    counts
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_interleaved() {
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false), (2, 3, false)]);
    let order: Vec<usize> = (0..8)
        .map(|_| {
            let server = server_of(pool.pick(None, &[], false));
            pool.release(server, Outcome::Ok, timer::now());
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
        pool.release(server, Outcome::Ok, timer::now());
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
    let start = Instant::now();
    timer::pretend(start);
    let mut pool = pool(
        Algorithm::RoundRobin,
        &[(1, 1, false), (2, 1, false), (3, 1, true)],
    );
    for server in [0, 1] {
        pool.servers[server].active += 1;
        pool.release(server, Outcome::ConnectFailed, start);
    }
    for _ in 0..4 {
        assert_eq!(pool.pick(None, &[], false), Pick::Server(2));
    }
    assert_eq!(pool.pick(None, &[2], false), Pick::NoneUp);
    // A late success of an exchange begun before the rest ends nothing.
    pool.release(0, Outcome::Ok, start);
    assert_eq!(pool.pick(None, &[2], false), Pick::NoneUp);
    timer::pretend(start + FIRST_REST);
    assert_eq!(pool.pick(None, &[], false), Pick::Server(0));
}

const SECOND: Duration = Duration::from_secs(1);

fn ejecting(servers: usize, eject: EjectConfig) -> Pool {
    let ports: Vec<(u16, u32, bool)> = (1..=servers as u16).map(|port| (port, 1, false)).collect();
    let mut pool = pool(Algorithm::RoundRobin, &ports);
    pool.eject = Some(eject);
    pool
}

/// One exchange with `server`, picked and released at `at`.
fn exchange(pool: &mut Pool, server: usize, outcome: Outcome, at: Instant) -> Option<Outage> {
    timer::pretend(at);
    pool.servers[server].active += 1;
    pool.release(server, outcome, at)
}

fn state(pool: &Pool, server: usize, at: Instant) -> ServerState {
    pool.servers()[server].state(at)
}

#[test]
fn concurrent_failed_connects_make_one_rest() {
    let start = Instant::now();
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false), (2, 1, false)]);
    // 50 exchanges picked (and connecting) before the server went away...
    for _ in 0..50 {
        pool.servers[0].active += 1;
    }
    // ... fail one after another, over 100 ms.
    let outages: Vec<Outage> = (0..50)
        .filter_map(|index| {
            timer::pretend(start + SECOND + Duration::from_millis(index * 2));
            pool.release(0, Outcome::ConnectFailed, start)
        })
        .collect();
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert_eq!(outages[0].length(), FIRST_REST);
    assert_eq!(outages[0].step, 1);
    assert_eq!(pool.servers()[0].active, 0);
    assert_eq!(pool.servers()[0].stats.errors, 50);
    let rested_at = start + SECOND;
    assert_eq!(state(&pool, 0, rested_at), ServerState::Resting);
    assert_eq!(state(&pool, 0, rested_at + FIRST_REST), ServerState::Up);
}

#[test]
fn a_lease_remembers_when_its_server_was_picked() {
    let start = Instant::now();
    timer::pretend(start);
    let mut pools = vec![pool(Algorithm::RoundRobin, &[(1, 1, false), (2, 1, false)])];
    let early = Lease::new(0, server_of(pools[0].pick(None, &[], false)));
    let server = early.server();
    timer::pretend(start + SECOND);
    pools[0].servers[server].active += 1;
    let rest = pools[0].release(server, Outcome::ConnectFailed, start + SECOND);
    assert!(rest.is_some());
    // The lease picked before the rest began fails too: old news.
    timer::pretend(start + SECOND + Duration::from_millis(10));
    let _ = early.release(&mut pools, Outcome::ConnectFailed);
    let outage = pools[0].servers()[server]
        .record
        .current(start + SECOND)
        .copied();
    assert_eq!(outage, rest);
    assert_eq!(pools[0].servers()[server].active, 0);
}

#[test]
fn consecutive_rests_double_up_to_the_most() {
    let mut at = Instant::now();
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false)]);
    let mut lengths = Vec::new();
    for _ in 0..8 {
        let outage = exchange(&mut pool, 0, Outcome::ConnectFailed, at).expect("a rest");
        lengths.push(outage.length().as_secs());
        at = outage.until;
        // The next exchange is picked once the server is back.
        timer::pretend(at);
        assert_eq!(pool.pick(None, &[], false), Pick::Server(0));
        pool.servers[0].active -= 1;
    }
    assert_eq!(lengths, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    // Answering well for as long as it was last out forgives the back-off.
    assert!(exchange(&mut pool, 0, Outcome::Ok, at + SECOND).is_none());
    let outage = exchange(&mut pool, 0, Outcome::ConnectFailed, at + 2 * SECOND).unwrap();
    assert_eq!(outage.length(), 30 * SECOND, "not forgiven yet");
    at = outage.until;
    exchange(&mut pool, 0, Outcome::Ok, at + 30 * SECOND);
    let outage = exchange(&mut pool, 0, Outcome::ConnectFailed, at + 31 * SECOND).unwrap();
    assert_eq!(outage.length(), FIRST_REST);
}

#[test]
fn five_5xx_in_a_row_eject_until_base_then_longer() {
    let eject = EjectConfig::default();
    let start = Instant::now();
    let mut pool = ejecting(2, eject);
    for count in 1..5 {
        assert!(
            exchange(&mut pool, 0, Outcome::ServerError, start).is_none(),
            "{count}"
        );
    }
    let outage = exchange(&mut pool, 0, Outcome::ServerError, start).expect("ejected");
    assert_eq!(outage.cause, Cause::Consecutive5xx(5));
    assert_eq!(outage.length(), eject.base);
    assert_eq!(pool.servers()[0].stats.ejections, 1);
    assert_eq!(state(&pool, 0, start), ServerState::Ejected);
    // No request goes to it while it is out...
    timer::pretend(start + SECOND);
    for _ in 0..10 {
        assert_eq!(pool.pick(None, &[], false), Pick::Server(1));
        pool.release(1, Outcome::Ok, start + SECOND);
    }
    // ... and it is back after base.
    let back = start + eject.base;
    timer::pretend(back);
    let picked: Vec<usize> = (0..4)
        .map(|_| {
            let server = server_of(pool.pick(None, &[], false));
            pool.release(server, Outcome::Ok, back);
            server
        })
        .collect();
    assert!(picked.contains(&0), "{picked:?}");
    assert_eq!(state(&pool, 0, back), ServerState::Up);
    // A second ejection in a row lasts twice as long.
    for _ in 0..5 {
        exchange(&mut pool, 0, Outcome::ServerError, back + SECOND);
    }
    assert_eq!(state(&pool, 0, back + SECOND), ServerState::Ejected);
    assert_eq!(
        pool.servers()[0]
            .record
            .current(back + SECOND)
            .unwrap()
            .length(),
        2 * eject.base
    );
    // Active checks passing do not end an ejection.
    pool.servers[0].record.checks_passed(back + 2 * SECOND);
    assert_eq!(state(&pool, 0, back + 2 * SECOND), ServerState::Ejected);
}

#[test]
fn errors_in_a_row_eject_and_a_good_answer_resets_the_streaks() {
    let eject = EjectConfig::default();
    let start = Instant::now();
    let mut pool = ejecting(2, eject);
    for _ in 0..4 {
        exchange(&mut pool, 0, Outcome::ServerError, start);
    }
    exchange(&mut pool, 0, Outcome::Ok, start);
    for _ in 0..4 {
        assert!(exchange(&mut pool, 0, Outcome::ServerError, start).is_none());
    }
    exchange(&mut pool, 0, Outcome::Ok, start);
    for _ in 0..2 {
        exchange(&mut pool, 0, Outcome::Failed, start);
    }
    exchange(&mut pool, 0, Outcome::Ok, start);
    for _ in 0..2 {
        assert!(exchange(&mut pool, 0, Outcome::Failed, start).is_none());
    }
    assert_eq!(state(&pool, 0, start), ServerState::Up);
    let outage = exchange(&mut pool, 0, Outcome::Failed, start).expect("ejected");
    assert_eq!(outage.cause, Cause::ConsecutiveErrors(3));
}

#[test]
fn max_percent_caps_the_servers_ejected_at_once() {
    let start = Instant::now();
    for (servers, max_percent, most) in [
        (2, 50, 1),
        (3, 50, 1),
        (4, 50, 2),
        (1, 50, 0),
        (3, 100, 3),
        (5, 0, 0),
    ] {
        let mut pool = ejecting(
            servers,
            EjectConfig {
                max_percent,
                ..EjectConfig::default()
            },
        );
        for server in 0..servers {
            for _ in 0..5 {
                exchange(&mut pool, server, Outcome::ServerError, start);
            }
        }
        let ejected = (0..servers)
            .filter(|&server| state(&pool, server, start) == ServerState::Ejected)
            .count();
        assert_eq!(
            ejected, most,
            "{servers} servers, max_percent {max_percent}"
        );
    }
    // A refused ejection happens once a slot frees, on the next 5xx.
    let mut pool = ejecting(2, EjectConfig::default());
    for server in [0, 1] {
        for _ in 0..5 {
            exchange(&mut pool, server, Outcome::ServerError, start);
        }
    }
    let back = start + EjectConfig::default().base;
    assert_eq!(state(&pool, 1, back), ServerState::Up);
    let outage = exchange(&mut pool, 1, Outcome::ServerError, back).expect("ejected now");
    assert_eq!(outage.cause, Cause::Consecutive5xx(6));
}

#[test]
fn without_eject_5xx_answers_eject_nothing() {
    let start = Instant::now();
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false), (2, 1, false)]);
    for _ in 0..100 {
        assert!(exchange(&mut pool, 0, Outcome::ServerError, start).is_none());
        assert!(exchange(&mut pool, 1, Outcome::Failed, start).is_none());
    }
    assert_eq!(state(&pool, 0, start), ServerState::Up);
    assert_eq!(state(&pool, 1, start), ServerState::Up);
}

#[test]
fn passing_checks_end_a_rest() {
    let start = Instant::now();
    let mut pool = pool(Algorithm::RoundRobin, &[(1, 1, false)]);
    exchange(&mut pool, 0, Outcome::ConnectFailed, start).expect("a rest");
    pool.servers[0]
        .record
        .checks_passed(start + Duration::from_millis(100));
    assert_eq!(
        state(&pool, 0, start + Duration::from_millis(100)),
        ServerState::Up
    );
}

#[test]
fn a_reload_keeps_the_records_of_surviving_servers() {
    let start = Instant::now();
    let mut old = ejecting(2, EjectConfig::default());
    for _ in 0..5 {
        exchange(&mut old, 0, Outcome::ServerError, start);
    }
    exchange(&mut old, 1, Outcome::ConnectFailed, start);
    let mut new = ejecting(3, EjectConfig::default());
    new.servers.swap(0, 2);
    new.inherit(&old);
    assert_eq!(new.servers()[2].record, old.servers()[0].record);
    assert_eq!(state(&new, 2, start), ServerState::Ejected);
    assert_eq!(state(&new, 1, start), ServerState::Resting);
    assert_eq!(state(&new, 0, start), ServerState::Up);
    assert_eq!(new.servers()[2].stats.ejections, 1);
}

#[test]
fn merged_stats_show_the_worst_outage() {
    let start = Instant::now();
    let mut one = ejecting(2, EjectConfig::default());
    let mut other = ejecting(2, EjectConfig::default());
    for _ in 0..5 {
        exchange(&mut other, 0, Outcome::ServerError, start);
    }
    exchange(&mut one, 0, Outcome::ConnectFailed, start);
    exchange(&mut one, 1, Outcome::ConnectFailed, start);
    timer::pretend(start);
    one.absorb(&other);
    assert_eq!(state(&one, 0, start), ServerState::Ejected);
    assert_eq!(state(&one, 1, start), ServerState::Resting);
    assert_eq!(one.servers()[0].stats.ejections, 1);
}

#[test]
fn rests_are_logged_with_their_place_in_a_row() {
    assert_eq!(in_a_row(1), "");
    assert_eq!(in_a_row(2), ", the 2nd in a row");
    assert_eq!(in_a_row(3), ", the 3rd in a row");
    assert_eq!(in_a_row(11), ", the 11th in a row");
    assert_eq!(in_a_row(21), ", the 21st in a row");
}
