package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// limit is something this machine cannot do that some upstream specs need,
// detected before the run (never assumed) and named in the summary.
type limit struct {
	reason string
	// specs the run filters out (-ginkgo.skip) because of the limit, or nil.
	specs *regexp.Regexp
	// skips the limit explains: specs that skip themselves because of it, or nil.
	skips *regexp.Regexp
	// noOnlineExpansionExt4: testdriver.yaml (ext4) runs with onlineExpansion off.
	noOnlineExpansionExt4 bool
}

const capSysResource = 24 // linux/capability.h

// detectLimits probes the machine the way the affected specs would fail.
// sshErr is why hack/cluster/node-ssh.sh could not give SSH access to the node.
func detectLimits(sshErr error) []limit {
	var out []limit
	if ok, err := boundingCapability(capSysResource); err == nil && !ok {
		out = append(out, limit{
			reason: "CAP_SYS_RESOURCE is not in this machine's capability bounding set, so the kernel refuses to grow a mounted ext4 (EXT4_IOC_RESIZE_FS): " +
				"online expansion runs on the xfs class (testdriver-xfs.yaml) instead",
			skips:                 regexp.MustCompile(`does not support online volume expansion`),
			noOnlineExpansionExt4: true,
		})
	}
	// The volumeMode "should not mount / map unused volumes in a pod" specs and
	// subPath's "should unmount if pod is ... deleted while kubelet is down"
	// (which lists the node's global mounts before and after) check the node
	// through a privileged helper pod that runs
	// `nsenter --mount=/rootfs/proc/1/ns/mnt`; root on this host gets the same answer.
	if out2, err := exec.Command("nsenter", "--mount=/proc/1/ns/mnt", "--", "true").CombinedOutput(); err != nil {
		out = append(out, limit{
			reason: fmt.Sprintf("nsenter into PID 1's mount namespace is refused here even for root (%s: %s); "+
				"the specs' host-exec pod needs it", err, strings.TrimSpace(string(out2))),
			specs: regexp.MustCompile(`should not mount / map unused volumes in a pod|subPath should unmount if pod is (gracefully|force) deleted while kubelet is down`),
		})
	}
	if sshErr != nil {
		out = append(out, limit{
			reason: "no SSH access to the node (" + sshErr.Error() + "): the specs that stop and start the kubelet do it with `ssh node systemctl`",
			skips:  regexp.MustCompile(`No SSH Key for provider`),
		})
	}
	return out
}

// boundingCapability reports whether capability bit n is in this process's
// bounding set (CapBnd in /proc/self/status).
func boundingCapability(n uint) (bool, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			return mask&(1<<n) != 0, nil
		}
	}
	return false, fmt.Errorf("no CapBnd in /proc/self/status")
}

// limitRules turns the limits' expected self-skips into skip rules.
func limitRules(limits []limit) []skipRule {
	var out []skipRule
	for _, l := range limits {
		if l.skips != nil {
			out = append(out, skipRule{l.skips, "machine limit: " + l.reason})
		}
	}
	return out
}
