//! Connection handling and routing.

use std::io::{self, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::apis::{Api, Reply};
use crate::convo::{decide, Answer};
use crate::http::{self, Chunked, Pace, Request};
use crate::recorder::{CallId, NewCall, Recorder};
use crate::script::Script;
use crate::validate;

/// Stack size of connection threads: they only parse and render JSON.
const STACK: usize = 256 * 1024;
/// How long `hang` waits before closing without an answer.
const HANG: Duration = Duration::from_secs(300);

/// Accepts connections forever, one thread each.
pub fn serve(listener: TcpListener, rec: Arc<Recorder>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let rec = Arc::clone(&rec);
                let spawned = thread::Builder::new()
                    .name("mock-conn".into())
                    .stack_size(STACK)
                    .spawn(move || handle(stream, &rec));
                if let Err(e) = spawned {
                    eprintln!("mock-llm: cannot spawn connection thread: {e}");
                }
            }
            Err(e) => {
                // E.g. out of file descriptors: back off a little.
                eprintln!("mock-llm: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What to do with the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepOpen,
    Close,
}

fn handle(stream: TcpStream, rec: &Recorder) {
    let _ = stream.set_nodelay(true);
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut reader, &mut w) {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let body = json!({ "error": e.to_string() }).to_string();
                    let _ = http::write_full(&mut w, 400, &json_ct(), body.as_bytes(), false, true);
                }
                break;
            }
        };
        let keep_alive = req.keep_alive();
        match route(&req, &mut w, rec, keep_alive) {
            Ok(Next::KeepOpen) if keep_alive => {}
            _ => break,
        }
    }
    let _ = w.shutdown(Shutdown::Both);
}

fn json_ct() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json".to_string())]
}

