package nvme

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagsBuildBothSides(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "subsystems"), 0o755)
	hostFile := filepath.Join(t.TempDir(), "hostnqn")
	os.WriteFile(hostFile, []byte(testHost+"\n"), 0o644)

	var f Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--nvme-listen-address=0.0.0.0", "--nvme-advertise-address=192.0.2.10", "--nvme-port=4421",
		"--nvme-zone=zone-a", "--nvme-configfs-root=" + root, "--nvme-reconnect-delay=2", "--nvme-ctrl-loss-tmo=60", "--nvme-hostnqn-file=" + hostFile}); err != nil {
		t.Fatal(err)
	}
	tg, err := f.NewTarget("block.csi-hub.io")
	if err != nil {
		t.Fatal(err)
	}
	if tg.cfg.AdvertiseAddress != "192.0.2.10" || tg.cfg.Port != 4421 || tg.cfg.PortID != "1" ||
		tg.AccessibleTopology()["topology.block.csi-hub.io/zone"] != "zone-a" {
		t.Errorf("target config %+v, topology %v", tg.cfg, tg.AccessibleTopology())
	}
	ini, err := f.NewInitiator()
	if err != nil || ini.HostNQN() != testHost || ini.cfg.ReconnectDelay != 2 || ini.cfg.CtrlLossTimeout != 60 {
		t.Fatalf("initiator %+v, %v", ini, err)
	}
	top, err := f.Topology("block.csi-hub.io")
	if err != nil || top["topology.block.csi-hub.io/zone"] != "zone-a" || len(top) != 1 {
		t.Errorf("node topology %v, %v: must equal the target's", top, err)
	}
}

func TestFlagsRequireZoneAndListenAddress(t *testing.T) {
	f := Flags{ListenAddress: "127.0.0.1"}
	if _, err := f.NewTarget("d"); err == nil || !strings.Contains(err.Error(), "--nvme-zone") {
		t.Errorf("missing zone: %v", err)
	}
	f = Flags{Zone: "z"}
	if _, err := f.NewTarget("d"); err == nil || !strings.Contains(err.Error(), "--nvme-listen-address") {
		t.Errorf("missing listen address: %v", err)
	}
}
