//! The map dashboard's static files (built by `scripts/dashboard.sh` into `web/dist`), served
//! from `api.dashboard_dir`. Pure helpers decide which request path maps to which file and its
//! content type; the handler reads the file. The files hold no data, so they need no token: the
//! page asks for one and sends it with every API request.

use std::path::{Path, PathBuf};

/// The file a request path below `/dashboard/` names, or `None` when the path could leave the
/// directory or names a hidden file. An empty path is the index page.
pub fn file_for(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let mut out = dir.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

/// The content type of a dashboard file by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "map" => "application/json",
        "pbf" => "application/x-protobuf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        let d = Path::new("/srv/dash");
        assert_eq!(file_for(d, ""), Some(PathBuf::from("/srv/dash/index.html")));
        assert_eq!(file_for(d, "/"), Some(PathBuf::from("/srv/dash/index.html")));
        assert_eq!(file_for(d, "app.js"), Some(PathBuf::from("/srv/dash/app.js")));
        assert_eq!(file_for(d, "data/countries.geojson"), Some(PathBuf::from("/srv/dash/data/countries.geojson")));
        for bad in ["../etc/passwd", "a/../../x", ".env", "a//b", "a/.git/config", "a\\..\\b", "x\0"] {
            assert_eq!(file_for(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("app.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("app.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("c.geojson")), "application/geo+json");
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
