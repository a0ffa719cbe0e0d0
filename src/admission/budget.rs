//! The global in-flight budget of the admission handlers, in bytes of memory.
//!
//! A request is charged twice, and shed with 429 and `Retry-After` whenever a charge does not
//! fit (never queued: the API server retries, or applies the webhook's failurePolicy, and the
//! process never runs out of memory however many connections and streams send at once):
//! - before its body is read, the body itself ([`body_cost`], the declared length, or the
//!   largest body when none is declared);
//! - once read, what parsing it can cost at worst ([`tree_cost`]): an allocation-free pass
//!   over the JSON counts its values, containers and strings, priced per node as a
//!   `serde_json::Value` tree costs them. Bytes alone are no measure: `{"a":0}` is 7 bytes of
//!   body and a B-tree node of 600 in a `Value`, `0,` is 2 bytes and 32 (plus the list's
//!   doubling slack).
//!
//! The charge is held until the handler has finished with the body, also when the request's
//! deadline answered the client first. `tests/admission_memory.rs` measures the heap's peak for
//! the worst bodies and fails if it exceeds the charge.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Fixed cost of a request besides its body (task, buffers, the answer).
pub const OVERHEAD_BYTES: usize = 32 * 1024;
/// The budget when no memory limit is known and none is configured.
pub const DEFAULT_BUDGET_BYTES: usize = 128 * 1024 * 1024;
/// Seconds a shed client is told to wait.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// Charges are counted in units of this many bytes (semaphore permits are `u32`).
const UNIT: usize = 1024;

/// Parsed trees of the body alive at once, at worst: the request's `Value` and the decoder's
/// working copy of a spec that does not decode as it is.
const TREES: usize = 2;
/// A `Value` (in its parent's list or map, or the root).
const VALUE_BYTES: usize = 32;
/// Slack per list element: a list grows by doubling while it is parsed.
const ELEMENT_BYTES: usize = 32;
/// A non-empty object's first B-tree node (11 keys and values) and its allocation.
const OBJECT_BYTES: usize = 656;
/// Per member, the rest of the B-tree: nodes at worst half full after splits.
const MEMBER_BYTES: usize = 132;
/// Per string (value or key) besides its bytes: allocator overhead and rounding.
const STRING_BYTES: usize = 32;
/// Copies of the longest string besides the trees': serde's "invalid type: string ..." quotes
/// a mistyped string whole in the decoder's error (growing while it is formatted).
const LONGEST_STRING_COPIES: usize = 3;

/// The first charge of a request: its body, before it is read.
pub fn body_cost(body_bytes: usize) -> usize {
    body_bytes.saturating_add(OVERHEAD_BYTES)
}

/// Bodies up to this size may be charged [`tree_cost_bound`] instead of being counted: the
/// counting pass cost as much CPU as parsing the review itself (~26,000 instructions for a
/// 1 KiB review), while the bound of a body this small fits the budget many hundred times over.
pub const BOUNDED_BODY_BYTES: usize = 4 * 1024;
/// ... as long as the bound is at most this fraction of what is free: under memory pressure
/// bodies are counted, so that bounds (several times a body's exact cost) never make the
/// budget shed what it would have admitted.
const BOUND_SHARE_OF_FREE: usize = 32;

/// What a Value tree can grow by per byte of body, at most: `{"":` is 4 bytes for a value, an
/// object and a member (objects nested in their one member; the closing `}` may never come, as a
/// body that is not JSON is counted up to where it fails, so it is not counted here). Every other node costs less per byte
/// it needs (`0,` 2 bytes for a value and an element, `"":0,` 5 for a member and a value, `"a",`
/// 4 for a value, an element and a string).
const DENSEST_BYTES_PER_BODY_BYTE: usize = (VALUE_BYTES + OBJECT_BYTES + MEMBER_BYTES).div_ceil(4);

/// What parsing any body of `body_bytes` can cost at worst: never less than [`tree_cost`] of it.
/// Four bytes more than the body: a body that is not JSON may end in `{""`, an object and a
/// member counted for 3 bytes.
pub fn tree_cost_bound(body_bytes: usize) -> usize {
    body_bytes
        .saturating_add(4)
        .saturating_mul(DENSEST_BYTES_PER_BODY_BYTE * TREES + LONGEST_STRING_COPIES)
}

/// Charges a small body's [`tree_cost_bound`] to `charge` when the budget has ample room for it;
/// false: the body must be counted ([`tree_cost`]) and charged that.
pub fn charge_bound(budget: &Budget, charge: &mut Charge, body_bytes: usize) -> bool {
    let bound = tree_cost_bound(body_bytes);
    body_bytes <= BOUNDED_BODY_BYTES
        && bound <= budget.available_bytes() / BOUND_SHARE_OF_FREE
        && charge.grow(budget, bound)
}

