//! govcloud-sample-app: a stand-in for a government web application in the testbed's
//! images (it is not the real application of any image it is pushed as).
//!
//!   govcloud-sample-app [serve]   HTTP/1.1 on 0.0.0.0:$PORT (default 8080)
//!   govcloud-sample-app pause     sleep until SIGTERM/SIGINT (the pod sandbox "pause" image)
//!   govcloud-sample-app crash     print a line, exit 1 after 1 s (CrashLoopBackOff tests)
//!   govcloud-sample-app probe URL GET an http:// URL, print the body, exit 0 on 2xx
//!   govcloud-sample-app put URL BODY  PUT BODY to an http:// URL, exit 0 on 2xx
//!
//! Endpoints: GET /healthz (503 while $DATA_DIR/.unhealthy exists), GET /,
//! PUT|GET|DELETE /data/<name>, GET /checksums, GET /connect?host=H&port=P.
//! Environment: PORT, DATA_DIR (default /data), APP_NAME (default argv[0]), APP_VERSION.

mod client;
mod http;
mod server;
mod sha256;

use std::os::raw::c_int;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: govcloud-sample-app [serve | pause | crash | probe URL | put URL BODY | --version]
  serve (default)  HTTP on 0.0.0.0:$PORT (8080): /healthz, /, /data/<name>, /checksums, /connect?host=H&port=P
  pause            sleep until SIGTERM or SIGINT
  crash            print a line and exit 1 after 1 s
  probe URL        GET an http:// URL, print the body; exit 0 on a 2xx status
  put URL BODY     PUT BODY to an http:// URL, print the answer; exit 0 on a 2xx status
environment: PORT, DATA_DIR (/data), APP_NAME (argv[0]), APP_VERSION";

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

unsafe extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn _exit(status: c_int) -> !;
}

extern "C" fn exit_now(_signum: c_int) {
    // Async-signal-safe. Data files are synced and renamed before a PUT answers, so
    // nothing is lost by not unwinding.
    unsafe { _exit(0) }
}

/// As PID 1 in a container a process gets no default signal actions: without handlers
/// SIGTERM would be ignored and every pod deletion would wait for the grace period.
fn exit_on_termination_signals() {
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: installs a handler that only calls _exit (async-signal-safe).
        unsafe {
            signal(sig, exit_now);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("govcloud-sample-app");
    match args.get(1).map(String::as_str) {
        None | Some("serve") if args.len() <= 2 => serve(argv0),
        Some("pause") if args.len() == 2 => {
            exit_on_termination_signals();
            loop {
                std::thread::park();
            }
        }
        Some("crash") if args.len() == 2 => {
            println!("govcloud-sample-app: crashing in 1s on purpose (exit 1)");
            std::thread::sleep(Duration::from_secs(1));
            ExitCode::from(1)
        }
        Some("probe") if args.len() == 3 => match client::probe(&args[2]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("probe: {e}");
                ExitCode::from(2)
            }
        },
        Some("put") if args.len() == 4 => match client::put(&args[2], &args[3]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("put: {e}");
                ExitCode::from(2)
            }
        },
        Some("--version") if args.len() == 2 => {
            println!("govcloud-sample-app {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(argv0: &str) -> ExitCode {
    exit_on_termination_signals();
    let port = match std::env::var("PORT") {
        Ok(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("PORT='{p}' is not a port number");
                return ExitCode::from(2);
            }
        },
        Err(_) => 8080,
    };
    let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let app_name = non_empty("APP_NAME").unwrap_or_else(|| argv0.rsplit('/').next().unwrap_or(argv0).to_string());
    let config = server::Config {
        port,
        data_dir: PathBuf::from(non_empty("DATA_DIR").unwrap_or_else(|| "/data".to_string())),
        app_name,
        version: non_empty("APP_VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
    };
    match server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("govcloud-sample-app: listening on 0.0.0.0:{port}: {e}");
            ExitCode::from(1)
        }
    }
}
