//! A loopback TCP proxy for the client tests that can freeze all traffic through it, as a
//! network partition would (and thaw it, as a partition that heals), or delay every byte by a
//! fixed time each way, as a slow network does.

#![allow(dead_code)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on 127.0.0.1 that can freeze all traffic through it (both directions, new
/// connections included): bytes read while frozen are held until thawed, as a partition
/// that heals would deliver them. It can also freeze only what the server sends
/// ([`Proxy::freeze_downstream`]): the client's requests still arrive, it hears nothing back.
pub struct Proxy {
    pub addr: String,
    frozen: Arc<watch::Sender<bool>>,
    down_frozen: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy whose every byte arrives `one_way` late in each direction (a round trip
    /// `2 * one_way` longer); bytes keep their order, and a slow reply does not hold back
    /// the ones sent after it beyond their own delay.
    pub async fn start_slow(target: String, one_way: std::time::Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(delayed(cr, sw, one_way));
                tokio::spawn(delayed(sr, cw, one_way));
            }
        });
        Proxy {
            addr,
            frozen: Arc::new(watch::channel(false).0),
            down_frozen: Arc::new(watch::channel(false).0),
            task,
        }
    }

    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let frozen = Arc::new(watch::channel(false).0);
        let down_frozen = Arc::new(watch::channel(false).0);
        let f = frozen.clone();
        let df = down_frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let f = f.clone();
                let df = df.clone();
                tokio::spawn(async move {
                    if *f.borrow() {
                        // A connection attempted during the partition never reaches the
                        // server (its SYN was lost): the client gave up on it meanwhile,
                        // and delivering its handshake late would steal the session from
                        // whoever holds it then.
                        thawed(&mut f.subscribe()).await;
                        drop(client);
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, vec![f.subscribe()]));
                    tokio::spawn(pump(sr, cw, vec![f.subscribe(), df.subscribe()]));
                });
            }
        });
        Proxy {
            addr,
            frozen,
            down_frozen,
            task,
        }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
        self.down_frozen.send_replace(false);
    }

    /// Holds what the server sends (replies, notifications) while the client's bytes still
    /// go through: a client that cannot hear it has been deposed.
    pub fn freeze_downstream(&self) {
        self.down_frozen.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn thawed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|frozen| !*frozen).await;
}

async fn all_thawed(rxs: &mut [watch::Receiver<bool>]) {
    for rx in rxs.iter_mut() {
        thawed(rx).await;
    }
}

/// Forwards each chunk `delay` after it was read: the reader stamps it, the writer waits for
/// the stamp.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: std::time::Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if tx
            .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut frozen: Vec<watch::Receiver<bool>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        all_thawed(&mut frozen).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Checked again after the read: a freeze that started while it waited holds these
        // bytes too. (Checked in turn: one that freezes meanwhile is caught next time.)
        all_thawed(&mut frozen).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    all_thawed(&mut frozen).await;
    let _ = to.shutdown().await;
}
