//! Linearizability of the history of one znode, by Wing and Gong's search with Lowe's
//! memoisation (the algorithm of Knossos' and Porcupine's checkers, written here from the
//! papers).
//!
//! The model is a versioned register that may be absent: create, setData with an expected
//! version, delete with an expected version, and a read that sees the data and version (or
//! NoNode). An operation whose outcome is unknown (timed out, connection lost) returns at
//! infinity with any result: it may have taken effect at any point after its invocation, or
//! never. The search succeeds once every operation with a known result is linearized.
//!
//! Owns: the model and the search. Must not: know where the history came from.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The znode: absent, or (data id, version).
pub type State = Option<(u64, i32)>;

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        data: u64,
    },
    /// `expected` -1 matches any version, as in ZooKeeper.
    Set {
        data: u64,
        expected: i32,
    },
    Delete {
        expected: i32,
    },
    Read,
}

/// What the server answered (for reads, what it saw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// create or delete succeeded.
    Ok,
    /// setData succeeded; the node's new version.
    Version(i32),
    NoNode,
    NodeExists,
    BadVersion,
    Value(State),
}

/// One operation of the history. Times in nanoseconds from any common origin.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub op: Op,
    pub call: u64,
    /// None: the outcome is unknown (the call may or may not have taken effect).
    pub ret: Option<(u64, Ret)>,
}

/// The register's sequential specification: the answer `op` gets in `state`, and the state
/// after it.
pub fn step(state: State, op: Op) -> (Ret, State) {
    match (op, state) {
        (Op::Create { data }, None) => (Ret::Ok, Some((data, 0))),
        (Op::Create { .. }, Some(_)) => (Ret::NodeExists, state),
        (Op::Set { .. }, None) | (Op::Delete { .. }, None) => (Ret::NoNode, None),
        (Op::Set { data, expected }, Some((_, v))) if v == expected || expected == -1 => {
            (Ret::Version(v + 1), Some((data, v + 1)))
        }
        (Op::Delete { expected }, Some((_, v))) if v == expected => (Ret::Ok, None),
        (Op::Set { .. }, Some(_)) | (Op::Delete { .. }, Some(_)) => (Ret::BadVersion, state),
        (Op::Read, s) => (Ret::Value(s), s),
    }
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists. `stuck` is the index (into the history) of the operation whose
    /// return could not be reached by the deepest partial linearization found; `linearized`
    /// how many operations that one had ordered.
    NotLinearizable {
        stuck: usize,
        linearized: usize,
    },
    /// The search was stopped at the time limit.
    GaveUp,
}

/// One node of the doubly linked list of call and return events.
#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    /// The operation's index in the history.
    op: usize,
    is_call: bool,
    /// For a call, the node of its return.
    ret_node: usize,
}

