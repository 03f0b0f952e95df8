package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// machineDirty lists what hack/cluster/down.sh should have removed but did
// not: cluster processes, mounts under the kubelet's and the cluster's
// directories, loop devices over the pool, the pod bridge, iptables chains,
// state directories. TestMain fails the run when the list is not empty.
func machineDirty() []string {
	var dirty []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		// Every process of the local cluster names its state dir or socket on its command line.
		if strings.Contains(args, "/var/lib/csi-hub-cluster") || strings.Contains(args, "/run/csi-hub-cluster") {
			dirty = append(dirty, "process "+p.Name()+": "+args)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (strings.HasPrefix(f[4], kubeletDir) || strings.HasPrefix(f[4], "/var/lib/csi-hub") ||
			strings.HasPrefix(f[4], "/run/csi-hub-cluster") || strings.HasPrefix(f[4], "/run/netns/cni-")) {
			dirty = append(dirty, "mount "+f[4])
		}
	}
	blocks, _ := os.ReadDir("/sys/block")
	for _, b := range blocks {
		back, err := os.ReadFile("/sys/block/" + b.Name() + "/loop/backing_file")
		if err == nil && strings.HasPrefix(string(back), "/var/lib/csi-hub") {
			dirty = append(dirty, fmt.Sprintf("loop device /dev/%s -> %s", b.Name(), strings.TrimSpace(string(back))))
		}
	}
	if _, err := net.InterfaceByName("csihub0"); err == nil {
		dirty = append(dirty, "network interface csihub0")
	}
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.Command("iptables", "-t", table, "-S").Output()
		if err != nil {
			continue
		}
		for _, rule := range strings.Split(string(out), "\n") {
			if strings.Contains(rule, "KUBE-") || strings.Contains(rule, "CSI-HUB-") || strings.Contains(rule, "10.244.0.") {
				dirty = append(dirty, "iptables -t "+table+": "+rule)
			}
		}
	}
	for _, dir := range []string{kubeletDir, "/var/lib/csi-hub", "/var/lib/csi-hub-cluster", "/run/csi-hub-cluster"} {
		if _, err := os.Stat(dir); err == nil {
			dirty = append(dirty, "directory "+dir)
		}
	}
	return dirty
}
