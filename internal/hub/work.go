package hub

import "github.com/csi-hub/csi-hub/internal/steps"

// Work is what each queue-driven controller (provisioner, attacher, resizer,
// snapshotter) takes from the hub to run its workers: the step recorder, its
// queues, and its resolved --<controller>-worker-threads / -timeout
// (promoted: d.Workers, d.Timeout). Embedded in each controller's Deps.
type Work struct {
	Steps    *steps.Recorder
	NewQueue func(name string) Queue
	Tuning
}
