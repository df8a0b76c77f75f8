//! `GET /playground/…`: the demo's playground page, read from the directory
//! given with `--playground DIR` (read on every request, so edits show at
//! once). Only plain file names in that directory are served, never a path.

use std::path::PathBuf;
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// URL prefix of the playground.
pub const PREFIX: &str = "/playground";

/// Serves the playground from `dir` (`--playground DIR`).
pub fn enable(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Status, content type and body for a path under [`PREFIX`], or `None` when
/// no playground is configured (the request is then echoed like any other).
pub fn get(path: &str) -> Option<(u16, &'static str, Vec<u8>)> {
    let dir = DIR.get()?;
    let rest = path.strip_prefix(PREFIX)?;
    let name = match rest {
        "" => return Some((301, "text/plain", Vec::new())),
        "/" => "index.html",
        _ => rest.strip_prefix('/')?,
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let ct = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    if !plain {
        return Some((404, "text/plain", b"not found".to_vec()));
    }
    match std::fs::read(dir.join(name)) {
        Ok(body) => Some((200, ct, body)),
        Err(_) => Some((404, "text/plain", b"not found".to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_plain_names_only() {
        let dir = std::env::temp_dir().join(format!("mock-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        enable(dir.clone());
        assert_eq!(get("/playground/").unwrap().0, 200);
        assert_eq!(get("/playground/").unwrap().1, "text/html; charset=utf-8");
        assert_eq!(get("/playground").unwrap().0, 301);
        assert_eq!(get("/playground/../Cargo.toml").unwrap().0, 404);
        assert_eq!(get("/playground/missing.js").unwrap().0, 404);
        assert!(get("/other").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
