//! The text encodings CAN and IPNS use: base58btc (hashes, peer ids), base36 (CIDv1 names) and
//! base64url with padding (the `name/upload` record argument), plus their multibase prefixes.

/// Bitcoin's base58 alphabet, as IPFS uses it for `Qm…` hashes and the `z` multibase.
const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Lower-case base36, the `k` multibase of IPNS names.
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// RFC 4648 §5 "URL and filename safe" alphabet.
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in base58btc, without a multibase prefix.
pub fn base58(bytes: &[u8]) -> String {
    to_radix(bytes, BASE58)
}

/// Decodes base58btc text without a multibase prefix; `None` on a character outside the
/// alphabet.
pub fn from_base58(text: &str) -> Option<Vec<u8>> {
    from_radix(text, BASE58)
}

/// `bytes` in lower-case base36, without a multibase prefix.
pub(crate) fn base36(bytes: &[u8]) -> String {
    to_radix(bytes, BASE36)
}

/// Decodes base36 text (either case) without a multibase prefix.
pub(crate) fn from_base36(text: &str) -> Option<Vec<u8>> {
    from_radix(&text.to_ascii_lowercase(), BASE36)
}

/// `bytes` in base64url with `=` padding: the multibase `U` variant, without the prefix.
pub(crate) fn base64url_padded(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (bits >> (18 - 6 * position)) & 0x3f;
                text.push(char::from(BASE64URL[index as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Decodes base64url, with or without padding; `None` on anything else.
pub(crate) fn from_base64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0u32;
    for character in text.bytes() {
        let value = BASE64URL.iter().position(|&c| c == character)?;
        bits = bits << 6 | u32::try_from(value).ok()?;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count).to_le_bytes()[0]);
        }
    }
    Some(bytes)
}

/// Decodes multibase text by its prefix: `z` base58btc, `k` base36, `U`/`u` base64url.
pub fn from_multibase(text: &str) -> Option<Vec<u8>> {
    let mut chars = text.chars();
    let prefix = chars.next()?;
    let rest = chars.as_str();
    match prefix {
        'z' => from_base58(rest),
        'k' | 'K' => from_base36(rest),
        'U' | 'u' => from_base64url(rest),
        _ => None,
    }
}

/// Big-endian base conversion; each leading zero byte becomes one leading zero digit.
fn to_radix(bytes: &[u8], alphabet: &[u8]) -> String {
    let radix = u32::try_from(alphabet.len()).unwrap_or(u32::MAX);
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Little-endian digits of the number so far.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % radix).to_le_bytes()[0];
            carry /= radix;
        }
        while carry > 0 {
            digits.push((carry % radix).to_le_bytes()[0]);
            carry /= radix;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n(char::from(alphabet[0]), zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(alphabet[usize::from(d)])),
    );
    text
}

fn from_radix(text: &str, alphabet: &[u8]) -> Option<Vec<u8>> {
    let radix = u32::try_from(alphabet.len()).ok()?;
    let zeros = text.bytes().take_while(|&c| c == alphabet[0]).count();
    // Little-endian bytes of the number so far.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for character in text.bytes().skip(zeros) {
        let mut carry = u32::try_from(alphabet.iter().position(|&c| c == character)?).ok()?;
        for byte in &mut bytes {
            carry += u32::from(*byte) * radix;
            *byte = carry.to_le_bytes()[0];
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push(carry.to_le_bytes()[0]);
            carry >>= 8;
        }
    }
    let mut result = vec![0u8; zeros];
    result.extend(bytes.iter().rev());
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix B.2: the encoded `CanCryptoKey` of the seed 00..1f key and its `z` form.
    const KEY_HEX: &str =
        "0801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";

    #[test]
    fn base58_matches_the_appendix_b_key() {
        let key = hex::decode(KEY_HEX).expect("hex");
        assert_eq!(
            format!("z{}", base58(&key)),
            "z4XTTM1PDTf9mf4QUwzbzmsEYehUZjC4VFwa9AwCVUKnEidRDH"
        );
        assert_eq!(
            from_multibase("z4XTTM1PDTf9mf4QUwzbzmsEYehUZjC4VFwa9AwCVUKnEidRDH"),
            Some(key)
        );
    }

    #[test]
    fn leading_zeros_survive_both_ways() {
        for bytes in [
            vec![],
            vec![0],
            vec![0, 0, 1],
            vec![0, 255, 0],
            vec![255; 40],
        ] {
            assert_eq!(from_base58(&base58(&bytes)), Some(bytes.clone()));
            assert_eq!(from_base36(&base36(&bytes)), Some(bytes.clone()));
            assert_eq!(from_base64url(&base64url_padded(&bytes)), Some(bytes));
        }
        assert_eq!(base58(&[0, 0, 1]), "112");
    }

    #[test]
    fn base64url_pads_and_uses_the_url_alphabet() {
        assert_eq!(base64url_padded(b"f"), "Zg==");
        assert_eq!(base64url_padded(b"fo"), "Zm8=");
        assert_eq!(base64url_padded(b"foo"), "Zm9v");
        assert_eq!(base64url_padded(&[0xfb, 0xff]), "-_8=");
        assert_eq!(from_base64url("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(from_base64url("Z"), None);
        assert_eq!(from_base64url("Zm+v"), None);
    }

    #[test]
    fn unknown_characters_and_prefixes_are_refused() {
        assert_eq!(from_base58("0OIl"), None);
        assert_eq!(from_multibase("f00"), None);
        assert_eq!(from_multibase(""), None);
    }
}
