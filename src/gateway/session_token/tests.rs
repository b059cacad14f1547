#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use super::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const KID: &str = "k4.pid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[test]
fn canonical_footer_is_accepted() {
    assert_eq!(KID.len(), 7 + 44);
    let footer = b64(format!(r#"{{"kid":"{KID}"}}"#).as_bytes());
    assert_eq!(parse_footer(&footer).as_deref(), Ok(KID));
}

#[test]
fn non_canonical_or_foreign_footers_are_refused() {
    let cases = [
        format!(r#"{{ "kid": "{KID}" }}"#),
        format!(r#"{{"kid":"{KID}","wpk":"x"}}"#),
        format!(r#"{{"kid":"{KID}","kid":"{KID}"}}"#),
        r#"{"kid":"k4.lid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#.to_owned(),
        r#"{"kid":"k4.pid.short"}"#.to_owned(),
        r#"{"kid":1}"#.to_owned(),
        "[]".to_owned(),
        String::new(),
    ];
    for footer in cases {
        assert_eq!(
            parse_footer(&b64(footer.as_bytes())),
            Err(TokenError::BadFooter),
            "{footer}"
        );
    }
    assert_eq!(parse_footer("!!"), Err(TokenError::BadFooter));
}

#[test]
fn footer_cap_applies_before_decoding() {
    assert_eq!(MAX_FOOTER_B64_LEN, 342);
    let long = "A".repeat(MAX_FOOTER_B64_LEN + 1);
    assert_eq!(parse_footer(&long), Err(TokenError::BadFooter));
}

#[test]
fn unix_seconds_round_down_on_both_sides_of_the_epoch() {
    let t = UNIX_EPOCH + Duration::from_millis(1_500);
    assert_eq!(unix_secs(t), 1);
    let before = UNIX_EPOCH - Duration::from_millis(1_500);
    assert_eq!(unix_secs(before), -2);
    assert_eq!(
        to_system_time(-2),
        Some(UNIX_EPOCH - Duration::from_secs(2))
    );
}

#[test]
fn times_are_rfc3339_utc_whole_seconds() {
    assert_eq!(
        format_time(1_700_000_000).as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000));
    assert_eq!(parse_time("1700000000"), Err(TokenError::MalformedClaims));
    assert_eq!(format_time(i64::MAX), None);
}

#[test]
fn random_ids_are_256_bits_base64url() {
    let a = random_id().unwrap();
    let b = random_id().unwrap();
    assert!(is_random_id(&a) && is_random_id(&b));
    assert_ne!(a, b);
    assert!(!is_random_id(&a[..42]));
    assert!(!is_random_id(&format!("{}=", &a[..42])));
}

#[test]
fn scopes_follow_rfc6749_scope_tokens() {
    assert!(is_scope("admin"));
    assert!(is_scope("read:files"));
    for bad in ["", "a b", "a\"b", "a\\b", "é", "a\nb"] {
        assert!(!is_scope(bad), "{bad:?}");
    }
    assert!(!is_subject(""));
    assert!(!is_subject("alice\r\nX-Evil: 1"));
    assert!(is_subject("alice@example.com"));
}
