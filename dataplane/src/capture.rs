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
/// Thousands of links need one open file. Each link writes through its own [`PcapNgSink`].
#[derive(Clone)]
pub struct PcapNgFile {
    inner: Arc<Mutex<NgInner>>,
}

struct NgInner {
    writer: Option<PcapNgWriter<BufWriter<File>>>,
    /// The first write error: reported once, by the first sink to finish.
    error: Option<std::io::Error>,
}

impl PcapNgFile {
    /// Create `path` with an interface for each of `links`, in order.
    pub fn create(path: &Path, links: &[String]) -> std::io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
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

impl Drop for PcapFile {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
