//! Key pairs: imported public keys with Nova's fingerprints.
//!
//! Deviation: Nova before microversion 2.92 generates a key pair when no public key is sent;
//! Nimbus never generates private keys (OpenStackClient generates them client-side and
//! imports the public half, which is what Nova itself requires from 2.92). A request without
//! a public key gets a 400 saying so. See docs/dialects/openstack-compute.md.

use crate::Control;
use base64::Engine as _;
use md5::{Digest, Md5};
use nimbus_model::identity::Context;
use nimbus_model::keypair::KeyPair;
use nimbus_model::time::now;
use nimbus_model::{Error, Result, UserId};

const SSH_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse an OpenSSH public key line and return Nova's fingerprint (MD5 of the key blob).
pub fn ssh_fingerprint(public_key: &str) -> Result<String> {
    let bad = || Error::invalid("Keypair data is invalid: failed to generate fingerprint");
    let mut parts = public_key.split_whitespace();
    let kind = parts.next().ok_or_else(bad)?;
    let blob_b64 = parts.next().ok_or_else(bad)?;
    if !SSH_TYPES.contains(&kind) {
        return Err(bad());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob_b64)
        .map_err(|_| bad())?;
    if !ssh_blob_is_well_formed(kind, &blob) {
        return Err(bad());
    }
    Ok(colon_hex(&Md5::digest(&blob)))
}

/// Whether `blob` is a whole OpenSSH public key of type `kind` (RFC 4253 §6.6, RFC 5656,
/// RFC 8709, PROTOCOL.u2f): the length-prefixed fields of that key type, nothing missing and
/// nothing after. Nova loads the key with `cryptography`, which refuses truncated or padded
/// keys; a check of the type prefix alone let such keys in, to fail later in the guest.
fn ssh_blob_is_well_formed(kind: &str, blob: &[u8]) -> bool {
    fn field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let n = u32::from_be_bytes(*len) as usize;
        let (value, tail) = (tail.get(..n)?, &tail[n..]);
        *rest = tail;
        Some(value)
    }
    // A positive mpint: non-empty, sign bit clear, not all zero.
    fn positive(m: &[u8]) -> bool {
        !m.is_empty() && m[0] & 0x80 == 0 && m.iter().any(|&b| b != 0)
    }
    let mut rest = blob;
    let ok = (|| {
        if field(&mut rest)? != kind.as_bytes() {
            return None;
        }
        let ok = match kind {
            "ssh-rsa" => {
                let (e, n) = (field(&mut rest)?, field(&mut rest)?);
                positive(e) && positive(n)
            }
            "ssh-dss" => (0..4).all(|_| field(&mut rest).is_some_and(positive)),
            "ssh-ed25519" => field(&mut rest)?.len() == 32,
            "sk-ssh-ed25519@openssh.com" => {
                field(&mut rest)?.len() == 32 && !field(&mut rest)?.is_empty()
            }
            _ => {
                // ecdsa-sha2-<curve> and its sk- form: the curve name again, then an
                // uncompressed point of that curve's size.
                let curve = kind.rsplit('-').next()?.trim_end_matches("@openssh.com");
                let point_len = match curve {
                    "nistp256" => 65,
                    "nistp384" => 97,
                    "nistp521" => 133,
                    _ => return None,
                };
                let named = field(&mut rest)? == curve.as_bytes();
                let point = field(&mut rest)?;
                let app_ok = !kind.starts_with("sk-") || !field(&mut rest)?.is_empty();
                named && point.len() == point_len && point[0] == 4 && app_ok
            }
        };
        Some(ok)
    })();
    ok == Some(true) && rest.is_empty()
}

/// Fingerprint of a PEM x509 certificate (SHA-1 of the DER bytes), as Nova computes it.
pub fn x509_fingerprint(pem: &str) -> Result<String> {
    let bad = || Error::invalid("Keypair data is invalid: failed to generate fingerprint");
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    if body.is_empty() {
        return Err(bad());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| bad())?;
    Ok(colon_hex(&sha1::Sha1::digest(&der)))
}

/// Nova's key pair name rule (the permissive form used from 2.92; a superset of the older
/// one).
pub fn validate_keypair_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 255
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ' ' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid input for field/attribute name. Value: {name}. Keypair name contains unsafe characters"
        )))
    }
}

