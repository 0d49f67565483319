//! Recognises PNG and JPEG images by walking their container structure, without decoding pixels.
//!
//! Walking chunk and segment boundaries catches wrong types and truncated files in linear time
//! and constant memory, so a crafted image can never become a decompression bomb (spec §4.8
//! only asks for "a decodable PNG or JPEG"; the server never resizes or re-encodes).

/// Which container format an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageFormat {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF/Exif, baseline or progressive).
    Jpeg,
}

/// The format of `data` when it is a structurally complete PNG or JPEG, else `None`.
pub(crate) fn detect(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(&PNG_SIGNATURE) {
        return is_complete_png(data).then_some(ImageFormat::Png);
    }
    if data.starts_with(&[0xFF, 0xD8]) {
        return is_complete_jpeg(data).then_some(ImageFormat::Jpeg);
    }
    None
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([slice[0], slice[1], slice[2], slice[3]]))
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    let slice = bytes.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([slice[0], slice[1]])))
}

/// IHDR first with non-zero dimensions, every chunk CRC-checked, at least one IDAT, IEND last.
fn is_complete_png(data: &[u8]) -> bool {
    let mut at = PNG_SIGNATURE.len();
    let mut first = true;
    let mut seen_data = false;
    while let Some(len) = be32(data, at) {
        // Length, type and CRC take 12 bytes around the body; the peer chose `len`, so the sum
        // is checked (usize is 32 bits on armv7).
        let chunk_end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(12))
            .and_then(|size| size.checked_add(at))
            .filter(|&end| end <= data.len());
        let Some(chunk_end) = chunk_end else {
            return false;
        };
        let (kind, body) = (&data[at + 4..at + 8], &data[at + 8..chunk_end - 4]);
        let Some(crc) = be32(data, chunk_end - 4) else {
            return false;
        };
        if crc32(&data[at + 4..chunk_end - 4]) != crc {
            return false;
        }
        if first {
            let dims_ok =
                be32(body, 0).is_some_and(|w| w > 0) && be32(body, 4).is_some_and(|h| h > 0);
            if kind != b"IHDR" || body.len() != 13 || !dims_ok {
                return false;
            }
            first = false;
        }
        seen_data |= kind == b"IDAT";
        at = chunk_end;
        if kind == b"IEND" {
            return seen_data && at == data.len();
        }
    }
    false
}

/// SOI, header segments with a frame header (SOF) before the first scan, scans, then EOI at the
/// very end.
fn is_complete_jpeg(data: &[u8]) -> bool {
    let mut at = 2;
    let mut seen_frame = false;
    loop {
        if data.get(at) != Some(&0xFF) {
            return false;
        }
        while data.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = data.get(at) else {
            return false;
        };
        at += 1;
        match marker {
            0xD9 => return false, // EOI before any scan
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = be16(data, at).filter(|&l| l >= 2) else {
            return false;
        };
        let Some(segment) = data.get(at + 2..at + len) else {
            return false;
        };
        if is_frame_header(marker) {
            let width = be16(segment, 3);
            if width.is_none_or(|w| w == 0) || segment.get(5).is_none_or(|&c| c == 0) {
                return false;
            }
            seen_frame = true;
        }
        at += len;
        if marker == 0xDA {
            if !seen_frame {
                return false;
            }
            match skip_scan(data, at) {
                Some(ScanEnd::Eoi(end)) => return end == data.len(),
                Some(ScanEnd::Marker(next)) => at = next,
                None => return false,
            }
        }
    }
}

fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

enum ScanEnd {
    /// Offset just past the EOI marker.
    Eoi(usize),
    /// Offset of the 0xFF that starts the next segment.
    Marker(usize),
}

/// Skips entropy-coded data: stuffed `FF 00` and restart markers stay inside the scan.
fn skip_scan(data: &[u8], mut at: usize) -> Option<ScanEnd> {
    loop {
        let offset = data.get(at..)?.iter().position(|&b| b == 0xFF)?;
        at += offset;
        let mut next = at + 1;
        while data.get(next) == Some(&0xFF) {
            next += 1;
        }
        match *data.get(next)? {
            0x00 | 0xD0..=0xD7 => at = next + 1,
            0xD9 => return Some(ScanEnd::Eoi(next + 1)),
            _ => return Some(ScanEnd::Marker(next - 1)),
        }
    }
}

/// CRC-32 (IEEE, as PNG uses it), bitwise: images are at most 20 KiB, so no table is needed.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lengths_at_the_top_of_the_range_are_refused() {
        // Length + 16 overflows a 32-bit usize (armv7); it must be refused, not wrap or panic.
        let mut data = PNG_SIGNATURE.to_vec();
        data.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xF8]);
        data.extend_from_slice(b"IHDR");
        data.extend_from_slice(&[0; 8]);
        assert!(!is_complete_png(&data));
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read(format!("{path}{name}")).expect("fixture exists")
    }

    #[test]
    fn recognises_real_files() {
        assert_eq!(detect(&fixture("profile.jpg")), Some(ImageFormat::Jpeg));
        assert_eq!(detect(&fixture("thumbnail.jpg")), Some(ImageFormat::Jpeg));
        assert_eq!(detect(&fixture("progressive.jpg")), Some(ImageFormat::Jpeg));
        assert_eq!(detect(&fixture("big.jpg")), Some(ImageFormat::Jpeg));
        assert_eq!(detect(&fixture("thumbnail.png")), Some(ImageFormat::Png));
    }

    #[test]
    fn rejects_non_images() {
        assert_eq!(detect(b"A"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"GIF89a"), None);
        assert_eq!(detect(&PNG_SIGNATURE), None);
        assert_eq!(detect(&[0xFF, 0xD8, 0xFF, 0xD9]), None);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for name in ["profile.jpg", "progressive.jpg", "thumbnail.png"] {
            let data = fixture(name);
            for cut in 0..data.len() {
                assert_eq!(detect(&data[..cut]), None, "{name} cut at {cut}");
            }
        }
    }

    #[test]
    fn corrupted_png_chunk_fails_its_crc() {
        let mut data = fixture("thumbnail.png");
        let middle = data.len() / 2;
        data[middle] ^= 0x55;
        assert_eq!(detect(&data), None);
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        for name in ["profile.jpg", "thumbnail.png"] {
            let mut data = fixture(name);
            data.extend_from_slice(b"junk");
            assert_eq!(detect(&data), None, "{name}");
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
