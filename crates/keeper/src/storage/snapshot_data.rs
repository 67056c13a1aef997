//! The bytes of a snapshot as openraft handles them: in memory, or the payload of a snapshot
//! file read only when somebody reads it.
//!
//! openraft asks for the current snapshot at every start (for its metadata only) and reads the
//! data only to send it to a follower. A million-znode snapshot is some 200 MB: holding a copy
//! in memory, or reading the file back for each of those calls, would cost start-up time and
//! resident memory for nothing. So a snapshot that is on disk is handed out as its open file.
//!
//! A snapshot received from a leader is written, chunk by chunk, to a file of its own
//! ([`SnapshotData::Receiving`]), so a large one is never whole in memory either.
//!
//! Owns: that choice and the byte-stream view of each. Must not: interpret the bytes.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// openraft's `SnapshotData`: a readable, seekable byte stream; writable only in memory
/// (a snapshot being received from a leader).
#[derive(Debug)]
pub enum SnapshotData {
    Memory(Cursor<Vec<u8>>),
    /// A snapshot file; positions are relative to `start`, where the payload begins, so a
    /// reader sees exactly the payload.
    File {
        file: tokio::fs::File,
        start: u64,
    },
    /// A snapshot being received from the leader, written to `path` as it arrives.
    Receiving {
        file: tokio::fs::File,
        path: std::path::PathBuf,
    },
}

impl SnapshotData {
    pub fn memory(bytes: Vec<u8>) -> SnapshotData {
        SnapshotData::Memory(Cursor::new(bytes))
    }

    /// `file` positioned at `start`, the first payload byte.
    pub fn file(file: std::fs::File, start: u64) -> SnapshotData {
        SnapshotData::File {
            file: tokio::fs::File::from_std(file),
            start,
        }
    }

    /// A new file at `path` to receive a snapshot into.
    pub async fn receive_into(path: std::path::PathBuf) -> io::Result<SnapshotData> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(SnapshotData::Receiving { file, path })
    }

    /// All the payload bytes (reads the file if on disk).
    pub async fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            SnapshotData::Memory(c) => Ok(c.into_inner()),
            SnapshotData::Receiving { mut file, .. } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                file.seek(SeekFrom::Start(0)).await?;
                let mut v = Vec::new();
                file.read_to_end(&mut v).await?;
                Ok(v)
            }
            SnapshotData::File { mut file, start } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                file.seek(SeekFrom::Start(start)).await?;
                let mut v = Vec::new();
                file.read_to_end(&mut v).await?;
                Ok(v)
            }
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a snapshot on disk is read-only",
    )
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_read(cx, buf),
            SnapshotData::File { file, .. } | SnapshotData::Receiving { file, .. } => {
                Pin::new(file).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_write(cx, buf),
            SnapshotData::Receiving { file, .. } => Pin::new(file).poll_write(cx, buf),
            SnapshotData::File { .. } => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_flush(cx),
            SnapshotData::Receiving { file, .. } => Pin::new(file).poll_flush(cx),
            SnapshotData::File { .. } => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_shutdown(cx),
            SnapshotData::Receiving { file, .. } => Pin::new(file).poll_shutdown(cx),
            SnapshotData::File { .. } => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).start_seek(position),
            SnapshotData::Receiving { file, .. } => Pin::new(file).start_seek(position),
            SnapshotData::File { file, start } => {
                let position = match position {
                    SeekFrom::Start(n) => SeekFrom::Start(n.saturating_add(*start)),
                    other => other,
                };
                Pin::new(file).start_seek(position)
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_complete(cx),
            SnapshotData::Receiving { file, .. } => Pin::new(file).poll_complete(cx),
            // Saturating: tokio's File reports 0 until its first seek, whatever the position.
            SnapshotData::File { file, start } => match Pin::new(file).poll_complete(cx) {
                Poll::Ready(Ok(at)) => Poll::Ready(Ok(at.saturating_sub(*start))),
                other => other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_file_reads_as_its_payload_only() {
        let dir = std::env::temp_dir().join(format!("corral-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(b"HEADERpayload-bytes").expect("write");
        drop(f);
        let mut f = std::fs::File::open(&path).expect("open");
        std::io::Seek::seek(&mut f, SeekFrom::Start(6)).expect("seek");
        let mut d = SnapshotData::file(f, 6);
        let mut s = String::new();
        d.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "payload-bytes");
        assert_eq!(d.seek(SeekFrom::Start(8)).await.expect("seek"), 8);
        let mut s = String::new();
        d.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "bytes");
        assert_eq!(d.seek(SeekFrom::End(-5)).await.expect("seek"), 8);
        assert_eq!(
            d.write(b"x").await.map_err(|e| e.kind()),
            Err(io::ErrorKind::Unsupported)
        );
        assert_eq!(d.into_bytes().await.expect("bytes"), b"payload-bytes");
        let mut m = SnapshotData::memory(Vec::new());
        m.write_all(b"abc").await.expect("write");
        assert_eq!(m.into_bytes().await.expect("bytes"), b"abc");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
