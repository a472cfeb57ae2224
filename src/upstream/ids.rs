//! The relay's map from the 16-bit ID of a copy in flight to its slot: open addressing with
//! linear probing, sized to what is in flight (it doubles when half full, starting at 64
//! entries). A flat 65,536-entry array would be simpler, but IDs are random, so within a few
//! hundred queries every one of its 32 pages is resident: 128 KiB per worker for a sidecar that
//! has a handful of queries in flight.

/// `(id << 16) | (slot + 1)`; 0 is an empty entry.
pub(crate) struct IdMap {
    entries: Vec<u32>,
    len: usize,
}

const FIRST_CAPACITY: usize = 64;

impl IdMap {
    pub(crate) fn new() -> IdMap {
        IdMap {
            entries: Vec::new(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, id: u16) -> usize {
        // Fibonacci hashing of the (already random) ID onto the table.
        let bits = self.entries.len().trailing_zeros();
        ((u32::from(id).wrapping_mul(0x9E37_79B1)) >> (32 - bits)) as usize
    }

    /// The slot of copy `id`, if it is in flight.
    #[inline]
    pub(crate) fn get(&self, id: u16) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(id);
        loop {
            let e = self.entries[i];
            if e == 0 {
                return None;
            }
            if (e >> 16) as u16 == id {
                return Some((e & 0xFFFF) as usize - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Registers `id` (not in the map) for `slot` (below 65,535).
    pub(crate) fn insert(&mut self, id: u16, slot: usize) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(id);
        while self.entries[i] != 0 {
            i = (i + 1) & mask;
        }
        self.entries[i] = (u32::from(id) << 16) | (slot as u32 + 1);
        self.len += 1;
    }

    /// Forgets `id`; backward-shift deletion keeps every probe chain unbroken.
    pub(crate) fn remove(&mut self, id: u16) {
        if self.entries.is_empty() {
            return;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(id);
        loop {
            let e = self.entries[i];
            if e == 0 {
                return;
            }
            if (e >> 16) as u16 == id {
                break;
            }
            i = (i + 1) & mask;
        }
        self.entries[i] = 0;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e == 0 {
                return;
            }
            let home = self.home((e >> 16) as u16);
            // Move `e` into the hole unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.entries[i] = e;
                self.entries[j] = 0;
                i = j;
            }
        }
    }

    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(FIRST_CAPACITY);
        let old = std::mem::replace(&mut self.entries, vec![0; capacity]);
        self.len = 0;
        for e in old.into_iter().filter(|e| *e != 0) {
            self.insert((e >> 16) as u16, (e & 0xFFFF) as usize - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The map agrees with a `HashMap` through a long random mix of inserts and removes.
    #[test]
    fn behaves_like_a_map() {
        let mut m = IdMap::new();
        let mut model = HashMap::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..200_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x >> 16) as u16;
            let grow_phase = (step / 20_000) % 2 == 0;
            if model.contains_key(&id) {
                if !grow_phase || x.is_multiple_of(3) {
                    m.remove(id);
                    model.remove(&id);
                }
            } else if model.len() < 3000 && (grow_phase || x.is_multiple_of(4)) {
                let slot = (x as usize >> 40) % 8000;
                m.insert(id, slot);
                model.insert(id, slot);
            }
            if step.is_multiple_of(97) {
                for (k, v) in &model {
                    assert_eq!(m.get(*k), Some(*v));
                }
                assert_eq!(m.len, model.len());
            }
            assert_eq!(m.get(id), model.get(&id).copied());
        }
        assert!(m.entries.len() <= 8192, "sized to what is in flight");
    }

    #[test]
    fn starts_empty_and_small() {
        let mut m = IdMap::new();
        assert_eq!(m.get(7), None);
        m.remove(7);
        m.insert(7, 0);
        assert_eq!(m.get(7), Some(0));
        assert_eq!(m.entries.len(), FIRST_CAPACITY);
    }
}
