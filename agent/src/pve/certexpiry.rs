//! When the API's certificates expire: a minimal DER reader for an X.509 certificate's
//! `notAfter`, what the TLS verifier last accepted, and the warnings `selftest` prints.
//!
//! Proxmox re-issues `pve-ssl.pem` on renewal (pveupdate) and on `pvecm updatecerts`, which
//! breaks a pinned leaf fingerprint; warning ahead of the presented certificate's expiry
//! gives the operator time to re-pin, or better, to pin the cluster CA instead.
//!
//! The reader walks only `Certificate → TBSCertificate → [version] serialNumber signature
//! issuer validity → notAfter` (RFC 5280 §4.1), with every length checked against what is
//! left; anything else yields `None`. No signature or other field is interpreted.

use std::sync::Mutex;

use felhom_protocol::civil;
use serde::Serialize;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION_TAG: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Splits one DER TLV off `input`: (tag, contents, rest). Definite lengths of at most four
/// bytes only, in DER's shortest form (X.690 §10.1: the long form only from 128 on, with no
/// leading zero byte), as webpki, which parses the certificate in the handshake, requires;
/// `None` when the input is short or malformed.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur on this path
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        if bytes.first() == Some(&0) {
            return None; // a leading zero byte: not the shortest form
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None; // the short form was due
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// Takes one TLV that must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = tlv(input)?;
    (t == tag).then_some((contents, rest))
}

/// Parses a DER `UTCTime` (`YYMMDDHHMMSSZ`) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`) as
/// RFC 5280 requires them, to Unix seconds.
fn parse_time(tag: u8, s: &[u8]) -> Option<i64> {
    let year_digits = match tag {
        UTC_TIME => 2,
        GENERALIZED_TIME => 4,
        _ => return None,
    };
    let (digits, z) = s.split_at_checked(s.len().checked_sub(1)?)?;
    if z != b"Z" || digits.len() != year_digits + 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let mut year = num(0..year_digits);
    if year_digits == 2 {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let o = year_digits;
    let (mo, d, h, mi, sec) = (
        num(o..o + 2),
        num(o + 2..o + 4),
        num(o + 4..o + 6),
        num(o + 6..o + 8),
        num(o + 8..o + 10),
    );
    // Two digits each: they fit a u32.
    let (mo, d) = (mo as u32, d as u32);
    if !(1..=12).contains(&mo)
        || d < 1
        || d > civil::days_in_month(year, mo)
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    Some(civil::days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// The `notAfter` of a DER X.509 certificate as Unix seconds, or `None` when the bytes are
/// not a certificate this reader understands.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let (tag, _, after_version) = tlv(tbs)?;
    let rest = if tag == VERSION_TAG {
        after_version
    } else {
        tbs
    };
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (before_tag, _, rest) = tlv(validity)?;
    if before_tag != UTC_TIME && before_tag != GENERALIZED_TIME {
        return None;
    }
    let (after_tag, after, _) = tlv(rest)?;
    parse_time(after_tag, after)
}

/// The `notAfter` of the certificate the server last presented and the verifier accepted
/// (shared by the verifier and the client).
#[derive(Debug, Default)]
pub(crate) struct SeenCert {
    not_after: Mutex<Option<i64>>,
}

impl SeenCert {
    /// Records an accepted end-entity certificate (unparsable: forgets the previous one).
    pub(crate) fn record(&self, der: &[u8]) {
        if let Ok(mut g) = self.not_after.lock() {
            *g = not_after(der);
        }
    }

    /// The last recorded `notAfter`.
    pub(crate) fn get(&self) -> Option<i64> {
        self.not_after.lock().ok().and_then(|g| *g)
    }
}

/// When the certificates the client relies on expire (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CertDates {
    /// `notAfter` of the certificate the server presented on the last handshake (the pinned
    /// leaf with `tls_fingerprint`); `None` before any handshake.
    pub server_not_after: Option<i64>,
    /// `notAfter` of each certificate in `tls_ca_file`, in file order (empty in other modes).
    pub ca_file_not_after: Vec<i64>,
}

/// One certificate that expires within the warning window (or has expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryWarning {
    /// `server` (the presented certificate) or `ca_file`.
    pub certificate: &'static str,
    /// Its `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Whole days left (negative: expired that many days ago).
    pub days_left: i64,
    /// The warning text for the operator.
    pub message: String,
}

