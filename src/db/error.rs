//! The persistence layer's one error type.

use diesel::ConnectionError;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] ConnectionError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("unsupported DATABASE_URL “{0}”: use sqlite://FILE, a file path, or postgres://…")]
    UnsupportedUrl(String),
    #[error("the database task was cancelled")]
    Cancelled,
}

pub type DbResult<T> = Result<T, DbError>;
