//! `X-Request-Id`: a client's valid id is kept, otherwise rsp makes one, so
//! one request can be followed through rsp's log and the backend's.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest client-supplied id rsp keeps.
const MAX_LENGTH: usize = 128;

/// Ids a client may choose: short, printable, nothing that needs quoting
/// in a log line or a header.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LENGTH
        && id
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&byte))
}

/// Makes 128-bit random ids, 32 hex digits like nginx's `$request_id`.
pub struct RequestIds {
    state: u64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom writes at most `seed.len()` bytes into `seed`.
        let filled = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        let mut state = u64::from_ne_bytes(seed);
        if filled != seed.len() as isize {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64);
            state = now ^ (u64::from(std::process::id()) << 32);
        }
        RequestIds { state }
    }

    /// splitmix64: fast, and every seed walks a full-period sequence, so
    /// ids do not repeat within one process.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    /// Replaces `out` with a new id (by hand: `write!` with `{:016x}` was
    /// a twentieth of rsp's own CPU time per request).
    pub fn generate(&mut self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let value = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        let mut id = [0u8; 32];
        for (index, digit) in id.iter_mut().enumerate() {
            *digit = DIGITS[((value >> (124 - 4 * index)) & 0xf) as usize];
        }
        out.clear();
        out.extend(id.iter().map(|&digit| char::from(digit)));
    }
}

impl Default for RequestIds {
    fn default() -> RequestIds {
        RequestIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_distinct_hex() {
        let mut ids = RequestIds::new();
        let mut seen = HashSet::new();
        let mut id = String::new();
        for _ in 0..10_000 {
            ids.generate(&mut id);
            assert_eq!(id.len(), 32);
            assert!(is_valid(id.as_bytes()));
            assert!(id.bytes().all(|byte| byte.is_ascii_hexdigit()));
            assert!(seen.insert(id.clone()));
        }
    }

    #[test]
    fn client_ids_must_be_short_and_plain() {
        assert!(is_valid(b"5f0c2b8e-4d1a-4b7e-9a57-1a2b3c4d5e6f"));
        assert!(is_valid(b"req:42/a=b"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"quote\"d"));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid("caf\u{e9}".as_bytes()));
    }
}
