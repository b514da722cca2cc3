#![allow(clippy::unwrap_used)]

use super::*;
use clawgate_proto::ErrorCode;
use clawgate_proto::principal::Dialect;
use ed25519_dalek::pkcs8::EncodePrivateKey;

fn alice() -> Principal {
    Principal {
        tenant_id: "t1".into(),
        user_id: "alice".into(),
        role: "operator".into(),
        scopes: vec!["operator.write".into(), "operator.read".into()],
        device_id: "dev-1".into(),
        connection_id: "conn-1".into(),
        dialect: Dialect::Openclaw as i32,
    }
}

fn rejection(result: Result<Principal, ServiceError>) -> String {
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    err.message
}

#[test]
fn a_token_carries_exactly_the_principal() {
    let keys = KeySet::generate();
    let token = keys.signer().sign(&alice()).unwrap();
    assert_eq!(keys.verifier().verify(&token).unwrap(), alice());
    let empty = keys.signer().sign(&Principal::default()).unwrap();
    assert_eq!(
        keys.verifier().verify(&empty).unwrap(),
        Principal::default()
    );
}

#[test]
fn tokens_are_cached_per_principal() {
    let signer = KeySet::generate().signer();
    let first = signer.sign(&alice()).unwrap();
    assert_eq!(signer.sign(&alice()).unwrap(), first);
    let bob = Principal {
        user_id: "bob".into(),
        ..alice()
    };
    assert_ne!(signer.sign(&bob).unwrap(), first);
}

#[test]
fn tampered_tokens_are_rejected() {
    let keys = KeySet::generate();
    let token = keys.signer().sign(&alice()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Claims of another user under the original signature.
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["user_id"] = "mallory".into();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(
        rejection(keys.verifier().verify(&forged)),
        "invalid call token"
    );

    // A flipped signature character.
    let mut sig = parts[2].to_owned();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    sig.replace_range(0..1, flipped);
    let forged = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert_eq!(
        rejection(keys.verifier().verify(&forged)),
        "invalid call token"
    );

    for garbage in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        rejection(keys.verifier().verify(garbage));
    }
}

#[test]
fn tokens_of_unknown_keys_are_rejected() {
    let token = KeySet::generate().signer().sign(&alice()).unwrap();
    let verifier = KeySet::generate().verifier();
    assert_eq!(
        rejection(verifier.verify(&token)),
        "call token signed by an unknown key"
    );
}