/// Checks `history` (any order) against the register starting in `init`.
pub fn check(history: &[Entry], init: State, limit: Duration) -> Verdict {
    let started = Instant::now();
    // Events: (time, is_return, op). At equal times calls sort first, which treats the two
    // operations as concurrent (the permissive reading of a tie).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (i, e) in history.iter().enumerate() {
        events.push((e.call, false, i));
        events.push((e.ret.map_or(u64::MAX, |(t, _)| t), true, i));
    }
    events.sort();
    // Node 0 is the head sentinel; event k is node k + 1.
    let n = events.len();
    let mut nodes = vec![
        Node {
            prev: 0,
            next: usize::MAX,
            op: usize::MAX,
            is_call: false,
            ret_node: usize::MAX,
        };
        n + 1
    ];
    let mut ret_node_of = vec![usize::MAX; history.len()];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        if is_ret {
            ret_node_of[op] = k + 1;
        }
    }
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let id = k + 1;
        nodes[id] = Node {
            prev: k,
            next: if k + 1 < n { id + 1 } else { usize::MAX },
            op,
            is_call: !is_ret,
            ret_node: if is_ret { usize::MAX } else { ret_node_of[op] },
        };
    }
    nodes[0].next = if n > 0 { 1 } else { usize::MAX };

    let words = history.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut depth = 0usize;
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut calls: Vec<(usize, State)> = Vec::new();
    let mut state = init;
    let mut best = (0usize, usize::MAX);
    let mut entry = nodes[0].next;
    let mut steps = 0u64;
    while entry != usize::MAX {
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > limit {
            return Verdict::GaveUp;
        }
        let node = nodes[entry];
        if node.is_call {
            let e = &history[node.op];
            let (ret, next_state) = step(state, e.op);
            let allowed = match e.ret {
                None => true,
                Some((_, r)) => r == ret,
            };
            if allowed {
                let mut with = linearized.clone();
                with[node.op / 64] |= 1 << (node.op % 64);
                if cache.insert((with.clone(), next_state)) {
                    calls.push((entry, state));
                    state = next_state;
                    linearized = with;
                    depth += 1;
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    continue;
                }
            }
            entry = node.next;
        } else {
            // A return: its operation must be linearized by now.
            if history[node.op].ret.is_none() {
                // Returns at infinity come after every known return: all those are done.
                return Verdict::Linearizable;
            }
            if depth >= best.0 {
                best = (depth, node.op);
            }
            let Some((call, prev_state)) = calls.pop() else {
                return Verdict::NotLinearizable {
                    stuck: best.1,
                    linearized: best.0,
                };
            };
            let op = nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            depth -= 1;
            state = prev_state;
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Verdict::Linearizable
}

/// Takes a call and its return out of the list.
fn lift(nodes: &mut [Node], call: usize) {
    for id in [call, nodes[call].ret_node] {
        let Node { prev, next, .. } = nodes[id];
        nodes[prev].next = next;
        if next != usize::MAX {
            nodes[next].prev = prev;
        }
    }
}

/// Puts them back (in the reverse order of [`lift`]: each still knows its old neighbours).
fn unlift(nodes: &mut [Node], call: usize) {
    for id in [nodes[call].ret_node, call] {
        let Node { prev, next, .. } = nodes[id];
        nodes[prev].next = id;
        if next != usize::MAX {
            nodes[next].prev = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn done(op: Op, call: u64, ret: u64, r: Ret) -> Entry {
        Entry {
            op,
            call,
            ret: Some((ret, r)),
        }
    }

    fn unknown(op: Op, call: u64) -> Entry {
        Entry {
            op,
            call,
            ret: None,
        }
    }

    fn ok(h: &[Entry]) -> bool {
        check(h, None, LIMIT) == Verdict::Linearizable
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                3,
                Ret::Version(1),
            ),
            done(Op::Read, 4, 5, Ret::Value(Some((2, 1)))),
            done(Op::Delete { expected: 1 }, 6, 7, Ret::Ok),
            done(Op::Read, 8, 9, Ret::Value(None)),
            done(Op::Create { data: 3 }, 10, 11, Ret::Ok),
        ];
        assert_eq!(check(&h, None, LIMIT), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_rejected() {
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                3,
                Ret::Version(1),
            ),
            done(Op::Read, 4, 5, Ret::Value(Some((1, 0)))),
        ];
        match check(&h, None, LIMIT) {
            Verdict::NotLinearizable { stuck, .. } => assert_eq!(stuck, 2),
            v => panic!("a stale read was accepted: {v:?}"),
        }
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some((1, 0)), Some((2, 1))] {
            let h = [
                done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
                done(
                    Op::Set {
                        data: 2,
                        expected: 0,
                    },
                    2,
                    6,
                    Ret::Version(1),
                ),
                done(Op::Read, 3, 5, Ret::Value(seen)),
            ];
            assert!(ok(&h), "{seen:?}");
        }
    }

    #[test]
    fn two_successful_sets_on_the_same_version_are_rejected() {
        // The lost update a split brain produces: both sides accept a set on version 0.
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                5,
                Ret::Version(1),
            ),
            done(
                Op::Set {
                    data: 3,
                    expected: 0,
                },
                3,
                6,
                Ret::Version(1),
            ),
        ];
        assert!(matches!(
            check(&h, None, LIMIT),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn reads_that_flip_back_and_forth_are_rejected() {
        // Each read alone is concurrent with the write; together they need two orders.
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                20,
                Ret::Version(1),
            ),
            done(Op::Read, 3, 4, Ret::Value(Some((2, 1)))),
            done(Op::Read, 5, 6, Ret::Value(Some((1, 0)))),
        ];
        assert!(matches!(
            check(&h, None, LIMIT),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn a_value_nobody_wrote_is_rejected() {
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(Op::Read, 2, 3, Ret::Value(Some((9, 0)))),
        ];
        assert!(!ok(&h));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let applied = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            unknown(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
            ),
            done(Op::Read, 10, 11, Ret::Value(Some((1, 0)))),
            done(Op::Read, 20, 21, Ret::Value(Some((2, 1)))),
        ];
        assert!(ok(&applied));
        let never = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            unknown(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
            ),
            done(
                Op::Set {
                    data: 3,
                    expected: 0,
                },
                10,
                11,
                Ret::Version(1),
            ),
            done(Op::Read, 20, 21, Ret::Value(Some((3, 1)))),
        ];
        assert!(ok(&never));
        // But not before it was invoked.
        let early = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(Op::Read, 2, 3, Ret::Value(Some((2, 1)))),
            unknown(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                4,
            ),
        ];
        assert!(!ok(&early));
    }

    #[test]
    fn a_set_of_any_version_applies_whatever_the_version() {
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                3,
                Ret::Version(1),
            ),
            done(
                Op::Set {
                    data: 3,
                    expected: -1,
                },
                4,
                5,
                Ret::Version(2),
            ),
            done(Op::Read, 6, 7, Ret::Value(Some((3, 2)))),
        ];
        assert!(ok(&h));
        let wrong = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 3,
                    expected: -1,
                },
                4,
                5,
                Ret::Version(2),
            ),
        ];
        assert!(!ok(&wrong));
    }

    #[test]
    fn failures_are_checked_too() {
        // BadVersion while the version matched and nothing else ran: not linearizable.
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(
                Op::Set {
                    data: 2,
                    expected: 0,
                },
                2,
                3,
                Ret::BadVersion,
            ),
        ];
        assert!(!ok(&h));
        // NodeExists for a create after a completed delete: not linearizable.
        let h = [
            done(Op::Create { data: 1 }, 0, 1, Ret::Ok),
            done(Op::Delete { expected: 0 }, 2, 3, Ret::Ok),
            done(Op::Create { data: 2 }, 4, 5, Ret::NodeExists),
        ];
        assert!(!ok(&h));
    }

    #[test]
    fn many_concurrent_clients_are_checked_quickly() {
        // 8 clients, 2000 operations in overlapping rounds: each round every client reads
        // concurrently with one set that wins; the memoisation keeps this polynomial.
        let mut h = vec![done(Op::Create { data: 0 }, 0, 1, Ret::Ok)];
        let mut t = 10;
        for round in 0..250u64 {
            let version = round as i32;
            let winner = round % 8;
            for c in 0..8u64 {
                if c == winner {
                    h.push(done(
                        Op::Set {
                            data: round + 1,
                            expected: version,
                        },
                        t + c,
                        t + 20 + c,
                        Ret::Version(version + 1),
                    ));
                } else {
                    // Half the readers see the old value, half the new one.
                    let seen = if c % 2 == 0 {
                        Some((round, version))
                    } else {
                        Some((round + 1, version + 1))
                    };
                    h.push(done(Op::Read, t + c, t + 20 + c, Ret::Value(seen)));
                }
            }
            t += 100;
        }
        let started = Instant::now();
        assert_eq!(check(&h, None, LIMIT), Verdict::Linearizable);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
