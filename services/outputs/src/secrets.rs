//! Secret values named in the output configuration: a file `<secrets_dir>/<name>` (a mounted
//! Kubernetes Secret) or the variable `GEOSTREAM_SECRET_<NAME>` (upper case, other characters
//! as `_`), the same convention ingest uses for feed credentials.

use std::path::PathBuf;

/// Resolves secret names.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
}

impl Secrets {
    /// Files in `dir` first, then the environment.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The variable that can hold secret `name`.
    pub fn env_var(name: &str) -> String {
        let upper: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        format!("GEOSTREAM_SECRET_{upper}")
    }

    /// The value without a trailing newline; the problem as text (naming both places to put it).
    pub fn get(&self, name: &str) -> Result<String, String> {
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return Err(format!("secret name {name:?} must be a plain file name"));
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(v) => return Ok(v.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("secret {name:?}: {} could not be read: {e}", path.display())),
            }
        }
        let var = Self::env_var(name);
        std::env::var(&var).map_err(|_| {
            let file = self
                .dir
                .as_ref()
                .map_or_else(|| "a file in sink.secrets_dir".to_owned(), |d| d.join(name).display().to_string());
            format!("secret {name:?} is not available: create {file} or set {var}")
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_first_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook-key"), "k3y\n").unwrap();
        let s = Secrets::new(Some(dir.path().to_path_buf()));
        assert_eq!(s.get("hook-key").unwrap(), "k3y");
        assert_eq!(Secrets::env_var("ops.hook-key"), "GEOSTREAM_SECRET_OPS_HOOK_KEY");
        let e = s.get("not-there-anywhere-xyz").unwrap_err();
        assert!(e.contains("GEOSTREAM_SECRET_NOT_THERE_ANYWHERE_XYZ") && e.contains("not-there-anywhere-xyz"), "{e}");
        assert!(s.get("../x").unwrap_err().contains("plain file name"));
    }
}
