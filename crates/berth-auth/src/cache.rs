//! The verified-token cache: SHA-256 of a token → the claims it carried and the key set that
//! verified it.
//!
//! An entry says only "this exact token's signature was valid under key set N". It is used only
//! while the issuer's current key set is still N (key material unchanged) and while the token's
//! `exp` (plus leeway) has not passed; `iss`, `aud`, `nbf` and the route's issuer list are
//! checked against the cached claims on every hit. Only asymmetric tokens are cached: HMAC is
//! cheaper than the lookup is worth.
//!
//! Bounded: at capacity the oldest inserted entry is evicted (FIFO). Tokens are inserted only
//! once verified, so an attacker cannot fill the cache with garbage, only with tokens an issuer
//! really signed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use crate::jose::Claims;

/// Default number of cached tokens.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

pub(crate) type TokenHash = [u8; 32];

#[derive(Clone)]
pub(crate) struct Entry {
    pub key_set_id: u64,
    pub claims: Arc<Claims>,
}

pub(crate) struct TokenCache {
    capacity: usize,
    inner: RwLock<Inner>,
}

struct Inner {
    map: HashMap<TokenHash, Entry>,
    /// Insertion order; holds exactly the keys of `map`.
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// `f` of the entry for `hash`, under the read lock (no clone of the entry).
    pub fn get_with<R>(&self, hash: &TokenHash, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.map.get(hash).map(f)
    }

    pub fn insert(&self, hash: TokenHash, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = inner.map.get_mut(&hash) {
            *existing = entry;
            return;
        }
        while inner.map.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.map.remove(&oldest);
                }
                None => break,
            }
        }
        inner.map.insert(hash, entry);
        inner.order.push_back(hash);
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            key_set_id: id,
            claims: Arc::new(Claims {
                iss: "i".into(),
                sub: "s".into(),
                aud: vec!["a".into()],
                exp: 10,
                nbf: None,
                team: None,
                json: "{}".into(),
            }),
        }
    }

    #[test]
    fn bounded_fifo() {
        let cache = TokenCache::new(3);
        for i in 0..5u8 {
            cache.insert([i; 32], entry(u64::from(i)));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get_with(&[0; 32], |_| ()).is_none());
        assert!(cache.get_with(&[1; 32], |_| ()).is_none());
        assert_eq!(cache.get_with(&[4; 32], |e| e.key_set_id), Some(4));
        // Replacing an entry does not grow the order queue.
        cache.insert([4; 32], entry(9));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get_with(&[4; 32], |e| e.key_set_id), Some(9));
        assert_eq!(cache.inner.read().unwrap().order.len(), 3);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = TokenCache::new(0);
        cache.insert([1; 32], entry(1));
        assert_eq!(cache.len(), 0);
    }
}
