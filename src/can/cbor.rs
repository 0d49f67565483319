//! The one DAG-CBOR value IPNS needs: the `data` map of a V2 record.
//!
//! Written in DAG-CBOR's canonical form (definite lengths, smallest integer heads, keys ordered
//! by length, then bytewise) and read back strictly, refusing anything a canonical writer would
//! not produce for this map.

/// Major types used here.
const UNSIGNED: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const MAP: u8 = 5;

/// The fields of a V2 record's `data` map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecordData {
    /// `Value`: the path the name points to.
    pub value: Vec<u8>,
    /// `Validity`: RFC 3339 end of validity.
    pub validity: Vec<u8>,
    /// `ValidityType`: 0 = EOL.
    pub validity_type: u64,
    /// `Sequence`.
    pub sequence: u64,
    /// `TTL` in nanoseconds.
    pub ttl: u64,
}

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    let be = value.to_be_bytes();
    // Additional information 0x18..=0x1b: a 1-, 2-, 4- or 8-byte argument follows.
    let (info, width) = match value {
        0..=23 => {
            out.push(major | be[7]);
            return;
        }
        24..=0xff => (0x18, 1),
        0x100..=0xffff => (0x19, 2),
        0x1_0000..=0xffff_ffff => (0x1a, 4),
        _ => (0x1b, 8),
    };
    out.push(major | info);
    out.extend_from_slice(&be[8 - width..]);
}

fn text(out: &mut Vec<u8>, key: &str) {
    head(out, TEXT, u64::try_from(key.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(key.as_bytes());
}

fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, BYTES, u64::try_from(value.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(value);
}

impl RecordData {
    /// The canonical DAG-CBOR encoding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.value.len() + self.validity.len());
        head(&mut out, MAP, 5);
        text(&mut out, "TTL");
        head(&mut out, UNSIGNED, self.ttl);
        text(&mut out, "Value");
        bytes(&mut out, &self.value);
        text(&mut out, "Sequence");
        head(&mut out, UNSIGNED, self.sequence);
        text(&mut out, "Validity");
        bytes(&mut out, &self.validity);
        text(&mut out, "ValidityType");
        head(&mut out, UNSIGNED, self.validity_type);
        out
    }

    /// Reads a `data` map; `None` unless it is exactly the canonical encoding of the five keys
    /// (an unknown key, a missing key or trailing bytes are refused).
    pub(crate) fn decode(input: &[u8]) -> Option<RecordData> {
        let mut reader = Reader { input, at: 0 };
        if reader.head(MAP)? != 5 {
            return None;
        }
        let mut data = RecordData::default();
        for expected in ["TTL", "Value", "Sequence", "Validity", "ValidityType"] {
            let len = usize::try_from(reader.head(TEXT)?).ok()?;
            if reader.take(len)? != expected.as_bytes() {
                return None;
            }
            match expected {
                "TTL" => data.ttl = reader.head(UNSIGNED)?,
                "Value" => data.value = reader.byte_string()?,
                "Sequence" => data.sequence = reader.head(UNSIGNED)?,
                "Validity" => data.validity = reader.byte_string()?,
                _ => data.validity_type = reader.head(UNSIGNED)?,
            }
        }
        (reader.at == input.len() && data.encode() == input).then_some(data)
    }
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.input.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    /// The argument of a head of major type `major` (definite lengths only).
    fn head(&mut self, major: u8) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        if first >> 5 != major {
            return None;
        }
        let width = match first & 0x1f {
            small @ 0..=23 => return Some(u64::from(small)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return None,
        };
        Some(
            self.take(width)?
                .iter()
                .fold(0u64, |n, &b| n << 8 | u64::from(b)),
        )
    }

    fn byte_string(&mut self) -> Option<Vec<u8>> {
        let len = usize::try_from(self.head(BYTES)?).ok()?;
        Some(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordData {
        RecordData {
            value: b"/ipfs/QmQ3gvw2XujomMbUnaZEypb3RRzQxa1NjTKgx1sghzP8zz".to_vec(),
            validity: b"2026-12-22T00:00:00.000Z".to_vec(),
            validity_type: 0,
            sequence: 300,
            ttl: 86_400_000_000_000,
        }
    }

    #[test]
    fn encodes_canonically_and_reads_back() {
        let encoded = sample().encode();
        // Map of 5, then "TTL" with the 8-byte integer head.
        assert_eq!(&encoded[..6], &[0xa5, 0x63, b'T', b'T', b'L', 0x1b]);
        // Sequence 300 takes the two-byte head.
        let sequence_key = encoded
            .windows(9)
            .position(|w| w == b"\x68Sequence")
            .expect("key");
        assert_eq!(
            &encoded[sequence_key + 9..sequence_key + 12],
            &[0x19, 0x01, 0x2c]
        );
        assert_eq!(RecordData::decode(&encoded), Some(sample()));
    }

    #[test]
    fn non_canonical_or_truncated_maps_are_refused() {
        let encoded = sample().encode();
        for cut in 0..encoded.len() {
            assert_eq!(RecordData::decode(&encoded[..cut]), None, "cut at {cut}");
        }
        let mut trailing = encoded.clone();
        trailing.push(0);
        assert_eq!(RecordData::decode(&trailing), None);
        // ValidityType 0 written with a one-byte head instead of inline.
        let mut wide = encoded[..encoded.len() - 1].to_vec();
        wide.extend([0x18, 0x00]);
        assert_eq!(RecordData::decode(&wide), None);
    }
}
