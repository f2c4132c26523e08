//! Connections to the database: a small bounded pool, each connection
//! pointed at the store's schema, a broken one never handed out again.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};

use postgres::Client;

use super::connector::Connector;
use crate::Result;

/// A bounded set of connections to one schema.
pub(super) struct Pool {
    connector: Connector,
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
    pub(super) fn new(connector: Connector, size: usize) -> Pool {
        Pool {
            connector,
            size,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// How connections are made, for a dedicated connection made outside
    /// the pool.
    pub(super) fn connector(&self) -> &Connector {
        &self.connector
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
                return match self.connector.connect() {
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
