package nvme

import (
	"flag"
	"fmt"
	"time"
)

// Flags are the command-line options of the nvme transport, so that
// cmd/csi-hub-plugin wires it with Register plus one constructor per side.
type Flags struct {
	ListenAddress    string
	AdvertiseAddress string
	Port             int
	PortID           string
	Zone             string
	ConfigfsRoot     string
	BufferedIO       string
	AttachTimeout    time.Duration
	HostNQNFile      string
	CtrlLossTimeout  int
	ReconnectDelay   int
}

// Register adds the --nvme-* flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.ListenAddress, "nvme-listen-address", "", "controller: IP address the NVMe/TCP port listens on (0.0.0.0 or :: for all)")
	fs.StringVar(&f.AdvertiseAddress, "nvme-advertise-address", "", "controller: IP address nodes connect to (default: the listen address)")
	fs.IntVar(&f.Port, "nvme-port", DefaultPort, "controller: NVMe/TCP port")
	fs.StringVar(&f.PortID, "nvme-port-id", "1", "controller: nvmet port number in configfs owned by this plugin")
	fs.StringVar(&f.Zone, "nvme-zone", "", "zone of the storage host and of the nodes that reach it (segment topology.<driver>/zone); same value on controller and nodes")
	fs.StringVar(&f.ConfigfsRoot, "nvme-configfs-root", DefaultConfigfsRoot, "controller: nvmet configfs directory")
	fs.StringVar(&f.BufferedIO, "nvme-buffered-io", string(BufferedIOAuto), "controller: nvmet buffered_io: auto (only where O_DIRECT fails), always or never")
	fs.DurationVar(&f.AttachTimeout, "nvme-attach-timeout", 30*time.Second, "node: how long to wait for a connected volume's block device")
	fs.IntVar(&f.CtrlLossTimeout, "nvme-ctrl-loss-tmo", 0, "node: seconds I/O waits for a lost target before failing (0: kernel default, 600)")
	fs.IntVar(&f.ReconnectDelay, "nvme-reconnect-delay", 0, "node: seconds between reconnect attempts to a lost target (0: kernel default, 10)")
	fs.StringVar(&f.HostNQNFile, "nvme-hostnqn-file", DefaultHostNQNFile, "node: file holding this node's host NQN (created if absent); the NQN is the node ID")
}

// Topology is the segment both sides report: the zone under ZoneTopologyKey.
func (f *Flags) Topology(driverName string) (map[string]string, error) {
	if f.Zone == "" {
		return nil, fmt.Errorf("--nvme-zone is required with --transport=nvme")
	}
	return map[string]string{ZoneTopologyKey(driverName): f.Zone}, nil
}

// NewTarget builds the controller side from the flags.
func (f *Flags) NewTarget(driverName string) (*Target, error) {
	if _, err := f.Topology(driverName); err != nil {
		return nil, err
	}
	if f.ListenAddress == "" {
		return nil, fmt.Errorf("--nvme-listen-address is required with --transport=nvme in controller mode")
	}
	return NewTarget(TargetConfig{
		ConfigfsRoot: f.ConfigfsRoot, PortID: f.PortID, ListenAddress: f.ListenAddress,
		AdvertiseAddress: f.AdvertiseAddress, Port: f.Port, TopologyKey: ZoneTopologyKey(driverName),
		TopologyValue: f.Zone, BufferedIO: BufferedIO(f.BufferedIO),
	})
}

// NewInitiator builds the node side; its HostNQN is the node's ID.
func (f *Flags) NewInitiator() (*Initiator, error) {
	file := f.HostNQNFile
	if file == "" {
		file = DefaultHostNQNFile
	}
	nqn, err := LoadOrCreateHostNQN(file, dmiProductUUID)
	if err != nil {
		return nil, err
	}
	return NewInitiator(InitiatorConfig{HostNQN: nqn, AttachTimeout: f.AttachTimeout,
		CtrlLossTimeout: f.CtrlLossTimeout, ReconnectDelay: f.ReconnectDelay})
}
