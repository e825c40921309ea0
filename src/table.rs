//! The in-memory table behind every map the request path reads (endpoints,
//! groups, tags, users, teams, registries, stacks): a sharded concurrent map
//! whose readers never wait on a global lock. Lookups take borrowed keys
//! (`&str` for a `String` key), so a hot-path check allocates nothing.
//!
//! Values are cloned out (`V` is usually an `Arc<T>`, so a clone is one
//! atomic increment), so a caller never holds a shard lock across an
//! `.await`. [`Table::read`] looks at a value in place for the few hot-path
//! checks that need no copy at all.

use std::borrow::Borrow;
use std::hash::Hash;

use dashmap::DashMap;

pub struct Table<K, V> {
    map: DashMap<K, V>,
}

impl<K: Eq + Hash, V> Default for Table<K, V> {
    fn default() -> Self {
        Table { map: DashMap::new() }
    }
}

impl<K: Eq + Hash + Ord + Clone, V: Clone> Table<K, V> {
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|v| v.clone())
    }

    /// Runs `f` on the value in place, without cloning it. `f` runs under a
    /// shard's read lock: keep it short and never await in it.
    pub fn read<Q: Eq + Hash + ?Sized, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|v| f(&v))
    }

    pub fn contains<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Every value, in key order, so listings are stable across calls.
    pub fn all(&self) -> Vec<V> {
        let mut v: Vec<(K, V)> = self.map.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn put(&self, key: K, value: V) -> Option<V> {
        self.map.insert(key, value)
    }

    pub fn remove<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key).map(|(_, v)| v)
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, v| keep(k, v));
    }

    /// Some value matching `pred` (the first in no particular order).
    pub fn find(&self, pred: impl Fn(&V) -> bool) -> Option<V> {
        self.map.iter().find(|e| pred(e.value())).map(|e| e.value().clone())
    }

    /// Changes the value in place, only while the key is present.
    pub fn update<Q: Eq + Hash + ?Sized>(&self, key: &Q, f: impl FnOnce(&mut V)) -> bool
    where
        K: Borrow<Q>,
    {
        match self.map.get_mut(key) {
            Some(mut v) => {
                f(&mut v);
                true
            }
            None => false,
        }
    }

    /// How many values match `pred`.
    pub fn count(&self, pred: impl Fn(&V) -> bool) -> usize {
        self.map.iter().filter(|e| pred(e.value())).count()
    }

    /// Values matching `pred`, in key order.
    pub fn filter(&self, pred: impl Fn(&V) -> bool) -> Vec<V> {
        let mut v: Vec<(K, V)> =
            self.map.iter().filter(|e| pred(e.value())).map(|e| (e.key().clone(), e.value().clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, v)| v).collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn put_get_replace_remove() {
        let t: Table<u64, &str> = Table::default();
        assert!(t.is_empty());
        assert_eq!(t.put(2, "b"), None);
        assert_eq!(t.put(1, "a"), None);
        assert_eq!(t.put(2, "B"), Some("b"));
        assert_eq!(t.get(&2), Some("B"));
        assert_eq!(t.read(&1, |v| v.len()), Some(1));
        assert!(t.contains(&1) && !t.contains(&3));
        assert!(t.update(&1, |v| *v = "A") && !t.update(&3, |v| *v = "C"));
        assert_eq!(t.find(|v| *v == "A"), Some("A"));
        assert_eq!(t.remove(&1), Some("A"));
        assert_eq!(t.remove(&1), None);
        assert_eq!((t.len(), t.get(&1)), (1, None));
    }

    #[test]
    fn listings_are_in_key_order() {
        let t: Table<u64, u64> = Table::default();
        for k in [5, 3, 9, 1, 7] {
            t.put(k, k * 10);
        }
        assert_eq!(t.all(), vec![10, 30, 50, 70, 90]);
        assert_eq!(t.filter(|v| *v > 40), vec![50, 70, 90]);
        assert_eq!(t.count(|v| *v > 40), 3);
        t.retain(|k, _| k % 3 != 0);
        assert_eq!(t.all(), vec![10, 50, 70]);
    }
}
