package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/csi-hub/csi-hub/plugin"
	"github.com/csi-hub/csi-hub/plugin/transport"
	"github.com/csi-hub/csi-hub/plugin/transport/loop"
	"github.com/csi-hub/csi-hub/plugin/transport/nvme"
)

// transportOptions choose how volumes reach nodes: loop (the node is the
// storage host: single-node clusters, tests) or nvme (NVMe over TCP from the
// storage host's nvmet target to any node in the same zone).
type transportOptions struct {
	name                                  string
	nvmeListen, nvmeAdvertise, nvmePortID string
	nvmePort                              int
	nvmeZone, nvmeConfigfs, nvmeBuffered  string
	nvmeAttachTimeout                     time.Duration
	nvmeCtrlLoss, nvmeReconnectDelay      time.Duration
}

func (t *transportOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&t.name, "transport", loop.Name, "how volumes reach nodes: loop (node and storage host share the pool) or nvme (NVMe/TCP)")
	fs.StringVar(&t.nvmeListen, "nvme-listen-address", "", "nvme, controller: IP address the nvmet TCP port listens on (0.0.0.0 or :: for all)")
	fs.StringVar(&t.nvmeAdvertise, "nvme-advertise-address", "", "nvme, controller: IP address nodes connect to (default: the listen address; required when it is a wildcard)")
	fs.IntVar(&t.nvmePort, "nvme-port", nvme.DefaultPort, "nvme, controller: TCP port of the target")
	fs.StringVar(&t.nvmePortID, "nvme-port-id", "1", "nvme, controller: nvmet port number in configfs owned by this plugin")
	fs.StringVar(&t.nvmeZone, "nvme-zone", "", "nvme: value of the topology."+"<driver>/zone segment, the same on the storage host and its nodes")
	fs.StringVar(&t.nvmeConfigfs, "nvme-configfs-root", nvme.DefaultConfigfsRoot, "nvme, controller: the nvmet configfs directory")
	fs.StringVar(&t.nvmeBuffered, "nvme-buffered-io", string(nvme.BufferedIOAuto), "nvme, controller: nvmet buffered_io: auto, always or never")
	fs.DurationVar(&t.nvmeAttachTimeout, "nvme-attach-timeout", 30*time.Second, "nvme, node: how long NodeStage waits for the namespace's block device")
	fs.DurationVar(&t.nvmeCtrlLoss, "nvme-ctrl-loss-timeout", 0, "nvme, node: how long the kernel keeps reconnecting to a lost storage host before failing I/O (nvme connect --ctrl-loss-tmo, whole seconds; 0: the kernel's default, 600s). Writes issued meanwhile wait, and complete if it comes back in time")
	fs.DurationVar(&t.nvmeReconnectDelay, "nvme-reconnect-delay", 0, "nvme, node: time between reconnect attempts (nvme connect --reconnect-delay, whole seconds; 0: the kernel's default, 10s)")
}

// target builds the storage-host side of the chosen transport.
func (t *transportOptions) target(driver, nodeID string) (transport.Target, error) {
	switch t.name {
	case loop.Name:
		return loop.NewTarget(loop.TargetConfig{NodeID: nodeID, TopologyKey: plugin.TopologyNodeKey(driver)})
	case nvme.Name:
		if t.nvmeZone == "" {
			return nil, fmt.Errorf("--nvme-zone is required with --transport=nvme")
		}
		if t.nvmeListen == "" {
			return nil, fmt.Errorf("--nvme-listen-address is required with --transport=nvme in controller mode")
		}
		return nvme.NewTarget(nvme.TargetConfig{ConfigfsRoot: t.nvmeConfigfs, PortID: t.nvmePortID,
			ListenAddress: t.nvmeListen, AdvertiseAddress: t.nvmeAdvertise, Port: t.nvmePort,
			TopologyKey: nvme.ZoneTopologyKey(driver), TopologyValue: t.nvmeZone, BufferedIO: nvme.BufferedIO(t.nvmeBuffered)})
	}
	return nil, fmt.Errorf("--transport %q: want loop or nvme", t.name)
}

// initiator builds the node side. For nvme the node ID is the host NQN, the
// identity the target grants access to; a --node-id given anyway must match it.
func (t *transportOptions) initiator(driver, nodeID string) (ini transport.Initiator, id string, topology map[string]string, err error) {
	switch t.name {
	case loop.Name:
		return loop.NewInitiator(), nodeID, map[string]string{plugin.TopologyNodeKey(driver): nodeID}, nil
	case nvme.Name:
		if t.nvmeZone == "" {
			return nil, "", nil, fmt.Errorf("--nvme-zone is required with --transport=nvme")
		}
		lossSecs, err := wholeSeconds("--nvme-ctrl-loss-timeout", t.nvmeCtrlLoss)
		if err != nil {
			return nil, "", nil, err
		}
		delaySecs, err := wholeSeconds("--nvme-reconnect-delay", t.nvmeReconnectDelay)
		if err != nil {
			return nil, "", nil, err
		}
		hostNQN, err := nvme.HostNQN()
		if err != nil {
			return nil, "", nil, fmt.Errorf("host NQN: %w", err)
		}
		if nodeID != "" && nodeID != hostNQN {
			return nil, "", nil, fmt.Errorf("--node-id %q: with --transport=nvme the node ID is the host NQN %q; leave --node-id empty", nodeID, hostNQN)
		}
		ini, err := nvme.NewInitiator(nvme.InitiatorConfig{HostNQN: hostNQN, AttachTimeout: t.nvmeAttachTimeout,
			CtrlLossTimeout: lossSecs, ReconnectDelay: delaySecs})
		return ini, hostNQN, map[string]string{nvme.ZoneTopologyKey(driver): t.nvmeZone}, err
	}
	return nil, "", nil, fmt.Errorf("--transport %q: want loop or nvme", t.name)
}

// wholeSeconds converts a duration flag nvme connect takes in seconds.
func wholeSeconds(flag string, d time.Duration) (int, error) {
	if d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("%s %v: want a whole number of seconds, 0 or more", flag, d)
	}
	return int(d / time.Second), nil
}
