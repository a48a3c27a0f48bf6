//! Small self-contained helpers: SHA-1 (for PVE's config digest), calendar formatting and
//! form-urlencoded parameter handling.

use std::collections::BTreeMap;

/// SHA-1 of `data`, as 40 lowercase hex digits (PVE's config `digest`).
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
}

/// Civil date-time (UTC) of a Unix timestamp: (year, month, day, hour, minute, second), from
/// the shared calendar ([`felhom_protocol::civil`]).
pub(crate) fn civil(epoch: u64) -> (i64, u32, u32, u32, u32, u32) {
    let t = felhom_protocol::civil::DateTime::from_unix_u64(epoch);
    (t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// `YYYY_MM_DD-HH_MM_SS` as used in vzdump archive names.
pub(crate) fn vzdump_stamp(epoch: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}_{mo:02}_{d:02}-{h:02}_{mi:02}_{s:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` as in Proxmox Backup Server snapshot names.
pub(crate) fn civil_iso(epoch: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `YYYY-MM-DD HH:MM:SS` as used in task logs.
pub(crate) fn log_stamp(epoch: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Current Unix time in seconds.
pub(crate) fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decodes `%XX` escapes and (when `plus_is_space`) `+` as space; invalid escapes stay as-is.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=2` into a map (later keys win).
pub(crate) fn parse_form(s: &str, params: &mut BTreeMap<String, String>) {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(percent_decode(k, true), percent_decode(v, true));
    }
}

/// Flattens a JSON request body into string parameters the way PVE sees them.
pub(crate) fn parse_json_params(body: &[u8], params: &mut BTreeMap<String, String>) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return false;
    };
    for (k, v) in map {
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => if b { "1" } else { "0" }.to_string(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        params.insert(k, s);
    }
    true
}

/// PVE boolean parameter semantics (`1`, `true`, `yes`, `on`).
pub(crate) fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(sha1_hex(long), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn civil_dates() {
        // The calendar is tested in felhom_protocol::civil; these are the formats.
        assert_eq!(vzdump_stamp(1_706_702_400), "2024_01_31-12_00_00");
        assert_eq!(log_stamp(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(civil_iso(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn form_decoding() {
        let mut p = BTreeMap::new();
        parse_form("a=1&b=x%3Ay+z&c", &mut p);
        assert_eq!(p.get("a").map(String::as_str), Some("1"));
        assert_eq!(p.get("b").map(String::as_str), Some("x:y z"));
        assert_eq!(p.get("c").map(String::as_str), Some(""));
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
