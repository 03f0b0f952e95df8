package resizer

import "k8s.io/client-go/tools/record"

// events records with external-resizer's source component,
// "external-resizer <driver>", so event filters on it keep working.
func (c *Controller) events() record.EventRecorder {
	return c.d.Events
}