impl CertDates {
    /// Certificates whose `notAfter` is less than `warn_days` days after `now` (Unix
    /// seconds). `warn_days == 0` never warns.
    pub fn warnings(&self, now: i64, warn_days: u32) -> Vec<ExpiryWarning> {
        if warn_days == 0 {
            return Vec::new();
        }
        let window = i64::from(warn_days) * 86_400;
        let server = self.server_not_after.map(|t| ("server", t));
        let cas = self.ca_file_not_after.iter().map(|t| ("ca_file", *t));
        server
            .into_iter()
            .chain(cas)
            .filter(|(_, t)| t.saturating_sub(now) < window)
            .map(|(which, t)| {
                let left = t.saturating_sub(now);
                let days_left = left.div_euclid(86_400);
                let what = if which == "server" {
                    "the certificate the Proxmox API presents"
                } else {
                    "a certificate in tls_ca_file"
                };
                let when = if left < 0 {
                    format!("expired {} day(s) ago", -days_left)
                } else {
                    format!("expires in {days_left} day(s)")
                };
                let fix = if which == "server" {
                    "; Proxmox re-issues pve-ssl.pem on renewal, which breaks a tls_fingerprint pin — pin the cluster CA (tls_ca_file /etc/pve/pve-root-ca.pem with tls_server_name) or re-pin after the renewal"
                } else {
                    "; replace the CA file before then"
                };
                ExpiryWarning {
                    certificate: which,
                    not_after: t,
                    days_left,
                    message: format!("{what} {when} (notAfter {}){fix}", utc(t)),
                }
            })
            .collect()
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds.
fn utc(t: i64) -> String {
    format!("{} UTC", civil::DateTime::from_unix(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER certificate skeleton with `validity` as given (only the walked fields).
    fn cert_with(version: bool, validity: &[u8]) -> Vec<u8> {
        fn wrap(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else if body.len() < 0x100 {
                v.extend_from_slice(&[0x81, body.len() as u8]);
            } else {
                v.extend_from_slice(&[0x82, (body.len() >> 8) as u8, body.len() as u8]);
            }
            v.extend_from_slice(body);
            v
        }
        let mut tbs = Vec::new();
        if version {
            tbs.extend(wrap(VERSION_TAG, &wrap(INTEGER, &[2])));
        }
        tbs.extend(wrap(INTEGER, &[0x01, 0x02]));
        tbs.extend(wrap(SEQUENCE, &[0x06, 0x01, 0x00]));
        tbs.extend(wrap(SEQUENCE, &[0u8; 200]));
        tbs.extend(wrap(SEQUENCE, validity));
        tbs.extend(wrap(SEQUENCE, &[]));
        let mut cert = wrap(SEQUENCE, &tbs);
        cert.extend(wrap(SEQUENCE, &[]));
        wrap(SEQUENCE, &cert)
    }

    fn validity(before: (u8, &str), after: (u8, &str)) -> Vec<u8> {
        let mut v = vec![before.0, before.1.len() as u8];
        v.extend_from_slice(before.1.as_bytes());
        v.extend_from_slice(&[after.0, after.1.len() as u8]);
        v.extend_from_slice(after.1.as_bytes());
        v
    }

    #[test]
    fn reads_utc_and_generalized_not_after() {
        let v = validity((UTC_TIME, "240101000000Z"), (UTC_TIME, "341231235959Z"));
        // 2034-12-31T23:59:59Z
        assert_eq!(not_after(&cert_with(true, &v)), Some(2_051_222_399));
        assert_eq!(not_after(&cert_with(false, &v)), Some(2_051_222_399));
        let v = validity(
            (UTC_TIME, "991231235959Z"),
            (GENERALIZED_TIME, "20500101000000Z"),
        );
        assert_eq!(not_after(&cert_with(true, &v)), Some(2_524_608_000));
        // UTCTime 50..99 is 19xx.
        let v = validity((UTC_TIME, "700101000000Z"), (UTC_TIME, "700102000000Z"));
        assert_eq!(not_after(&cert_with(true, &v)), Some(86_400));
        let v = validity((UTC_TIME, "240101000000Z"), (UTC_TIME, "240229120000Z"));
        assert_eq!(not_after(&cert_with(true, &v)), Some(1_709_208_000));
    }

    #[test]
    fn malformed_input_is_none_not_a_panic() {
        let good = cert_with(
            true,
            &validity((UTC_TIME, "240101000000Z"), (UTC_TIME, "341231235959Z")),
        );
        for cut in 0..good.len() {
            assert_eq!(not_after(&good[..cut]), None, "cut at {cut}");
        }
        for bad in [
            "341231235959",    // no Z
            "3412312359Z",     // no seconds
            "341331235959Z",   // month 13
            "340230235959Z",   // 30 February
            "230229000000Z",   // 29 February in a common year
            "341231245959Z",   // hour 24
            "34123123595aZ",   // not a digit
            "+41231235959Z",   // sign
            "20341231235959Z", // GeneralizedTime length under the UTCTime tag
        ] {
            let v = validity((UTC_TIME, "240101000000Z"), (UTC_TIME, bad));
            assert_eq!(not_after(&cert_with(true, &v)), None, "{bad}");
        }
        let v = validity((0x04, "240101000000Z"), (UTC_TIME, "341231235959Z"));
        assert_eq!(
            not_after(&cert_with(true, &v)),
            None,
            "notBefore not a time"
        );
        assert_eq!(not_after(&[0x30, 0x85, 1, 0, 0, 0, 0]), None);
        assert_eq!(not_after(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(not_after(&[0x1f, 0x01, 0x00]), None);
        assert_eq!(not_after(&[]), None);
    }

    #[test]
    fn lengths_not_in_der_s_shortest_form_are_refused() {
        // Found by the cert_not_after fuzz target (fuzz/regressions/cert_not_after): a
        // notAfter whose length is written `81 0d` instead of `0d` was read, though no DER
        // parser (webpki, in the handshake) takes such a certificate.
        let utc = |len: &[u8]| {
            let mut v = vec![UTC_TIME, 13];
            v.extend_from_slice(b"240101000000Z");
            v.push(UTC_TIME);
            v.extend_from_slice(len);
            v.extend_from_slice(b"341231235959Z");
            v
        };
        assert_eq!(
            not_after(&cert_with(true, &utc(&[13]))),
            Some(2_051_222_399)
        );
        for len in [&[0x81, 13][..], &[0x82, 0, 13], &[0x84, 0, 0, 0, 13]] {
            assert_eq!(not_after(&cert_with(true, &utc(len))), None, "{len:02x?}");
        }
        // The outer SEQUENCE with a leading zero byte in a long-form length.
        let good = cert_with(true, &utc(&[13]));
        assert_eq!(
            good[..2],
            [SEQUENCE, 0x82],
            "the test certificate's outer header"
        );
        let mut padded = vec![SEQUENCE, 0x83, 0];
        padded.extend_from_slice(&good[2..]);
        assert_eq!(not_after(&padded), None);
    }

    #[test]
    fn warns_inside_the_window_only() {
        let now = 1_800_000_000;
        let day = 86_400;
        let dates = CertDates {
            server_not_after: Some(now + 10 * day + 5),
            ca_file_not_after: vec![now + 90 * day, now + 30 * day - 1, now - day - 1],
        };
        let w = dates.warnings(now, 30);
        let got: Vec<(&str, i64)> = w.iter().map(|w| (w.certificate, w.days_left)).collect();
        assert_eq!(got, [("server", 10), ("ca_file", 29), ("ca_file", -2)]);
        assert!(
            w[0].message.contains("expires in 10 day(s)"),
            "{}",
            w[0].message
        );
        assert!(w[0].message.contains("pve-root-ca.pem"), "{}", w[0].message);
        assert!(
            w[2].message.contains("expired 2 day(s) ago"),
            "{}",
            w[2].message
        );
        // Exactly 30 days left is outside a 30-day window.
        let edge = CertDates {
            server_not_after: Some(now + 30 * day),
            ca_file_not_after: vec![],
        };
        assert!(edge.warnings(now, 30).is_empty());
        assert_eq!(edge.warnings(now, 31).len(), 1);
        assert!(dates.warnings(now, 0).is_empty(), "0 disables the warning");
        assert!(CertDates::default().warnings(now, 30).is_empty());
    }

    #[test]
    fn utc_renders_civil_time() {
        // The calendar is tested in felhom_protocol::civil; this is the format.
        assert_eq!(utc(1_709_208_000), "2024-02-29 12:00:00 UTC");
    }
}