/// The second charge: what parsing `body` can take at worst, from one pass that allocates
/// nothing. For a body that is not JSON, what the parse allocates before it fails.
pub fn tree_cost(body: &[u8]) -> usize {
    let mut shape = Shape::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Count(&mut shape).deserialize(&mut de);
    shape
        .tree_bytes()
        .saturating_mul(TREES)
        .saturating_add(shape.longest_string * LONGEST_STRING_COPIES)
}

/// What a JSON document is made of.
#[derive(Debug, Default)]
struct Shape {
    values: usize,
    elements: usize,
    objects: usize,
    members: usize,
    strings: usize,
    string_bytes: usize,
    longest_string: usize,
}

impl Shape {
    /// Heap of the document as a `serde_json::Value`, at worst.
    fn tree_bytes(&self) -> usize {
        self.values * VALUE_BYTES
            + self.elements * ELEMENT_BYTES
            + self.objects * OBJECT_BYTES
            + self.members * MEMBER_BYTES
            + self.strings * STRING_BYTES
            + self.string_bytes
    }

    fn string(&mut self, s: &str) {
        if !s.is_empty() {
            self.strings += 1;
            self.string_bytes += s.len();
            self.longest_string = self.longest_string.max(s.len());
        }
    }
}

/// Counts a value into a [`Shape`] (serde_json parses; nothing is kept).
struct Count<'a>(&'a mut Shape);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.values += 1;
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.values += 1;
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.values += 1;
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.values += 1;
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.values += 1;
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.values += 1;
        self.0.string(s);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.values += 1;
        while seq.next_element_seed(Count(&mut *self.0))?.is_some() {
            self.0.elements += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.values += 1;
        let mut first = true;
        while map.next_key_seed(Key(&mut *self.0))?.is_some() {
            if first {
                self.0.objects += 1;
                first = false;
            }
            self.0.members += 1;
            map.next_value_seed(Count(&mut *self.0))?;
        }
        Ok(())
    }
}

/// Counts an object key.
struct Key<'a>(&'a mut Shape);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.string(s);
        Ok(())
    }
}

/// The budget for a memory limit: half of it, the other half for the controllers, the watch
/// caches and the runtime (BENCHMARKS.md, "Webhook under hostile load"). At least the largest
/// body must fit, or such requests could never be read.
pub fn budget_for_limit(limit_bytes: usize, max_body_bytes: usize) -> usize {
    (limit_bytes / 2).max(body_cost(max_body_bytes))
}

/// The container's memory limit from its cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), if one is set.
pub fn cgroup_memory_limit() -> Option<usize> {
    cgroup_memory_limit_in(Path::new("/sys/fs/cgroup"))
}

fn cgroup_memory_limit_in(root: &Path) -> Option<usize> {
    for file in ["memory.max", "memory/memory.limit_in_bytes"] {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        // "max" (v2) or a page-rounded i64::MAX (v1) mean no limit.
        return text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n < 1 << 50)
            .and_then(|n| usize::try_from(n).ok());
    }
    None
}

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    units: Arc<Semaphore>,
    total_bytes: usize,
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(units)),
            total_bytes: units * UNIT,
        }
    }

    /// The budget's size in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes not charged at the moment.
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits() * UNIT
    }

    /// Charges `bytes` if they fit now; `None` means shed the request.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).ok()?;
        self.units
            .clone()
            .try_acquire_many_owned(units)
            .ok()
            .map(|permit| Charge { permit })
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES)
    }
}

/// Memory charged to one request; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    permit: OwnedSemaphorePermit,
}

impl Charge {
    /// Charges `bytes` more if they fit now (false: shed the request).
    pub fn grow(&mut self, budget: &Budget, bytes: usize) -> bool {
        match budget.try_charge(bytes) {
            Some(more) => {
                self.permit.merge(more.permit);
                true
            }
            None => false,
        }
    }

