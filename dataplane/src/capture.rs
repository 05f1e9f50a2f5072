//! Captures: frames crossing a link, written as pcap (readable by tcpdump, tshark, Wireshark).
//!
//! Timestamps are the virtual time of the sim runtime, so two identical runs write identical
//! files. The snap length is [`wire::MAX_FRAME_LEN`]: a GSO super-frame is never truncated.

use std::any::Any;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
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

/// A pcap file (little-endian, microsecond timestamps, Ethernet link type).
pub struct PcapFile {
    path: PathBuf,
    writer: Option<PcapWriter<BufWriter<File>>>,
    error: Option<std::io::Error>,
}

impl PcapFile {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        let header = PcapHeader {
            snaplen: wire::MAX_FRAME_LEN as u32,
            datalink: DataLink::ETHERNET,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(file, header).map_err(std::io::Error::other)?;
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
        let pkt = PcapPacket::new(
            Duration::from_micros(now.as_micros()),
            frame.len() as u32,
            frame,
        );
        if let Err(e) = w.write_packet(&pkt) {
            self.error.get_or_insert(std::io::Error::other(e));
            self.writer = None;
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.writer.take() {
            Some(w) => w.into_writer().flush(),
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
    writer: Option<PcapNgWriter<ThreadedWriter>>,
    /// The first write error: reported once, by the first sink to finish.
    error: Option<std::io::Error>,
}

impl PcapNgFile {
    /// Create `path` with an interface for each of `links`, in order.
    pub fn create(path: &Path, links: &[String]) -> std::io::Result<Self> {
        let file = ThreadedWriter::new(File::create(path)?)?;
        let mut writer = PcapNgWriter::new(file).map_err(std::io::Error::other)?;
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
                writer: Some(writer),
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
        let epb = EnhancedPacketBlock {
            interface_id: self.interface,
            timestamp: Duration::from_nanos(now.as_nanos()),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(frame),
            options: Vec::new(),
        };
        if let Err(e) = w.write_pcapng_block(epb) {
            inner.error.get_or_insert(std::io::Error::other(e));
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
            Some(w) => w.get_mut().flush(),
            None => Ok(()),
        }
    }
}

/// A writer that hands full buffers of [`THREADED_CHUNK`] bytes to a thread of its own, which
/// writes them to the file: the run goes on while the kernel copies a capture into the page
/// cache, on the other core. At most [`THREADED_IN_FLIGHT`] buffers wait; past that, writing
/// waits for the thread. A write error is reported by the next `flush`.
pub struct ThreadedWriter {
    buf: Vec<u8>,
    tx: Option<crossbeam_channel::Sender<Chunk>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Raised by the thread at its first write error: writing then fails at once.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

enum Chunk {
    Data(Vec<u8>),
    /// Everything before is written: flush, and say how it went.
    Sync(crossbeam_channel::Sender<std::io::Result<()>>),
}

pub const THREADED_CHUNK: usize = 1 << 20;
pub const THREADED_IN_FLIGHT: usize = 8;

impl ThreadedWriter {
    pub fn new(mut file: File) -> std::io::Result<ThreadedWriter> {
        let (tx, rx) = crossbeam_channel::bounded::<Chunk>(THREADED_IN_FLIGHT);
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raise = failed.clone();
        let thread = std::thread::Builder::new()
            .name("vmcnet-pcap".into())
            .spawn(move || {
                // The first error sticks: nothing is written after a torn block.
                let mut error: Option<std::io::Error> = None;
                for chunk in rx {
                    match chunk {
                        Chunk::Data(b) if error.is_none() => {
                            if let Err(e) = file.write_all(&b) {
                                error = Some(e);
                                raise.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Chunk::Data(_) => {}
                        Chunk::Sync(reply) => {
                            let r = match &error {
                                Some(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                                None => file.flush(),
                            };
                            let _ = reply.send(r);
                        }
                    }
                }
            })?;
        Ok(ThreadedWriter {
            buf: Vec::with_capacity(THREADED_CHUNK),
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    fn send(&mut self, chunk: Chunk) -> std::io::Result<()> {
        let gone = || std::io::Error::other("the pcap writer thread is gone");
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(chunk)
            .map_err(|_| gone())
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(THREADED_CHUNK));
        self.send(Chunk::Data(full))
    }
}

impl Write for ThreadedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            // The thread's error, as the flush reports it.
            self.flush()?;
        }
        self.buf.extend_from_slice(b);
        if self.buf.len() >= THREADED_CHUNK {
            self.send_buf()?;
        }
        Ok(b.len())
    }

    /// Write out everything so far, and report the first error since the last flush.
    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Chunk::Sync(tx))?;
        rx.recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the pcap writer thread is gone")))
    }
}

impl Drop for ThreadedWriter {
    fn drop(&mut self) {
        let _ = self.send_buf();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

    #[test]
    fn threaded_writer_writes_everything_in_order_and_reports_a_full_disk_at_flush() {
        let path = std::env::temp_dir().join(format!("vmcnet-threaded-{}", std::process::id()));
        let mut w = ThreadedWriter::new(File::create(&path).unwrap()).unwrap();
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
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .unwrap();
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
        let path =
            std::env::temp_dir().join(format!("vmcnet-threaded-drop-{}", std::process::id()));
        let mut w = ThreadedWriter::new(File::create(&path).unwrap()).unwrap();
        w.write_all(b"held, never flushed").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), b"held, never flushed");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn pcap_file_has_header_and_records() {
        let dir = std::env::temp_dir().join(format!("vmcnet-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut p = PcapFile::create(&path).unwrap();
        p.write(Instant::from_micros(1_500_000), &[0xffu8; 60]);
        p.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(bytes.len(), 24 + 16 + 60);
        // Record header: seconds 1, microseconds 500000, lengths 60.
        assert_eq!(&bytes[24..28], &1u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &500_000u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &60u32.to_le_bytes());
    }
}
