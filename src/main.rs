//! rsp: a reverse proxy and HTTP load balancer scripted in Lua.

use std::path::Path;

use rsp::{config, event_loop, limits};
use std::process::ExitCode;

const USAGE: &str = "\
rsp: a reverse proxy and HTTP load balancer scripted in Lua

Usage:
  rsp CONFIG.lua           run the proxy with this config
  rsp --check CONFIG.lua   check the config, print any problem, exit 0 (valid) or 1
  rsp --version            print the version
  rsp --help               print this help

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let loaded = match config::load(Path::new(path)) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("rsp: config error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        println!("rsp: {path}: config is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(error) = limits::raise_open_file_limit() {
        log::warn!("could not raise the open file limit: {error}");
    }
    let mut event_loop = match event_loop::EventLoop::new(loaded, Path::new(path).to_path_buf()) {
        Ok(event_loop) => event_loop,
        Err(error) => {
            eprintln!("rsp: {error}");
            return ExitCode::FAILURE;
        }
    };
    match event_loop.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("event loop failed: {error}");
            ExitCode::FAILURE
        }
    }
}
