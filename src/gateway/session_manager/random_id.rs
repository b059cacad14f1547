//! A 256-bit random id (`jti`, `sid`) held as its 32 bytes.
//!
//! Tokens carry ids as 43 characters of base64url without padding; the
//! in-memory state (session index, revocation shards) keeps the bytes
//! instead: 32 bytes inline, no heap block, no 24-byte `String` header.
//! Text is decoded at the edges (claims, admin input, journal lines) and
//! encoded back for JSON and the journal, so no on-disk or wire format
//! changes.
//!
//! Only the canonical encoding parses (43 characters, unused trailing bits
//! zero), so text ↔ bytes is a bijection on what parses: two different
//! strings never map to one id, and `to_string` returns exactly the text
//! that was parsed. Anything else (an admin's free-form id, say) stays a
//! string wherever it is kept.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes in an id.
pub(crate) const ID_BYTES: usize = 32;
/// Characters of its base64url (no padding) text.
pub(crate) const ID_TEXT_LEN: usize = 43;

/// A 256-bit id. Ids are public values (they travel in signed tokens and
/// upstream headers), so `Eq`/`Ord` need not be constant-time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RandomId([u8; ID_BYTES]);

impl RandomId {
    /// Parses the canonical text form; `None` for anything else. The
    /// engine refuses padding and non-zero unused trailing bits, so only
    /// the canonical 43 characters decode.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if text.len() != ID_TEXT_LEN {
            return None;
        }
        // The engine's output estimate for 43 characters is 33 bytes.
        let mut out = [0u8; ID_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(ID_BYTES) => out[..ID_BYTES].try_into().ok().map(Self),
            _ => None,
        }
    }

    /// An id from its bytes.
    #[cfg(test)]
    pub(crate) const fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub(crate) const fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }
}

impl fmt::Display for RandomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_TEXT_LEN];
        match URL_SAFE_NO_PAD.encode_slice(self.0, &mut buf) {
            // base64url is ASCII.
            Ok(n) => f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for RandomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RandomId({self})")
    }
}

impl From<RandomId> for String {
    fn from(id: RandomId) -> Self {
        id.to_string()
    }
}

impl From<&RandomId> for String {
    fn from(id: &RandomId) -> Self {
        id.to_string()
    }
}

/// Why text is not a [`RandomId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a 256-bit id in base64url without padding")]
pub(crate) struct NotRandomId;

impl FromStr for RandomId {
    type Err = NotRandomId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(NotRandomId)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests {
    use super::*;

    fn text(bytes: [u8; ID_BYTES]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn round_trips_through_its_text() {
        for bytes in [[0u8; 32], [0xff; 32], core::array::from_fn(|i| i as u8)] {
            let s = text(bytes);
            let id = RandomId::parse(&s).unwrap();
            assert_eq!(id.as_bytes(), &bytes);
            assert_eq!(id.to_string(), s);
            assert_eq!(String::from(id), s);
        }
    }

    #[test]
    fn only_the_canonical_43_character_form_parses() {
        let s = text([7u8; 32]);
        assert!(RandomId::parse(&s[..42]).is_none(), "too short");
        assert!(RandomId::parse(&format!("{s}A")).is_none(), "too long");
        assert!(RandomId::parse(&format!("{s}=")).is_none(), "padding");
        let standard = format!("{}+", &s[..42]);
        assert!(RandomId::parse(&standard).is_none(), "standard alphabet");
        // The last character carries 2 unused bits: a non-zero one is a
        // second spelling of the same bytes and must not parse.
        let last = s.as_bytes()[42];
        assert_eq!(last, b'c', "[7; 32] ends in 'c' (0b011100)");
        let alias = format!("{}d", &s[..42]);
        assert!(
            RandomId::parse(&alias).is_none(),
            "non-canonical trailing bits"
        );
        assert!(RandomId::parse("").is_none());
        assert!(RandomId::parse(&"é".repeat(21)).is_none());
        assert_eq!("x".parse::<RandomId>(), Err(NotRandomId));
    }

    /// `parse` (length check + engine) agrees with the general decode on what parses and
    /// to what, over many random and mutated inputs.
    #[test]
    fn agrees_with_the_base64_engine() {
        let engine = |s: &str| {
            let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
            <[u8; ID_BYTES]>::try_from(bytes).ok()
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.";
        for _ in 0..20_000 {
            let bytes: [u8; 32] = core::array::from_fn(|_| next() as u8);
            let mut s = text(bytes).into_bytes();
            assert_eq!(
                RandomId::parse(std::str::from_utf8(&s).unwrap()).map(|i| i.0),
                Some(bytes)
            );
            // Mutate one character, sometimes out of the alphabet.
            let at = (next() % 43) as usize;
            s[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            let s = String::from_utf8(s).unwrap();
            assert_eq!(RandomId::parse(&s).map(|i| i.0), engine(&s), "{s}");
        }
    }

    #[test]
    fn is_32_bytes_inline() {
        assert_eq!(size_of::<RandomId>(), ID_BYTES);
        assert_eq!(size_of::<Option<RandomId>>(), ID_BYTES + 1);
    }

    #[test]
    fn debug_and_display_show_the_text() {
        let id = RandomId::from_bytes([1u8; 32]);
        assert_eq!(format!("{id:?}"), format!("RandomId({})", text([1u8; 32])));
    }
}
