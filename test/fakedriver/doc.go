// Package fakedriver is an in-memory CSI driver (spec v1.13) for csi-hub's
// integration tests. It is deliberately a different implementation from
// csi-hub's own plugin: csi-hub must work with any conformant driver. It
// passes the upstream csi-sanity suite (see TestSanity).
//
// Serving: New(Options) then Start(socketPath) serves Identity, Controller and
// Node on a real unix socket. Stop (graceful, bounded by Options.StopTimeout)
// or StopNow (immediate) end serving; Start again, on the same path, with the
// same *Driver and its state intact. With Options.StateFile the state is
// also written to JSON after every change, and a brand-new Driver loads it.
//
// Capabilities: by default CREATE_DELETE_VOLUME, EXPAND_VOLUME,
// CREATE_DELETE_SNAPSHOT, LIST_SNAPSHOTS, CLONE_VOLUME, MODIFY_VOLUME,
// GET_CAPACITY and LIST_VOLUMES, with no attach and no topology. Options.Attach,
// ListPublishedNodes and Topology switch those on; ControllerCapabilities
// replaces the list outright. An RPC whose capability is off is Unimplemented.
//
// Faults, all keyed by the CSI method name ("CreateVolume"), which is checked:
//   - InjectError: the next n calls (or Forever) fail before acting;
//     InjectErrorIf: only calls whose request a predicate accepts.
//   - InjectErrorAfter: the call acts, then fails (a lost response).
//   - SetDelay: calls wait before acting, ignoring the caller's deadline.
//   - Gate: calls block until Release, even if their caller goes away.
//   - ClearFaults removes all of the above and releases every gate.
//   - Options.AbortConcurrent: a second mutating call on an object with one
//     in flight gets Aborted, as from drivers with per-volume locks.
//
// Order inside one call: recorded, takes its injected error, waits at the
// gate, waits the delay, then fails (InjectError) or runs.
//
// Inspection: Calls, WaitCalls and Requests / RequestsOf / LastRequest give
// what the driver received (copies, secrets included: tests assert on them;
// the driver's own logs strip them); Volumes, Volume, VolumeByName and
// Snapshots give the backend state. AddVolume, AddSnapshot, RemoveVolume,
// RemoveSnapshot, SetSnapshotReady, SetTotalCapacity and SetReady change the
// backend behind the caller's back.
package fakedriver
