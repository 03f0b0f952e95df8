// Package plugin is the csi-hub CSI driver (spec v1.13): Identity, Controller
// and Node services on one unix socket (see Serve).
//
// Storage model (controller side): a pool directory on the storage host holds
// one backing file per volume (vol-<hex>.img; sparse, or preallocated with
// parameter type=thick) and per snapshot (snap-<hex>.img; an independent copy,
// reflinked where the filesystem can). Records live in a bbolt database in the
// pool (StoreFileName), every change one fsync'd transaction.
//
// Crash safety: a create writes its record in state "creating", fills a
// temporary file, fsyncs it, renames it to the final name, fsyncs the
// directory, and only then marks the record "ready"; a delete marks "deleting"
// before removing the file. At start-up pool.Reconcile finishes or rolls back
// whatever a kill interrupted: temporary and unrecorded files are removed,
// "creating" records are marked ready if their file exists and dropped
// otherwise (the CO's retry then creates afresh; it was never told an ID),
// "deleting" records are finished. A ready record whose file vanished behind
// the driver's back is kept and reported as DATA_LOSS by ControllerGetVolumeHealth
// instead of being dropped, so the loss stays visible and DeleteVolume still works.
//
// Pool capacity (ControllerConfig.Capacity) bounds the sum of provisioned
// volume and snapshot sizes, since sparse files would otherwise overcommit the
// disk; thick volumes must also fit the filesystem (ENOSPC -> ResourceExhausted).
//
// Known limit: without reflink support a snapshot of a volume that a node is
// writing to is copied while it changes, so it is only as consistent as the
// guest's own flushes (the CO is expected to freeze or accept crash consistency).
package plugin
