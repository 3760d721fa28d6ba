//! Replicas that share the work (`ferry run --share-work`): every replica holds a
//! `coordination.k8s.io/v1` Lease of its own, the live Leases are the members, and each
//! logical cluster is written by exactly one member, the one rendezvous hashing picks
//! ([`rendezvous`]). A replica gives a logical cluster up (cancels its reconciles) before it
//! advertises the member set under which another member takes it, and takes one only once
//! every member advertises the set that gives it ([`handover`]). Workers ask the [`gate`]
//! before each reconcile; [`membership`] keeps the Lease and feeds the gate; [`report`]
//! publishes the replica metrics.
//!
//! Everything Ferry writes is per logical cluster (an object's finalizer, status and Events
//! upstream; its copies and their namespace, mapped per workspace, downstream; a copy's
//! orphan deletion, keyed by the origin's cluster), so nothing needs a single actor across
//! replicas. Caches are not split: a wildcard watch cannot be filtered by logical cluster,
//! so every replica watches everything, and a cluster it gains is enqueued from warm stores.

pub mod gate;
pub mod handover;
pub mod membership;
pub mod rendezvous;
pub mod report;
