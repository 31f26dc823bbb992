//! The pure part of the broker: where things live in the data dir, what a cluster id file may hold,
//! and the URLs tansu is given. No I/O, so every rule here is unit-tested.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use url::Url;

/// The file holding the cluster id minted on first start. tansu keys every topic, offset and
/// producer row by cluster id, so a restart under a new id would find an empty broker.
pub const CLUSTER_ID_FILE: &str = "broker-cluster-id";
/// The sqlite database tansu keeps topics, records, groups and transactions in.
pub const DATABASE_FILE: &str = "broker.db";
/// Held (flock) for as long as a broker runs on the data dir: two brokers writing one database
/// would each believe it owns every partition.
pub const LOCK_FILE: &str = "broker.lock";

/// The longest cluster id accepted; Kafka's own are 22 characters.
const MAX_CLUSTER_ID_LEN: usize = 64;

/// Why the contents of a cluster id file were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterIdProblem {
    /// Nothing but whitespace.
    #[error("it is empty")]
    Empty,
    /// Longer than [`MAX_CLUSTER_ID_LEN`].
    #[error("it is {0} characters long, more than {MAX_CLUSTER_ID_LEN}")]
    TooLong(usize),
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("it holds {0:?}; only ASCII letters, digits, '-' and '_' are allowed")]
    BadChar(char),
}

/// The cluster id in a cluster id file's `text` (surrounding whitespace ignored).
pub fn parse_cluster_id(text: &str) -> Result<String, ClusterIdProblem> {
    let id = text.trim();
    if id.is_empty() {
        return Err(ClusterIdProblem::Empty);
    }
    if id.len() > MAX_CLUSTER_ID_LEN {
        return Err(ClusterIdProblem::TooLong(id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(ClusterIdProblem::BadChar(c));
    }
    Ok(id.to_owned())
}

/// A fresh cluster id from 128 random bits (a v4 UUID without dashes, so it passes
/// [`parse_cluster_id`] and reads like the ids other tools show).
pub fn mint_cluster_id(random: u128) -> String {
    format!("{random:032x}")
}

/// The `sqlite://` storage URL for the database at `db`, which must be absolute.
///
/// tansu 0.6.0 builds the database path as the current dir joined with the URL's host and then its
/// path minus one leading '/', so `sqlite:///data/broker.db` would land in `./data/broker.db`. An
/// empty host and a path starting with `//` leaves an absolute path after that strip, which
/// `PathBuf::push` then takes as is. tansu also uses the path as written in the URL, still
/// percent-encoded, so a path that a URL must escape (spaces, `?`, `#`, non-ASCII) would name a
/// different file: refused with `None` rather than silently written elsewhere.
pub fn storage_url(db: &Path) -> Option<Url> {
    let text = db.to_str()?;
    if !db.is_absolute() || !text.starts_with('/') {
        return None;
    }
    let url = Url::parse(&format!("sqlite:///{text}")).ok()?;
    (url.path().strip_prefix('/') == Some(text) && url.query().is_none() && url.fragment().is_none()).then_some(url)
}

/// Where tansu is to listen on, and what it advertises: `tcp://ip:port`.
pub fn listener_url(addr: SocketAddr) -> Result<Url, url::ParseError> {
    Url::parse(&format!("tcp://{addr}"))
}

/// The address clients are told to connect to. A wildcard listen address cannot be connected to
/// as such, so loopback stands in for it (the standalone mode's clients run in the same process).
pub fn advertised_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The three files of a data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// See [`CLUSTER_ID_FILE`].
    pub cluster_id: PathBuf,
    /// See [`DATABASE_FILE`].
    pub database: PathBuf,
    /// See [`LOCK_FILE`].
    pub lock: PathBuf,
}

impl Layout {
    /// The files inside `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            cluster_id: data_dir.join(CLUSTER_ID_FILE),
            database: data_dir.join(DATABASE_FILE),
            lock: data_dir.join(LOCK_FILE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_round_trip_and_bad_files_are_named() {
        let minted = mint_cluster_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(minted, "0123456789abcdef0123456789abcdef");
        assert_eq!(parse_cluster_id(&format!("  {minted}\n")), Ok(minted));
        assert_eq!(parse_cluster_id(" \n"), Err(ClusterIdProblem::Empty));
        assert_eq!(parse_cluster_id("ab cd"), Err(ClusterIdProblem::BadChar(' ')));
        assert_eq!(parse_cluster_id(&"a".repeat(65)), Err(ClusterIdProblem::TooLong(65)));
        assert_eq!(parse_cluster_id("MkU3OEVBNTcwNTJENDM2Qk"), Ok("MkU3OEVBNTcwNTJENDM2Qk".to_owned()));
    }

    #[test]
    fn storage_url_keeps_an_absolute_path_through_tansus_leading_slash_strip() {
        let url = storage_url(Path::new("/var/lib/geostream/broker.db")).expect("plain absolute path");
        assert_eq!(url.scheme(), "sqlite");
        // What tansu does with it: host pushed (empty), then the path minus one '/'.
        let mut path = PathBuf::from("/somewhere/else");
        path.push(url.host_str().unwrap_or_default());
        path.push(url.path().strip_prefix('/').unwrap_or(url.path()));
        assert_eq!(path, PathBuf::from("/var/lib/geostream/broker.db"));
    }

    #[test]
    fn storage_url_refuses_paths_tansu_would_misread() {
        assert_eq!(storage_url(Path::new("relative/broker.db")), None);
        assert_eq!(storage_url(Path::new("/tmp/with space/broker.db")), None);
        assert_eq!(storage_url(Path::new("/tmp/q?x/broker.db")), None);
        assert_eq!(storage_url(Path::new("/tmp/h#x/broker.db")), None);
        assert_eq!(storage_url(Path::new("/tmp/caf\u{e9}/broker.db")), None);
    }

    #[test]
    fn wildcard_listen_addresses_advertise_loopback() {
        let any: SocketAddr = "0.0.0.0:9092".parse().expect("addr");
        assert_eq!(advertised_addr(any), "127.0.0.1:9092".parse().expect("addr"));
        let any6: SocketAddr = "[::]:9092".parse().expect("addr");
        assert_eq!(advertised_addr(any6), "[::1]:9092".parse().expect("addr"));
        let given: SocketAddr = "10.1.2.3:19092".parse().expect("addr");
        assert_eq!(advertised_addr(given), given);
        assert_eq!(listener_url(given).expect("url").as_str(), "tcp://10.1.2.3:19092");
    }
}
