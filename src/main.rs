//! rsp: a reverse proxy and HTTP load balancer scripted in Lua.

use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use rsp::hook::Hook;
use rsp::worker::EventLoop;
use rsp::workers::{Shared, Worker};
use rsp::{config, limits};

const USAGE: &str = "\
rsp: a reverse proxy and HTTP load balancer scripted in Lua

Usage:
  rsp CONFIG.lua           run the proxy with this config
  rsp --check CONFIG.lua   check the config, print any problem, exit 0 (valid) or 1
  rsp --version            print the version
  rsp --help               print this help

With `workers = N` in the config, rsp runs N event loops on N threads,
sharing the listen addresses (SO_REUSEPORT).

Logging goes to stderr; set RUST_LOG (error, warn, info, debug) to choose
how much. The default is info.
";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (check_only, path) = match arguments.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--help" | "-h"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["--version" | "-V"] => {
            println!("rsp {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["--check", path] => (true, path),
        [path] if !path.starts_with('-') => (false, path),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    rsp::logging::init();

    let loaded = match config::load(Path::new(path)) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("rsp: config error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        println!("rsp: {path}: config is valid");
        let hooks: Vec<&str> = loaded.hooks.defined().map(Hook::name).collect();
        if hooks.is_empty() {
            println!("hooks: none (every request goes to the pool \"default\")");
        } else {
            println!("hooks: {}", hooks.join(", "));
        }
        for function in &loaded.other_functions {
            println!("not a hook, never called by rsp: {function}");
        }
        return ExitCode::SUCCESS;
    }
    for function in &loaded.other_functions {
        log::warn!("{function}: a global function that is not a hook rsp calls");
    }
    if let Err(error) = limits::raise_open_file_limit() {
        log::warn!("could not raise the open file limit: {error}");
    }
    let path = Path::new(path).to_path_buf();
    let workers = loaded.config.workers;
    if workers == 1 {
        return match EventLoop::new(loaded, path, Worker::single()) {
            Ok(mut event_loop) => finish(event_loop.run().map_err(|error| error.to_string())),
            Err(error) => {
                eprintln!("rsp: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // A Lua state stays on its thread: each worker reads the config itself.
    drop(loaded);
    run_workers(workers, &path)
}

/// Starts `count` workers, each on its own thread with its own event loop,
/// and waits for them all to finish.
fn run_workers(count: usize, path: &Path) -> ExitCode {
    let shared = Shared::new(count);
    let (started_sender, started) = mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for index in 0..count {
        let worker = Worker {
            index,
            count,
            shared: Some(shared.clone()),
        };
        let (path, started) = (path.to_path_buf(), started_sender.clone());
        let spawned = thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let event_loop = config::load(&path)
                    .map_err(|error| format!("config error: {error}"))
                    .and_then(|loaded| {
                        EventLoop::new(loaded, path, worker).map_err(|error| error.to_string())
                    });
                match event_loop {
                    Ok(mut event_loop) => {
                        let _ = started.send(Ok(()));
                        event_loop.run().map_err(|error| error.to_string())
                    }
                    Err(error) => {
                        let _ = started.send(Err(error.clone()));
                        Err(error)
                    }
                }
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                eprintln!("rsp: cannot start worker {index}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    for _ in 0..count {
        if let Ok(Err(error)) = started.recv() {
            // Returning from main ends the workers that did start.
            eprintln!("rsp: {error}");
            return ExitCode::FAILURE;
        }
    }
    log::info!("{count} workers running");
    let mut outcome = Ok(());
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => outcome = Err(error),
            Err(_) => outcome = Err("a worker panicked".to_owned()),
        }
    }
    finish(outcome)
}

fn finish(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("event loop failed: {error}");
            ExitCode::FAILURE
        }
    }
}
