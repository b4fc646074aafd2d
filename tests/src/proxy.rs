//! A TCP forwarder on 127.0.0.1 that a test can stop and restart on the same port, to make
//! a member cluster's API server unreachable for the operator and reachable again, without
//! disturbing other tests that use the same cluster directly.

use std::net::SocketAddr;

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A running forwarder. Dropping or stopping it closes the listener and every connection.
pub struct Proxy {
    /// Local address the forwarder listens on.
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding a new port on 127.0.0.1 to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Proxy {
            addr,
            upstream,
            tasks: Some(tokio::spawn(serve(listener, upstream))),
        })
    }

    /// Stops accepting and cuts every open connection.
    pub fn stop(&mut self) {
        if let Some(t) = self.tasks.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 40 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.tasks = Some(tokio::spawn(serve(listener, self.upstream)));
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr) {
    // Connections live in this JoinSet: aborting the serve task drops it, which aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
