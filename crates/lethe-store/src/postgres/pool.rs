//! Connections to the database: a small bounded pool, each connection
//! pointed at the store's schema, a broken one never handed out again.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};

use postgres::{Client, NoTls};

use super::{db, quote_ident};
use crate::Result;

/// A bounded set of connections to one schema.
pub(super) struct Pool {
    config: postgres::Config,
    schema: String,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections handed out or idle.
    open: usize,
}

/// A pooled connection, back in the pool when dropped (unless broken).
pub(super) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pool {
    pub(super) fn new(config: postgres::Config, schema: String, size: usize) -> Pool {
        Pool {
            config,
            schema,
            size,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The connection settings and schema, for a dedicated connection made
    /// outside the pool.
    pub(super) fn clone_config(&self) -> (postgres::Config, String) {
        (self.config.clone(), self.schema.clone())
    }

    /// A new connection outside the pool, its search path not yet set
    /// (the schema may not exist yet).
    pub(super) fn connect_raw(&self) -> Result<Client> {
        self.config.connect(NoTls).map_err(db)
    }

    /// A connection of the pool, waiting while `size` are in use.
    pub(super) fn get(&self) -> Result<Conn<'_>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = st.idle.pop() {
                if c.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(c),
                });
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match connect(&self.config, &self.schema) {
                    Ok(c) => Ok(Conn {
                        pool: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        st.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Connects and points the connection at `schema`.
pub(super) fn connect(config: &postgres::Config, schema: &str) -> Result<Client> {
    let mut c = config.connect(NoTls).map_err(db)?;
    c.batch_execute(&format!(
        "SET search_path TO {}; SET application_name TO 'lethe'",
        quote_ident(schema)
    ))
    .map_err(db)?;
    Ok(c)
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        match self.client.take() {
            Some(c) if !c.is_closed() => st.idle.push(c),
            _ => st.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}