    /// Gives back what a request charged beyond `bytes` (charged for the largest body when its
    /// size was not declared, then read and found smaller).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT).max(1);
        if let Some(excess) = self.permit.num_permits().checked_sub(keep)
            && excess > 0
        {
            drop(self.permit.split(excess));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_full_and_gives_back_on_drop() {
        let budget = Budget::new(body_cost(1024) * 2);
        let mut a = budget.try_charge(body_cost(1024)).unwrap();
        let _b = budget.try_charge(body_cost(1024)).unwrap();
        assert!(budget.try_charge(body_cost(1024)).is_none());
        assert!(!a.grow(&budget, 1024));
        drop(a);
        let mut c = budget.try_charge(1024).unwrap();
        assert!(c.grow(&budget, 1024));
        assert_eq!(
            budget.available_bytes(),
            budget.total_bytes() - body_cost(1024) - 2048
        );
    }

    #[test]
    fn the_tree_cost_prices_nodes_not_bytes() {
        // Same length, very different trees.
        let dense = format!("[{}]", vec!["{\"a\":0}"; 1000].join(","));
        let flat = format!("\"{}\"", "x".repeat(dense.len() - 2));
        assert_eq!(dense.len(), flat.len());
        assert!(tree_cost(dense.as_bytes()) > 20 * tree_cost(flat.as_bytes()));
        assert_eq!(
            tree_cost(b"[0,0]"),
            TREES * (3 * VALUE_BYTES + 2 * ELEMENT_BYTES)
        );
        assert_eq!(
            tree_cost(br#"{"ab":"cde","":{}}"#),
            TREES * (3 * VALUE_BYTES + OBJECT_BYTES + 2 * MEMBER_BYTES + 2 * STRING_BYTES + 5)
                + 3 * LONGEST_STRING_COPIES
        );
        // Not JSON: what the parse gets through before it fails.
        assert_eq!(
            tree_cost(b"[0,0,"),
            TREES * (3 * VALUE_BYTES + 2 * ELEMENT_BYTES)
        );
        assert_eq!(tree_cost(b""), 0);
    }

    /// JSON documents of any shape (proptest's own generator of nested values).
    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,4}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,2}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_body_costs_more_than_its_bound(value in json()) {
            let body = serde_json::to_vec(&value).unwrap();
            proptest::prop_assert!(tree_cost(&body) <= tree_cost_bound(body.len()));
            // Nor does any prefix of it (a body that is not JSON).
            let half = &body[..body.len() / 2];
            proptest::prop_assert!(tree_cost(half) <= tree_cost_bound(half.len()));
        }
    }

    #[test]
    fn the_densest_bodies_stay_within_their_bound_and_near_it() {
        let nested = |depth: usize, key: &str| {
            format!(
                "{}0{}",
                format!(r#"{{"{key}":"#).repeat(depth),
                "}".repeat(depth)
            )
        };
        let dense = [
            nested(100, ""),
            nested(100, "a"),
            format!("[{}]", vec![r#"{"":0}"#; 500].join(",")),
            format!("[{}]", vec!["0"; 2000].join(",")),
            format!("[{}]", vec![r#""a""#; 1000].join(",")),
            format!("{{{}}}", vec![r#""":0"#; 800].join(",")),
            format!("{}{}", "[".repeat(100), "]".repeat(100)),
            r#"{"":{"":{"":{"":"#.repeat(30),
            format!(r#"{}{{"""#, r#"{"":"#.repeat(30)),
            format!(r#""{}""#, "x".repeat(3000)),
        ];
        for body in &dense {
            assert!(
                tree_cost(body.as_bytes()) <= tree_cost_bound(body.len()),
                "{body:.40}: {} > {}",
                tree_cost(body.as_bytes()),
                tree_cost_bound(body.len())
            );
        }
        // The bound is the nested objects' own density, not a loose guess.
        let deepest = r#"{"":"#.repeat(120);
        assert!(10 * tree_cost(deepest.as_bytes()) > 9 * tree_cost_bound(deepest.len()));
    }

    #[test]
    fn only_small_bodies_with_ample_room_are_charged_their_bound() {
        let budget = Budget::new(64 << 20);
        let mut charge = budget.try_charge(1024).unwrap();
        assert!(charge_bound(&budget, &mut charge, 1200));
        assert_eq!(
            budget.total_bytes() - budget.available_bytes(),
            (1024 + tree_cost_bound(1200)).div_ceil(UNIT) * UNIT
        );
        assert!(!charge_bound(&budget, &mut charge, BOUNDED_BODY_BYTES + 1));
        // Most of the budget taken: counted, not bounded.
        let _taken = budget.try_charge(60 << 20).unwrap();
        let before = budget.available_bytes();
        assert!(!charge_bound(&budget, &mut charge, 1200));
        assert_eq!(budget.available_bytes(), before, "charged although refused");
    }

    #[test]
    fn shrinking_gives_back_the_excess() {
        let budget = Budget::new(4 * 1024 * 1024);
        let mut charge = budget.try_charge(3 * 1024 * 1024).unwrap();
        assert_eq!(budget.available_bytes(), 1024 * 1024);
        charge.shrink_to(10 * 1024);
        assert_eq!(budget.available_bytes(), 4 * 1024 * 1024 - 10 * 1024);
        drop(charge);
        assert_eq!(budget.available_bytes(), 4 * 1024 * 1024);
    }

    #[test]
    fn the_limit_comes_from_cgroup_v2_or_v1() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_memory_limit_in(dir.path()), None);
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(cgroup_memory_limit_in(dir.path()), None);
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "268435456\n",
        )
        .unwrap();
        assert_eq!(cgroup_memory_limit_in(dir.path()), Some(256 << 20));
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_memory_limit_in(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "134217728\n").unwrap();
        assert_eq!(cgroup_memory_limit_in(dir.path()), Some(128 << 20));
        // Half the limit, but never less than one largest request.
        assert_eq!(budget_for_limit(256 << 20, 3 << 20), 128 << 20);
        assert_eq!(budget_for_limit(4 << 20, 3 << 20), body_cost(3 << 20));
    }
}
