//! Parallel gzip: the stream is cut into fixed-size blocks, each compressed
//! on its own core as a complete gzip member; the members are written in
//! order. A file of concatenated members is one valid gzip stream (RFC 1952
//! section 2.2) that gzip, GNU tar and flate2's MultiGzDecoder read.
//!
//! Memory is bounded whatever the input's size: at most `2 × workers`
//! blocks are in flight, each held once uncompressed and once compressed.
//! Output depends only on the input bytes, the level and the block size,
//! never on thread timing.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::Compression;

/// Input bytes per gzip member: large enough that the restart of the
/// 32 KiB deflate window costs under 0.1% of ratio, small enough that a
/// few blocks in flight stay within a few MiB.
pub const BLOCK: usize = 1 << 20;

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

pub struct ParGz<W: Write> {
    inner: Option<W>,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> std::fmt::Debug for ParGz<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParGz")
            .field("pending", &self.pending.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn compress(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(data.len() / 2 + 64), level);
    gz.write_all(data)?;
    gz.finish()
}

impl<W: Write> ParGz<W> {
    /// Compresses at `level` on `workers` threads (at least one).
    pub fn new(inner: W, level: Compression, workers: usize) -> ParGz<W> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(workers);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((data, reply)) = job else { return };
                        // The receiver may be gone if the writer failed.
                        let _ = reply.send(compress(&data, level));
                    }
                })
            })
            .collect();
        ParGz {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            jobs: Some(tx),
            pending: VecDeque::new(),
            max_pending: 2 * workers,
            workers: handles,
        }
    }

    /// With as many workers as the machine has cores.
    pub fn with_all_cores(inner: W, level: Compression) -> ParGz<W> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ParGz::new(inner, level, n)
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let (reply, rx) = sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("parallel gzip already finished"))?;
        jobs.send((data, reply))
            .map_err(|_| io::Error::other("parallel gzip workers stopped"))?;
        self.pending.push_back(rx);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let member = rx
            .recv()
            .map_err(|_| io::Error::other("a parallel gzip worker died"))??;
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("parallel gzip already finished"))?
            .write_all(&member)
    }

    /// Compresses what is buffered, writes every member, stops the workers
    /// and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.jobs = None;
        for h in self.workers.drain(..) {
            h.join()
                .map_err(|_| io::Error::other("a parallel gzip worker panicked"))?;
        }
        let mut w = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("parallel gzip already finished"))?;
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Members are only complete at block boundaries; flushing writes the
    /// finished ones without cutting a block short.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGz<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_concatenate_to_the_input_and_gzip_agrees() {
        let mut data = Vec::new();
        for i in 0..(3 * BLOCK + 12345) {
            data.push(((i * 7919) % 251) as u8 ^ (i / 1000) as u8);
        }
        let one = {
            let mut z = ParGz::new(Vec::new(), Compression::new(6), 1);
            z.write_all(&data).unwrap();
            z.finish().unwrap()
        };
        let three = {
            let mut z = ParGz::new(Vec::new(), Compression::new(6), 3);
            for chunk in data.chunks(77_777) {
                z.write_all(chunk).unwrap();
            }
            z.finish().unwrap()
        };
        assert_eq!(one, three, "output must not depend on the thread count");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut child = std::process::Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let t = std::thread::spawn(move || stdin.write_all(&one).unwrap());
        let out = child.wait_with_output().unwrap();
        t.join().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
