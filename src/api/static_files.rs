//! The chat page's files from `web_dir`: `index.html` at `/`, and
//! top-level files whose names and extensions are on a fixed allow-list
//! (so no path can leave the folder: no `/`, no `..`, no dotfiles), with the
//! content types ES modules need. [`page_files`] lists them at start-up; the
//! router registers each as a public route of its own.

use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::state::ApiState;

/// Content type by extension; anything else is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "webmanifest" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// A plain file name: letters, digits, `-`, `_`, `.`; not starting with a dot.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

async fn serve(state: &ApiState, name: &str) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::not_found(&format!("/{name}"));
    if !is_safe_name(name) {
        return Err(not_found());
    }
    let kind = content_type(name).ok_or_else(not_found)?;
    let path: PathBuf = state.config.web_dir.join(name);
    let bytes = web::block(move || std::fs::read(path))
        .await
        .map_err(|e| ApiError::internal(format!("could not read a static file: {e}")))?
        .map_err(|_| not_found())?;
    Ok(HttpResponse::Ok()
        .content_type(kind)
        // The page is small and changes with the server: always revalidate.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(bytes))
}

pub async fn index(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    serve(&state, "index.html").await
}

pub async fn file(state: web::Data<ApiState>, name: String) -> Result<HttpResponse, ApiError> {
    serve(&state, &name).await
}

/// The files of `web_dir` the page may serve (plain names, known types),
/// sorted. A missing or unreadable folder serves no files (`/` then answers
/// 404); the API does not need the page.
pub fn page_files(web_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(web_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_safe_name(name) && content_type(name).is_some())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_allow_listed_names_pass() {
        for ok in ["index.html", "app.js", "style.css", "sse.js", "a-b_c.1.js"] {
            assert!(is_safe_name(ok) && content_type(ok).is_some(), "{ok}");
        }
        for bad in [
            "..",
            "../Cargo.toml",
            ".env",
            "a/b.js",
            "a\\b.js",
            "x..js",
            "",
            "%2e%2e",
        ] {
            assert!(!is_safe_name(bad), "{bad}");
        }
        assert_eq!(content_type("Cargo.toml"), None);
        assert_eq!(content_type("noext"), None);
        assert_eq!(
            content_type("app.js"),
            Some("text/javascript; charset=utf-8")
        );
    }
}