fn route(req: &Request, w: &mut TcpStream, rec: &Recorder, keep: bool) -> io::Result<Next> {
    let path = req.path();
    match path {
        "/__mock/calls" => {
            let body = rec.calls_json();
            http::write_full(
                w,
                200,
                &json_ct(),
                body.as_bytes(),
                keep,
                req.method != "HEAD",
            )?;
            return Ok(Next::KeepOpen);
        }
        "/__mock/script" => {
            let ok = serde_json::from_slice::<Value>(&req.body)
                .map(|v| rec.add_scripts(&v))
                .unwrap_or(false);
            let (status, body): (u16, &[u8]) = if ok {
                (200, b"{\"ok\":true}")
            } else {
                (
                    400,
                    b"{\"error\":\"expected {\\\"model\\\": \\\"directives\\\"}\"}",
                )
            };
            http::write_full(w, status, &json_ct(), body, keep, true)?;
            return Ok(Next::KeepOpen);
        }
        "/__mock/reset" => {
            rec.reset();
            http::write_full(w, 200, &json_ct(), b"{\"ok\":true}", keep, true)?;
            return Ok(Next::KeepOpen);
        }
        _ => {}
    }
    match Api::from_path(path) {
        Some(api) if req.method == "POST" => llm(api, req, w, rec, keep),
        _ => echo(req, w, rec, keep),
    }
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Any non-LLM request: answer what was received.
fn echo(req: &Request, w: &mut TcpStream, rec: &Recorder, keep: bool) -> io::Result<Next> {
    let logged =
        serde_json::from_slice(&req.body).unwrap_or_else(|_| Value::String(lossy(&req.body)));
    let id = rec.record(NewCall {
        method: &req.method,
        path: &req.target,
        api: "other",
        model: None,
        headers: &req.headers,
        body: logged,
        raw: &req.body,
    });
    let body = json!({
        "echo": true,
        "method": req.method,
        "path": req.target,
        "body": lossy(&req.body),
    })
    .to_string();
    let res = http::write_full(
        w,
        200,
        &json_ct(),
        body.as_bytes(),
        keep,
        req.method != "HEAD",
    );
    rec.finish(id);
    res.map(|()| Next::KeepOpen)
}

fn llm(api: Api, req: &Request, w: &mut TcpStream, rec: &Recorder, keep: bool) -> io::Result<Next> {
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    let model = body
        .as_ref()
        .and_then(|b| b.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let logged = body
        .clone()
        .unwrap_or_else(|| Value::String(lossy(&req.body)));
    let id = rec.record(NewCall {
        method: &req.method,
        path: &req.target,
        api: api.name(),
        model: Some(&model),
        headers: &req.headers,
        body: logged,
        raw: &req.body,
    });
    let script = Script::parse(&rec.scripted_model(&model));
    let res = answer(
        api,
        (body, &req.headers),
        model,
        &script,
        (rec, id),
        w,
        keep,
    );
    rec.finish(id);
    res
}

fn answer(
    api: Api,
    (body, req_headers): (Option<Value>, &[(String, String)]),
    model: String,
    script: &Script,
    (rec, id): (&Recorder, CallId),
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<Next> {
    let seq = id.seq;
    if script.latency_ms > 0 {
        thread::sleep(Duration::from_millis(script.latency_ms));
    }
    if script.hang {
        thread::sleep(HANG);
        return Ok(Next::Close);
    }
    if script.reset {
        return Ok(Next::Close);
    }
    let mut headers = json_ct();
    headers.push(("x-request-id", format!("req_mock_{seq}")));
    let pace = Pace {
        drip: Duration::from_millis(script.slow_body_ms),
        cut: script.cut,
    };
    // After a cut body the connection is closed: the peer sees a premature end.
    let next = if script.cut {
        Next::Close
    } else {
        Next::KeepOpen
    };
    if script.garbage {
        http::write_paced(w, 200, &headers, GARBAGE, keep, pace)?;
        return Ok(next);
    }
    let Some(body) = body else {
        let err = api
            .error(400, "mock-llm: request body is not valid JSON")
            .to_string();
        http::write_full(w, 400, &headers, err.as_bytes(), keep, true)?;
        return Ok(Next::KeepOpen);
    };
    let ctx = validate::Ctx {
        headers: req_headers,
        script,
        issued: &|id| rec.issued(id),
    };
    if let Err(invalid) = validate::check(api, &body, &ctx) {
        let err = invalid.body(api);
        rec.set(id, "rejected", err.clone());
        http::write_full(w, 400, &headers, err.to_string().as_bytes(), keep, true)?;
        return Ok(Next::KeepOpen);
    }
    if script.no_credits {
        let (status, err) = api.no_credits();
        http::write_full(w, status, &headers, err.to_string().as_bytes(), keep, true)?;
        return Ok(Next::KeepOpen);
    }
    if let Some(status) = script.status.filter(|s| *s != 200) {
        let msg = format!("mock-llm: status {status} requested by model {model}");
        let err = api.error(status, &msg).to_string();
        if status == 429 {
            headers.push(("retry-after", "1".to_string()));
        }
        http::write_paced(w, status, &headers, err.as_bytes(), keep, pace)?;
        return Ok(next);
    }
    let stream = script.sse || body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut convo = api.parse(&body);
    convo.tool_choice_none = body
        .get("tool_choice")
        .is_some_and(|c| c == "none" || c.get("type").and_then(Value::as_str) == Some("none"));
    let reply = Reply {
        seq,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        input_tokens: convo.input_words(),
        cached_tokens: script.cached.min(convo.input_words()),
        reasoning_tokens: script.reasoning,
        answer: if script.refuse {
            Answer::Text(format!(
                "I'm sorry, but I can't help with that. ({} refused)",
                script.base
            ))
        } else {
            decide(&convo, script, &model)
        },
        refusal: script.refuse,
        cite: script.cite,
        model,
        request: body,
    };
    rec.set_usage(
        id,
        json!({
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens(),
            "cached_tokens": reply.cached_tokens,
            "reasoning_tokens": reply.reasoning_tokens,
        }),
    );
    if stream {
        write_sse(api, &reply, script, w, keep)?;
    } else {
        let text = api.body(&reply).to_string();
        let bytes = text.as_bytes();
        let bytes = if script.malformed {
            bytes.get(..bytes.len() / 2).unwrap_or(bytes)
        } else {
            bytes
        };
        http::write_paced(w, 200, &headers, bytes, keep, pace)?;
    }
    Ok(next)
}

/// The body of `garbage`: not UTF-8, not JSON, not SSE.
const GARBAGE: &[u8] = b"\xff\xfe{\"id\": \x80\x81\xc3\x28 \xf0\x28\x8c\x28 data: \xed\xa0\x80}";

fn write_sse(
    api: Api,
    reply: &Reply,
    script: &Script,
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<()> {
    let headers = [
        ("content-type", "text/event-stream".to_string()),
        ("cache-control", "no-cache".to_string()),
        ("x-request-id", format!("req_mock_{}", reply.seq)),
    ];
    let mut events = api.events(reply);
    let mut tail: Option<String> = None;
    if script.malformed {
        // Keep the first half of the events plus half of the next one.
        let keep_n = (events.len() / 2).max(1);
        let rest = events.split_off(keep_n.min(events.len()));
        tail = rest.first().map(|e| {
            let cut = (1..=e.len() / 2)
                .rev()
                .find(|i| e.is_char_boundary(*i))
                .unwrap_or(0);
            e.get(..cut).unwrap_or("").to_string()
        });
    }
    let n = events.len() + usize::from(tail.is_some());
    let mut delay = Duration::from_millis(script.chunk_delay_ms);
    if script.slow_body_ms > 0 {
        // Dripped: the whole stream takes about `slow_body` milliseconds.
        delay = delay.max(Duration::from_millis(script.slow_body_ms) / n.max(1) as u32);
    }
    let mut out = Chunked::start(w, 200, &headers, keep)?;
    if script.sse_comment {
        out.chunk(b": OPENROUTER PROCESSING\n\nid: 1\nretry: 1000\n\n")?;
    }
    // `cut`: half the events, then the connection closes inside the chunked body.
    let sent = if script.cut { n / 2 } else { n };
    for (i, ev) in events.iter().chain(tail.iter()).take(sent).enumerate() {
        if (i > 0 || script.slow_body_ms > 0) && !delay.is_zero() {
            thread::sleep(delay);
        }
        out.chunk(ev.as_bytes())?;
    }
    if script.cut {
        return Ok(());
    }
    out.finish()
}
