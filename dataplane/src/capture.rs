//! Captures: frames crossing a link, written as pcap (readable by tcpdump, tshark, Wireshark).
//!
//! Timestamps are the virtual time of the sim runtime, so two identical runs write identical
//! files. The snap length is [`wire::MAX_FRAME_LEN`]: a GSO super-frame is never truncated.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pcap_file::pcap::{PcapHeader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};

use crate::time::Instant;
use crate::wire;

/// Where captured frames go.
pub trait FrameSink: Any {
    fn write(&mut self, now: Instant, frame: &[u8]);
    /// Flush; report the first error met while writing.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Frames kept in memory (for tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub frames: Vec<(Instant, Vec<u8>)>,
}

impl FrameSink for MemorySink {
    fn write(&mut self, now: Instant, frame: &[u8]) {
        self.frames.push((now, frame.to_vec()));
    }
}

/// A pcap file (little-endian, microsecond timestamps, Ethernet link type), written on the
/// thread of a [`CaptureWriters`] that the files of a lab share.
pub struct PcapFile {
    path: PathBuf,
    writer: Option<ThreadedWriter>,
    error: Option<std::io::Error>,
}

impl PcapFile {
    pub fn create(path: &Path, writers: &CaptureWriters) -> std::io::Result<Self> {
        let file = ThreadedWriter::new(writers, File::create(path)?, THREADED_CHUNK);
        let header = PcapHeader {
            snaplen: wire::MAX_FRAME_LEN as u32,
            datalink: DataLink::ETHERNET,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        // pcap-file writes the file header; the records, 16 bytes and the frame, are written
        // here, in two pieces rather than its four.
        let writer = PcapWriter::with_header(file, header)
            .map_err(std::io::Error::other)?
            .into_writer();
        Ok(PcapFile {
            path: path.to_path_buf(),
            writer: Some(writer),
            error: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FrameSink for PcapFile {
    fn write(&mut self, now: Instant, frame: &[u8]) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let us = now.as_micros();
        let len = frame.len() as u32;
        let mut head = [0u8; 16];
        for (at, v) in head.chunks_exact_mut(4).zip([
            (us / 1_000_000) as u32,
            (us % 1_000_000) as u32,
            len,
            len,
        ]) {
            at.copy_from_slice(&v.to_le_bytes());
        }
        if let Err(e) = w.write_all(&head).and_then(|()| w.write_all(frame)) {
            self.error.get_or_insert(e);
            self.writer = None;
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.writer.take() {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// One pcapng file for the links of a lab: an interface per link, named after it, with
/// nanosecond timestamps (`if_tsresol` 9: pcap-file writes nanoseconds but does not say so).
/// Thousands of links need one open file. Each link writes through its own [`PcapNgSink`]; the
/// file is written on a thread of its own ([`ThreadedWriter`]).
#[derive(Clone)]
pub struct PcapNgFile {
    inner: Arc<Mutex<NgInner>>,
}

struct NgInner {
    /// Past the headers pcap-file wrote: the blocks go straight in ([`Epb`]).
    writer: Option<ThreadedWriter>,
    /// The first write error: reported once, by the first sink to finish.
    error: Option<std::io::Error>,
}

impl PcapNgFile {
    /// Create `path` with an interface for each of `links`, in order.
    pub fn create(path: &Path, links: &[String]) -> std::io::Result<Self> {
        let writers = CaptureWriters::new()?;
        let file = ThreadedWriter::new(&writers, File::create(path)?, THREADED_CHUNK);
        // Little-endian, as [`Epb`] writes its blocks.
        let mut writer = PcapNgWriter::with_endianness(file, Endianness::Little)
            .map_err(std::io::Error::other)?;
        for name in links {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: wire::MAX_FRAME_LEN as u32,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            writer
                .write_pcapng_block(idb)
                .map_err(std::io::Error::other)?;
        }
        Ok(PcapNgFile {
            inner: Arc::new(Mutex::new(NgInner {
                writer: Some(writer.into_inner()),
                error: None,
            })),
        })
    }

    /// The sink of interface `interface` (the link's index in `links`).
    pub fn sink(&self, interface: u32) -> PcapNgSink {
        PcapNgSink {
            file: self.clone(),
            interface,
        }
    }
}

/// What one link writes into a [`PcapNgFile`].
pub struct PcapNgSink {
    file: PcapNgFile,
    interface: u32,
}

impl FrameSink for PcapNgSink {
    fn write(&mut self, now: Instant, frame: &[u8]) {
        let mut inner = self.file.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = inner.writer.as_mut() else {
            return;
        };
        let block = Epb::new(self.interface, now, frame);
        let r = w
            .write_all(&block.head)
            .and_then(|()| w.write_all(frame))
            .and_then(|()| w.write_all(block.tail()));
        if let Err(e) = r {
            inner.error.get_or_insert(e);
            inner.writer = None;
        }
    }

    /// Flush the file (the first sink to finish does); report the first write error once.
    fn finish(&mut self) -> std::io::Result<()> {
        let mut inner = self.file.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        match inner.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// The pieces of an Enhanced Packet Block around its frame, little-endian: the block is
/// `head`, the frame, then [`Epb::tail`] (padding to 4 bytes and the length again). Written by
/// hand rather than through pcap-file's `EnhancedPacketBlock`, which measures each block with
/// a dry run and writes it in nine pieces: a capture of every link writes each frame once per
/// link it crosses, on the run's own thread.
struct Epb {
    head: [u8; 28],
    tail: [u8; 8],
    pad: usize,
}

impl Epb {
    const TYPE: u32 = 6;

    fn new(interface: u32, now: Instant, frame: &[u8]) -> Epb {
        let pad = (4 - frame.len() % 4) % 4;
        let len = (28 + frame.len() + pad + 4) as u32;
        let ns = now.as_nanos();
        // Type, length, interface, time (high and low words), captured and original length.
        let words = [
            Self::TYPE,
            len,
            interface,
            (ns >> 32) as u32,
            ns as u32,
            frame.len() as u32,
            frame.len() as u32,
        ];
        let mut head = [0u8; 28];
        for (at, w) in head.chunks_exact_mut(4).zip(words) {
            at.copy_from_slice(&w.to_le_bytes());
        }
        let mut tail = [0u8; 8];
        tail[4..].copy_from_slice(&len.to_le_bytes());
        Epb { head, tail, pad }
    }

    fn tail(&self) -> &[u8] {
        &self.tail[4 - self.pad..]
    }
}

/// The thread that writes a lab's capture files: a run goes on while the kernel copies its
/// captures into the page cache, on the other core. Cloned for each file; the thread ends,
/// having written everything, when the last clone and the last [`ThreadedWriter`] are gone.
#[derive(Clone)]
pub struct CaptureWriters(Arc<WriterThread>);

struct WriterThread {
    tx: Option<crossbeam_channel::Sender<Job>>,
    /// Buffers the thread has written, back for reuse: a fresh 1 MiB buffer costs the kernel
    /// 256 page faults, each zeroing a page, on the run's own core.
    free: crossbeam_channel::Receiver<Vec<u8>>,
    next_id: std::sync::atomic::AtomicUsize,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Job {
    Open {
        id: usize,
        file: File,
        failed: Arc<AtomicBool>,
    },
    Data(usize, Vec<u8>),
    /// Everything before is written: flush, and say how it went.
    Sync(usize, crossbeam_channel::Sender<std::io::Result<()>>),
    Close(usize),
}

/// At most this many buffers wait for the thread (8 MiB); past that, writing waits for it.
pub const THREADED_IN_FLIGHT: usize = 32;
/// A file's buffer: the thread takes it when it holds this much. On the smoke drill with a
/// capture of every link (`make bench-pcap`), 256 KiB buffers with 32 in flight ran no slower
/// than 1 MiB with 8 or 128 KiB with 64, and a file per link ran faster.
pub const THREADED_CHUNK: usize = 256 << 10;
/// Room past a buffer's chunk for the write that fills it: a block of the largest frame.
const BUF_SLACK: usize = wire::MAX_FRAME_LEN + 64;
/// Written buffers kept for reuse, for all the files of a lab.
const FREE_BUFFERS: usize = 32;

struct Open {
    file: File,
    /// The first error sticks: nothing is written after a torn block.
    error: Option<std::io::Error>,
    failed: Arc<AtomicBool>,
}

impl CaptureWriters {
    pub fn new() -> std::io::Result<CaptureWriters> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(THREADED_IN_FLIGHT);
        let (free_tx, free) = crossbeam_channel::bounded::<Vec<u8>>(FREE_BUFFERS);
        let thread = std::thread::Builder::new()
            .name("vmcnet-pcap".into())
            .spawn(move || {
                let mut files: HashMap<usize, Open> = HashMap::new();
                for job in rx {
                    match job {
                        Job::Open { id, file, failed } => {
                            files.insert(
                                id,
                                Open {
                                    file,
                                    error: None,
                                    failed,
                                },
                            );
                        }
                        Job::Data(id, mut b) => {
                            if let Some(f) = files.get_mut(&id).filter(|f| f.error.is_none()) {
                                if let Err(e) = f.file.write_all(&b) {
                                    f.error = Some(e);
                                    f.failed.store(true, Ordering::Relaxed);
                                }
                            }
                            b.clear();
                            let _ = free_tx.try_send(b);
                        }
                        Job::Sync(id, reply) => {
                            let r = match files.get_mut(&id) {
                                Some(Open { error: Some(e), .. }) => {
                                    Err(std::io::Error::new(e.kind(), e.to_string()))
                                }
                                Some(f) => f.file.flush(),
                                None => Ok(()),
                            };
                            let _ = reply.send(r);
                        }
                        Job::Close(id) => {
                            files.remove(&id);
                        }
                    }
                }
            })?;
        Ok(CaptureWriters(Arc::new(WriterThread {
            tx: Some(tx),
            free,
            next_id: Default::default(),
            thread: Some(thread),
        })))
    }

    fn send(&self, job: Job) -> std::io::Result<()> {
        let gone = || std::io::Error::other("the pcap writer thread is gone");
        self.0
            .tx
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A file written through a [`CaptureWriters`] thread: writes gather in a buffer, which the
/// thread takes when it holds `chunk` bytes. A write error is reported by the next `flush`,
/// and then by every write.
pub struct ThreadedWriter {
    buf: Vec<u8>,
    chunk: usize,
    id: usize,
    /// Raised by the thread at this file's first write error.
    failed: Arc<AtomicBool>,
    writers: CaptureWriters,
}

impl ThreadedWriter {
    pub fn new(writers: &CaptureWriters, file: File, chunk: usize) -> ThreadedWriter {
        let id = writers.0.next_id.fetch_add(1, Ordering::Relaxed);
        let failed = Arc::new(AtomicBool::new(false));
        let open = Job::Open {
            id,
            file,
            failed: failed.clone(),
        };
        // Should the thread be gone, the first flush says so.
        let _ = writers.send(open);
        ThreadedWriter {
            buf: Vec::new(),
            chunk,
            id,
            failed,
            writers: writers.clone(),
        }
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.writers.0.free.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.buf, next);
        self.writers.send(Job::Data(self.id, full))
    }
}

impl Write for ThreadedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.failed.load(Ordering::Relaxed) {
            // The thread's error, as the flush reports it.
            self.flush()?;
        }
        if self.buf.capacity() == 0 {
            // A buffer is made whole, once: growing one touches fresh memory at each doubling,
            // which the kernel zeroes on this core. (Memory reserved but never written costs
            // nothing: the thousand links of a large lab that carry a frame or two touch a page
            // each.) It comes back for reuse.
            self.buf.reserve_exact(self.chunk + BUF_SLACK);
        }
        self.buf.extend_from_slice(b);
        if self.buf.len() >= self.chunk {
            self.send_buf()?;
        }
        Ok(b.len())
    }

    /// Write out everything so far, and report the first error since the last flush.
    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.writers.send(Job::Sync(self.id, tx))?;
        rx.recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the pcap writer thread is gone")))
    }
}

impl Drop for ThreadedWriter {
    /// What the writer holds is still written; the file closes once it is.
    fn drop(&mut self) {
        let _ = self.send_buf();
        let _ = self.writers.send(Job::Close(self.id));
    }
}

impl Drop for PcapFile {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when the test ends, pass or fail.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("vmcnet-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn threaded_writer_writes_everything_in_order_and_reports_a_full_disk_at_flush() {
        let scratch = Scratch::new("threaded");
        let path = scratch.0.join("written");
        let writers = CaptureWriters::new().unwrap();
        let mut w = ThreadedWriter::new(&writers, File::create(&path).unwrap(), THREADED_CHUNK);
        // More than a few chunks, in writes of odd sizes.
        let data: Vec<u8> = (0..3 * THREADED_CHUNK + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        for part in data.chunks(7_777) {
            w.write_all(part).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        std::fs::remove_file(&path).unwrap();
        // /dev/full refuses every write: the error comes back at the flush.
        let mut full = ThreadedWriter::new(
            &writers,
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
            THREADED_CHUNK,
        );
        full.write_all(&data).unwrap();
        let e = full.flush().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        // The error sticks: the next write fails at once, and so does every flush.
        assert_eq!(
            full.write(b"x").unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
        assert!(full.flush().is_err());
        // Dropped without a flush, the writer still writes what it holds and ends its thread.
        let path = scratch.0.join("dropped");
        let mut w = ThreadedWriter::new(&writers, File::create(&path).unwrap(), THREADED_CHUNK);
        w.write_all(b"held, never flushed").unwrap();
        drop(w);
        drop(full);
        // The last handle gone, the thread ends once everything is written.
        drop(writers);
        assert_eq!(std::fs::read(&path).unwrap(), b"held, never flushed");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn pcap_file_has_header_and_records() {
        let scratch = Scratch::new("cap");
        let dir = &scratch.0;
        let path = dir.join("t.pcap");
        let mut p = PcapFile::create(&path, &CaptureWriters::new().unwrap()).unwrap();
        p.write(Instant::from_micros(1_500_000), &[0xffu8; 60]);
        p.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(bytes.len(), 24 + 16 + 60);
        // Record header: seconds 1, microseconds 500000, lengths 60.
        assert_eq!(&bytes[24..28], &1u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &500_000u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &60u32.to_le_bytes());
    }

    #[test]
    fn files_sharing_one_writer_thread_each_get_their_own_bytes_and_errors() {
        let scratch = Scratch::new("shared");
        let dir = &scratch.0;
        let writers = CaptureWriters::new().unwrap();
        let mut a = ThreadedWriter::new(&writers, File::create(dir.join("a")).unwrap(), 1000);
        let mut b = ThreadedWriter::new(&writers, File::create(dir.join("b")).unwrap(), 1000);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut f = ThreadedWriter::new(&writers, full, 1000);
        let (mut want_a, mut want_b) = (Vec::new(), Vec::new());
        // Interleaved writes of odd sizes, many times the buffer, with the full disk between.
        for i in 0..2_000u32 {
            let part: Vec<u8> = (0..(i % 97)).map(|j| (i + j) as u8).collect();
            a.write_all(&part).unwrap();
            want_a.extend_from_slice(&part);
            let _ = f.write_all(&part);
            b.write_all(&part[..part.len() / 2]).unwrap();
            want_b.extend_from_slice(&part[..part.len() / 2]);
        }
        assert!(f.flush().is_err());
        a.flush().unwrap();
        b.flush().unwrap();
        drop((a, b, f, writers));
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), want_a);
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), want_b);
    }

    #[test]
    fn pcapng_blocks_written_by_hand_read_back_through_pcap_file() {
        use pcap_file::pcapng::{Block, PcapNgReader};
        let scratch = Scratch::new("epb");
        let path = scratch.0.join("t.pcapng");
        let links = ["a--b".to_string(), "c--d".to_string()];
        let file = PcapNgFile::create(&path, &links).unwrap();
        // Every padding (lengths 0 to 3 mod 4), on both interfaces, at times past 2^32 ns.
        let frames: Vec<(u32, Instant, Vec<u8>)> = (0..8u32)
            .map(|i| {
                let t = Instant::from_nanos(5_000_000_123 + u64::from(i) * 1_000_001);
                (i % 2, t, (0..60 + i).map(|j| (i * 7 + j) as u8).collect())
            })
            .collect();
        let mut sinks = [file.sink(0), file.sink(1)];
        for (iface, t, frame) in &frames {
            sinks[*iface as usize].write(*t, frame);
        }
        for s in &mut sinks {
            s.finish().unwrap();
        }
        drop((sinks, file));
        let mut reader = PcapNgReader::new(File::open(&path).unwrap()).unwrap();
        let mut got = Vec::new();
        let mut names = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => names.push(idb.options.len()),
                Block::EnhancedPacket(epb) => got.push((
                    epb.interface_id,
                    Instant::from_nanos(epb.timestamp.as_nanos() as u64),
                    epb.original_len,
                    epb.data.to_vec(),
                )),
                other => panic!("unexpected block {other:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(names.len(), 2);
        let want: Vec<_> = frames
            .into_iter()
            .map(|(i, t, f)| (i, t, f.len() as u32, f))
            .collect();
        assert_eq!(got, want);
    }
}
