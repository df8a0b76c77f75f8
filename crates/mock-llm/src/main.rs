//! mock-llm: a scriptable mock of the OpenAI Chat Completions, OpenAI
//! Responses and Anthropic Messages APIs, for testing fusion-wasm.
//!
//! Usage: `mock-llm --port N [--host 127.0.0.1] [--exit-after SECS]`.
//! Behaviour is scripted by the model name (see `script.rs`); every call is
//! logged and served at `GET /__mock/calls` (`POST /__mock/reset` clears).
//! Requests are validated the way the real APIs do (`validate/`): what a real
//! provider refuses gets that provider's 400, and the log marks it `rejected`.

mod apis;
mod chat;
mod convo;
mod http;
mod messages;
mod recorder;
mod responses;
mod script;
mod server;
mod validate;

use std::io::Write;
use std::net::TcpListener;
use std::process::exit;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: mock-llm --port N [--host 127.0.0.1] [--exit-after SECS]";

#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
    exit_after: Option<f64>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        host: "127.0.0.1".to_string(),
        port: 0,
        exit_after: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                out.port = v.parse().map_err(|_| format!("bad port: {v}"))?;
            }
            "--host" => out.host = value()?,
            "--exit-after" => {
                let v = value()?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --exit-after: {v}"))?;
                if !secs.is_finite() || secs < 0.0 {
                    return Err(format!("bad --exit-after: {v}"));
                }
                out.exit_after = Some(secs);
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(out)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-llm: {e}\n{USAGE}");
            exit(2);
        }
    };
    if let Some(secs) = args.exit_after {
        thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(secs));
            exit(0);
        });
    }
    let listener = match TcpListener::bind((args.host.as_str(), args.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-llm: cannot bind {}:{}: {e}", args.host, args.port);
            exit(1);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-llm: no local address: {e}");
            exit(1);
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "mock-llm listening on {addr}");
    let _ = stdout.flush();
    server::serve(listener, Arc::new(recorder::Recorder::default()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_cli() {
        assert_eq!(
            args(&["--port", "8080", "--exit-after", "30"]).unwrap(),
            Args {
                host: "127.0.0.1".into(),
                port: 8080,
                exit_after: Some(30.0)
            }
        );
        assert_eq!(
            args(&["--port=0", "--host=0.0.0.0"]).unwrap(),
            Args {
                host: "0.0.0.0".into(),
                port: 0,
                exit_after: None
            }
        );
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--exit-after", "-1"]).is_err());
    }
}
