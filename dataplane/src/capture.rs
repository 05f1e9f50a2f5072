//! Captures: frames crossing a link, written as pcap (readable by tcpdump, tshark, Wireshark).
//!
//! Timestamps are the virtual time of the sim runtime, so two identical runs write identical
//! files. The snap length is [`wire::MAX_FRAME_LEN`]: a GSO super-frame is never truncated.

use std::any::Any;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
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
