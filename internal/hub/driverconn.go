package hub

import (
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-hub/csi-hub/internal/csiconn"
)

// DriverConn is the CSI driver as a controller reaches it: its name, what it
// advertises, and its controller and node services over the hub's one
// connection. Embedded in each controller's Deps (promoted: d.Driver, d.Caps,
// d.CSI, d.Node); a controller uses the fields it needs (only the provisioner
// and the resizer call Node), and unit tests set only those (Node and CSI may
// be nil there).
type DriverConn struct {
	Driver string
	Caps   csiconn.Capabilities
	CSI    csi.ControllerClient
	Node   csi.NodeClient
}

// DriverConn is the driver over h.Conn, for a controller's Deps.
func (h *Hub) DriverConn() DriverConn {
	return DriverConn{Driver: h.Driver, Caps: h.Conn.Caps, CSI: h.Conn.Controller(), Node: h.Conn.Node()}
}