impl Control {
    /// Owner of key pairs the call acts on: admins may name another user (2.10).
    fn keypair_owner(ctx: &Context, user: Option<UserId>) -> Result<UserId> {
        match user {
            Some(u) if u != ctx.user_id && !ctx.is_admin() => Err(Error::Forbidden(
                "Policy doesn't allow os_compute_api:os-keypairs to be performed for another user."
                    .into(),
            )),
            Some(u) => Ok(u),
            None => Ok(ctx.user_id.clone()),
        }
    }

    pub async fn keypair_import(
        &self,
        ctx: &Context,
        name: &str,
        public_key: Option<&str>,
        key_type: &str,
        user: Option<UserId>,
    ) -> Result<KeyPair> {
        validate_keypair_name(name)?;
        let owner = Self::keypair_owner(ctx, user)?;
        let Some(public_key) = public_key else {
            return Err(Error::invalid(
                "Nimbus does not generate key pairs: generate one locally (OpenStackClient does) and import its public_key.",
            ));
        };
        let fingerprint = match key_type {
            "ssh" => ssh_fingerprint(public_key)?,
            "x509" => x509_fingerprint(public_key)?,
            other => {
                return Err(Error::invalid(format!(
                    "Invalid input for field/attribute type. Value: {other}. '{other}' is not one of ['ssh', 'x509']"
                )));
            }
        };
        let limit = self
            .effective_quota(&ctx.project_id)
            .await?
            .get("key_pairs");
        if limit >= 0 {
            let have = self.inner.store.keypairs_list(owner.clone()).await?.len() as i64;
            if have >= limit {
                return Err(Error::OverQuota(
                    "Quota exceeded, too many key pairs.".into(),
                ));
            }
        }
        self.inner
            .store
            .keypair_create(KeyPair {
                serial: 0,
                name: name.to_owned(),
                user_id: owner,
                public_key: public_key.trim().to_owned(),
                fingerprint,
                key_type: key_type.to_owned(),
                created_at: now(),
            })
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(m) => Error::Conflict(m),
                e => e,
            })
    }

    pub async fn keypairs_list(&self, ctx: &Context, user: Option<UserId>) -> Result<Vec<KeyPair>> {
        let owner = Self::keypair_owner(ctx, user)?;
        self.inner.store.keypairs_list(owner).await
    }

    /// One page of a user's key pairs by name (microversion 2.35): those after `marker`
    /// (a key pair name, which must exist), at most `limit`.
    pub async fn keypairs_page(
        &self,
        ctx: &Context,
        user: Option<UserId>,
        limit: Option<usize>,
        marker: Option<&str>,
    ) -> Result<Vec<KeyPair>> {
        let all = self.keypairs_list(ctx, user).await?;
        let start = match marker {
            None => 0,
            Some(m) => {
                all.iter()
                    .position(|k| k.name == m)
                    .ok_or_else(|| Error::invalid(format!("Marker {m} could not be found.")))?
                    + 1
            }
        };
        let limit = limit
            .unwrap_or(self.inner.config.max_limit)
            .min(self.inner.config.max_limit);
        Ok(all.into_iter().skip(start).take(limit).collect())
    }

    pub async fn keypair_get(
        &self,
        ctx: &Context,
        name: &str,
        user: Option<UserId>,
    ) -> Result<KeyPair> {
        let owner = Self::keypair_owner(ctx, user)?;
        self.inner
            .store
            .keypair_get(owner.clone(), name.to_owned())
            .await?
            .ok_or_else(|| Error::not_found(format!("Keypair {name} not found for user {owner}")))
    }

    pub async fn keypair_delete(
        &self,
        ctx: &Context,
        name: &str,
        user: Option<UserId>,
    ) -> Result<()> {
        let owner = Self::keypair_owner(ctx, user)?;
        if !self
            .inner
            .store
            .keypair_delete(owner.clone(), name.to_owned())
            .await?
        {
            return Err(Error::not_found(format!(
                "Keypair {name} not found for user {owner}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host";

    #[test]
    fn ssh_fingerprint_is_md5_of_blob() {
        let fp = ssh_fingerprint(ED25519).unwrap();
        assert_eq!(fp.len(), 47);
        assert_eq!(fp.matches(':').count(), 15);
        // Same blob, different comment: same fingerprint.
        let other = ED25519.replace("user@host", "x");
        assert_eq!(ssh_fingerprint(&other).unwrap(), fp);
    }

    #[test]
    fn whole_keys_of_every_type_pass_and_damaged_ones_fail() {
        // Generated with `ssh-keygen -t rsa|dsa|ecdsa -b 256|384|521|ed25519`.
        let good = [
            "ssh-dss AAAAB3NzaC1kc3MAAACBAOOSDn28eu3a1cMFBeHqPI/h1KCPSrTx+e9dN7SYd1a6U96WCROi/JO1hdGjrBRYyUaAMbOpmVV2BJymekdJDuwQFAYHrZW20TC8+VOpRvktIxpN8xusuvWb3keVDy3lAANtsaVMmVt2qLlgjhAbhXV2R4YFhGx3Y1zY41ntLAc5AAAAFQCDkHjBgldpqN4HmWdlCHvZn3reiwAAAIA36ngJfQIg9yJDhZ9/AdOwxE7kgXLa2gwKipY7hjafqiRw5WCWR0m3SqL9VDgqmuK9ANVsdQ+dfALtynVuQYjj0kfYYGe/aV+lWJMsETkj9ZK0uR1XvTxM13g+YdwLezeUuBu83Ledf/SslB3VnMgGDfhMaFCntlIa72e3Jq6tFgAAAIApUjADfSvcZ/2KLp+D1cyWZu7Qmb8NkewQnasvyBo4NwadGdRvCPNXu73+jMH0huOvFalAEaMMyVF/9O21T7KXgH79gVyix3+NO5KRjBPP1DGaRb/1sX1Cf0mZHutiAV3qBEgmk/YRWAWvqWxwb4NkeDl5NcYX3IHRQ+HA9YnAKA==",
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLb1GjX5vYxCMlm+yUcHNRy+v9aePW41vPaJtkqmW/pHqTFL+D64VpDwJoB+bM8EeLXmJnqGEsuLVN0TC23SYDg=",
            "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBGIuvDz9kNtBG9pGl4KHM4nW0XS0wk4op1lP4Kp5uegDKyM8c3I8utAoE8v7xzaYwgrOdcvnSO/35LZslGzxUdGPcKfPnhItWFWSFbKvu/aB8bSXEyfPd5ghYAwRowWag==",
            "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBABt1zOvyIcV23wcz0yAeBpj7gQTW2GKuRrgfR8Hz+5IsXtxzraxRDOo5WQqPcCgLOWvaaF0m/lQAuob0tffNku14AHvOmbXFt6I6XmC67Tc4AN7/5CFHG3GL63ZjBBShjNwuWk1i3tSPtron0D64Rp96Sek1mcrgF+klVNvy8OiVUU/fg==",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMrIYDAcbg1a/FFqkwpbx+YBGKobtvO9kYIOOvkJBkDx",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDAZkSuq5JHptDVuFCovMBgpVY6CNkBj2HQjGy5ZM/OikiSfkmMo+uJhR0pN9fLUqJPgsKC9oI4o2sObB4uWEXBGy0xPe4EMdJimvdCgeTQ+l+r1jZEcD3+KgrUCHwiXfj2YEg60UjK/PP4tGmsEIZOM0nUGIorEg9NzM3/7yuhMw==",
        ];
        let b64 = &base64::engine::general_purpose::STANDARD;
        for line in good {
            assert!(ssh_fingerprint(line).is_ok(), "{line}");
            let (kind, blob) = line.split_once(' ').unwrap();
            let blob = b64.decode(blob).unwrap();
            // Truncated by one byte, or with a byte appended: both refused.
            for damaged in [blob[..blob.len() - 1].to_vec(), [&blob[..], &[0]].concat()] {
                let line = format!("{kind} {}", b64.encode(&damaged));
                assert!(ssh_fingerprint(&line).is_err(), "{line}");
            }
        }
        // An RSA key whose blob holds only its type name.
        let only_type = [&7u32.to_be_bytes()[..], b"ssh-rsa"].concat();
        assert!(ssh_fingerprint(&format!("ssh-rsa {}", b64.encode(only_type))).is_err());
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert!(ssh_fingerprint("ssh-ed25519").is_err());
        assert!(ssh_fingerprint("ssh-ed25519 !!!notbase64").is_err());
        assert!(
            ssh_fingerprint(
                "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
            .is_err()
        );
        // Type in the line does not match the blob.
        assert!(
            ssh_fingerprint(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
            .is_err()
        );
        assert!(x509_fingerprint("not a cert").is_err());
    }

    #[test]
    fn keypair_names() {
        assert!(validate_keypair_name("my key-1_x.y@z").is_ok());
        assert!(validate_keypair_name("").is_err());
        assert!(validate_keypair_name(" lead").is_err());
        assert!(validate_keypair_name("bad/name").is_err());
    }
}
