//! The three record kinds the archive keeps, one table (and one directory tree) each.

use geostream_model::TopicKind;

/// Which records: the topic they come from, the directory and the DataFusion table they go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    /// `<tenant>.observations`.
    Observations,
    /// `<tenant>.events`.
    Events,
    /// `<tenant>.aggregates`.
    Aggregates,
}

impl ArchiveKind {
    /// Every kind, in table order.
    pub const ALL: [ArchiveKind; 3] = [ArchiveKind::Observations, ArchiveKind::Events, ArchiveKind::Aggregates];

    /// The directory and table name.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Observations => "observations",
            ArchiveKind::Events => "events",
            ArchiveKind::Aggregates => "aggregates",
        }
    }

    /// The topic the records are read from.
    pub fn topic_kind(self) -> TopicKind {
        match self {
            ArchiveKind::Observations => TopicKind::Observations,
            ArchiveKind::Events => TopicKind::Events,
            ArchiveKind::Aggregates => TopicKind::Aggregates,
        }
    }

    /// The kind whose directory is `name`.
    pub fn from_name(name: &str) -> Option<ArchiveKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_topics() {
        for k in ArchiveKind::ALL {
            assert_eq!(ArchiveKind::from_name(k.as_str()), Some(k));
            assert_eq!(k.topic_kind().as_str(), k.as_str());
        }
        assert_eq!(ArchiveKind::from_name("latest"), None);
    }
}
