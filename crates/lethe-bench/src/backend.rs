//! Where the bench's store lives: the embedded SQLite files of the data
//! directory, or a schema of a PostgreSQL database (`--backend postgres`),
//! and how each says how many bytes it holds.

use std::path::Path;

use anyhow::{Context, Result};
use lethe_store::sqlite::dir_bytes;

/// The store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Embedded SQLite files in the data directory (the default).
    Sqlite,
    /// A schema of a PostgreSQL database (`--pg-url`, `--pg-schema`).
    Postgres,
}

/// The backend of one run, with what it needs to be reset and measured.
pub struct Backend {
    pub kind: Kind,
    pub url: String,
    pub schema: String,
}

impl Backend {
    /// The `[store]` section of the bench configuration.
    pub fn store_section(&self, group_commit_records: Option<usize>) -> String {
        let mut s = String::from("[store]\n");
        if self.kind == Kind::Postgres {
            s.push_str(&format!(
                "backend = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\n",
                self.url, self.schema
            ));
        }
        if let Some(n) = group_commit_records {
            s.push_str(&format!("group_commit_records = {n}\n"));
        }
        s
    }

    fn client(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .with_context(|| format!("PostgreSQL at {} (--pg-url)", self.url))
    }

    /// Empties the store: the data directory always, the schema on
    /// PostgreSQL (dropped with everything in it).
    pub fn reset(&self, data: &Path) -> Result<()> {
        if data.exists() {
            std::fs::remove_dir_all(data).with_context(|| format!("emptying {}", data.display()))?;
        }
        if self.kind == Kind::Postgres {
            self.client()?
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
                .context("dropping the bench schema")?;
        }
        Ok(())
    }

    /// Bytes the store holds: files of the data directory on SQLite; on
    /// PostgreSQL every table, index and TOAST relation of the schema
    /// (`pg_total_relation_size`, what the disk gives back when they go)
    /// plus the data directory (master key only).
    pub fn bytes(&self, data: &Path) -> Result<u64> {
        let local = dir_bytes(data)?;
        if self.kind == Kind::Sqlite {
            return Ok(local);
        }
        let row = self.client()?.query_one(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&self.schema],
        )?;
        Ok(local + row.get::<_, i64>(0) as u64)
    }

    /// Number of tables (PostgreSQL: record partitions) or files (SQLite).
    pub fn partitions(&self) -> Result<i64> {
        let row = self.client()?.query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relispartition",
            &[&self.schema],
        )?;
        Ok(row.get(0))
    }

    /// Write-ahead log position, to measure how much WAL a phase wrote.
    pub fn wal_lsn(&self) -> Result<String> {
        Ok(self
            .client()?
            .query_one("SELECT pg_current_wal_lsn()::text", &[])?
            .get(0))
    }

    /// WAL bytes written since `lsn`.
    pub fn wal_since(&self, lsn: &str) -> Result<i64> {
        Ok(self
            .client()?
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                &[&lsn],
            )?
            .get(0))
    }
}
