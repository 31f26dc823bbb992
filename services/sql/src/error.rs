//! The crate's error: what failed, for which analytic and window, and whether a retry can help.

use geostream_model::{Classify, ErrorClass, Window};

/// Why a query was refused or a window could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query does not parse or plan against the observations table (syntax, unknown column
    /// or function, wrong argument types, a statement other than a query, a result column the
    /// aggregate mapping cannot use). Refused at registration; the message is DataFusion's.
    #[error("sql analytic {analytic:?}: the query is refused: {message}")]
    Query {
        /// The analytic id.
        analytic: String,
        /// What is wrong, in DataFusion's words or ours.
        message: String,
    },
    /// An observation cannot be put into the table (its time is outside what an Arrow nanosecond
    /// timestamp holds, 1677 to 2262).
    #[error("sql analytic {analytic:?}, window {window}: observation {observation}: {problem}")]
    Input {
        /// The analytic id.
        analytic: String,
        /// The window, `start/end` in RFC 3339.
        window: String,
        /// The observation id.
        observation: String,
        /// What is wrong.
        problem: String,
    },
    /// The query failed on this window's data (a function refused an argument, memory ran out).
    #[error("sql analytic {analytic:?}, window {window}: the query failed: {message}")]
    Execution {
        /// The analytic id.
        analytic: String,
        /// The window, `start/end` in RFC 3339.
        window: String,
        /// DataFusion's message.
        message: String,
        /// Bad data or arguments are the user's; exhausted resources are external; DataFusion
        /// reporting an internal error is internal.
        class: ErrorClass,
    },
    /// A result row cannot become an aggregate (duplicate key, negative count, invalid geometry,
    /// a non-finite value, a bin key over the size limit).
    #[error("sql analytic {analytic:?}, window {window}: {problem}")]
    Result {
        /// The analytic id.
        analytic: String,
        /// The window, `start/end` in RFC 3339.
        window: String,
        /// What is wrong, naming the key or column.
        problem: String,
    },
    /// The operating system refused the thread or the runtime the query runs on.
    #[error("sql analytic {analytic:?}: cannot start the query thread or runtime: {message}")]
    Runtime {
        /// The analytic id.
        analytic: String,
        /// The OS error.
        message: String,
    },
    /// DataFusion panicked on the query thread; the panic was contained there.
    #[error("sql analytic {analytic:?}: the query panicked (a bug): {message}")]
    Panicked {
        /// The analytic id.
        analytic: String,
        /// The panic payload, when it is text.
        message: String,
    },
}

impl Classify for SqlError {
    fn class(&self) -> ErrorClass {
        match self {
            SqlError::Query { .. } | SqlError::Input { .. } | SqlError::Result { .. } => ErrorClass::User,
            SqlError::Execution { class, .. } => *class,
            // Thread creation fails on a transient shortage (EAGAIN), so a later attempt can work.
            SqlError::Runtime { .. } => ErrorClass::External,
            SqlError::Panicked { .. } => ErrorClass::Internal,
        }
    }
}

/// `start/end` in RFC 3339, for messages.
pub(crate) fn window_label(w: &Window) -> String {
    use geostream_model::time::format_description::well_known::Rfc3339;
    let f = |t: geostream_model::time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
    format!("{}/{}", f(w.start), f(w.end))
}