#[test]
fn expired_tokens_are_rejected_after_the_leeway() {
    let keys = KeySet::generate();
    let signer = keys.signer();
    let now = SystemTime::now();
    let expired = signer
        .issue(
            &alice(),
            now - TOKEN_TTL - CLOCK_LEEWAY - Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(
        rejection(keys.verifier().verify(&expired)),
        "expired call token"
    );
    let within_leeway = signer
        .issue(&alice(), now - TOKEN_TTL - Duration::from_secs(5))
        .unwrap();
    assert_eq!(keys.verifier().verify(&within_leeway).unwrap(), alice());
}

#[test]
fn overlong_and_foreign_tokens_are_rejected() {
    let keys = KeySet::generate();
    let long = InternalTokenSigner {
        ttl: Duration::from_secs(3600),
        ..InternalTokenSigner::new(keys.clone())
    };
    let token = long.sign(&alice()).unwrap();
    assert_eq!(
        rejection(keys.verifier().verify(&token)),
        "invalid call token"
    );

    // Same key, another audience (e.g. a token meant for something else).
    let now = unix_secs(SystemTime::now());
    let claims = Claims {
        iss: ISSUER.into(),
        aud: "someone-else".into(),
        iat: now,
        exp: now + 60,
        principal: PrincipalClaims::from(&alice()),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.active_kid().to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).unwrap();
    assert_eq!(
        rejection(keys.verifier().verify(&token)),
        "invalid call token"
    );
}

#[test]
fn rotation_by_kid() {
    let old = KeySet::generate();
    let old_token = old.signer().sign(&alice()).unwrap();

    // The new key signs; the old one still verifies.
    let new_key = SigningKey::from_bytes(&[7; 32]);
    let new = KeySet::from_signing_key(&new_key).with_verification_key(old.active_public_key());
    assert_eq!(
        new.kids().collect::<Vec<_>>(),
        [new.active_kid(), old.active_kid()]
    );
    assert_eq!(new.verifier().verify(&old_token).unwrap(), alice());
    let new_token = new.signer().sign(&alice()).unwrap();
    assert_eq!(new.verifier().verify(&new_token).unwrap(), alice());
    // A process still on the old set must learn the new key before it signs.
    rejection(old.verifier().verify(&new_token));

    // The old key removed: its tokens fail, the new key's still pass.
    let removed = KeySet::from_signing_key(&new_key);
    assert_eq!(
        rejection(removed.verifier().verify(&old_token)),
        "call token signed by an unknown key"
    );
    assert_eq!(removed.verifier().verify(&new_token).unwrap(), alice());
}

#[test]
fn key_sets_from_pem() {
    let first = generate_pem();
    let second = generate_pem();
    assert!(first.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let keys = KeySet::from_pem(&format!("{first}{second}")).unwrap();
    let only_first = KeySet::from_pem(&first).unwrap();
    let only_second = KeySet::from_pem(&second).unwrap();
    assert_eq!(keys.active_kid(), only_first.active_kid());
    assert_eq!(
        keys.kids().collect::<Vec<_>>(),
        [only_first.active_kid(), only_second.active_kid()]
    );
    assert_eq!(keys.active_kid().len(), 16);
    assert!(keys.active_kid().chars().all(|c| c.is_ascii_hexdigit()));

    // The first key signs; tokens of the second still verify.
    let token = only_second.signer().sign(&alice()).unwrap();
    assert_eq!(keys.verifier().verify(&token).unwrap(), alice());

    // One-line form with literal "\n".
    let escaped = first.replace('\n', "\\n");
    assert_eq!(
        KeySet::from_pem(&escaped).unwrap().active_kid(),
        only_first.active_kid()
    );

    // A public key block verifies only.
    let public_pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let der = only_second.active_public_key().to_public_key_der().unwrap();
        let body = STANDARD.encode(der.as_bytes());
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    };
    let keys = KeySet::from_pem(&format!("{first}{public_pem}")).unwrap();
    assert_eq!(keys.kids().count(), 2);
    assert!(matches!(
        KeySet::from_pem(&public_pem),
        Err(KeyError::FirstNotPrivate)
    ));

    assert!(matches!(KeySet::from_pem(""), Err(KeyError::Empty)));
    assert!(matches!(
        KeySet::from_pem("not a key"),
        Err(KeyError::MalformedPem { index: 0 })
    ));
    assert!(matches!(
        KeySet::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(KeyError::NotEd25519 { index: 0 })
    ));
    assert!(matches!(
        KeySet::from_pem(&format!(
            "{first}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )),
        Err(KeyError::UnsupportedLabel { index: 1, .. })
    ));
}

#[test]
fn pkcs8_encoding_matches_the_standard_encoder() {
    // RFC 8410 §10.3: the PKCS#8 v1 form OpenSSL writes.
    let rfc = STANDARD
        .decode("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC")
        .unwrap();
    assert_eq!(pkcs8_der(&SigningKey::from_pkcs8_der(&rfc).unwrap()), rfc);
    // dalek writes v2 (with the public key); both decode to the same key.
    let key = SigningKey::from_bytes(&[42; 32]);
    let v2 = key.to_pkcs8_der().unwrap();
    assert_eq!(
        SigningKey::from_pkcs8_der(v2.as_bytes())
            .unwrap()
            .as_bytes(),
        key.as_bytes()
    );
    assert_eq!(
        SigningKey::from_pkcs8_der(&pkcs8_der(&key))
            .unwrap()
            .as_bytes(),
        key.as_bytes()
    );
}

#[test]
fn debug_output_shows_no_key_material() {
    let pem = generate_pem();
    let keys = KeySet::from_pem(&pem).unwrap();
    let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
    for shown in [
        format!("{keys:?}"),
        format!("{:?}", keys.signer()),
        format!("{:?}", keys.verifier()),
    ] {
        assert!(!shown.contains(&body), "{shown}");
        assert!(shown.contains(keys.active_kid()), "{shown}");
    }
}
