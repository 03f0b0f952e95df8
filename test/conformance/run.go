package conformance

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// Written by hack/cluster/up.sh (same defaults as hack/cluster/lib.sh).
	kubeconfigPath = "/var/lib/csi-hub-cluster/admin.kubeconfig"
	containerdSock = "/run/csi-hub-cluster/containerd/containerd.sock"
)

// pass is one e2e.test run: a testdriver, which specs, how many processes.
type pass struct {
	name   string
	driver string // file in test/conformance
	focus  string
	skip   string // besides the machine limits' specs
	procs  int
	// groupSnapshot: the pass runs groupsnapshot.test (upstream's group
	// snapshot suite, which e2e.test v1.34.4 skips for external drivers)
	// instead of e2e.test.
	groupSnapshot bool
}

// binary is the e2e test binary the pass runs.
func (p pass) binary(tl tools) string {
	if p.groupSnapshot {
		return tl.groupSnapshotTest
	}
	return tl.e2eTest
}

// rules are the skips the pass allows besides the limits'.
func (p pass) rules() []skipRule {
	if p.groupSnapshot {
		return allowedSkips
	}
	return append(append([]skipRule{}, allowedSkips...), e2eTestOnlySkips...)
}

// tools are the binaries hack/ensure-e2e.sh (`make test-deps`) built.
type tools struct{ e2eTest, ginkgo, agnhost, groupSnapshotTest, helloPopulator string }

// helloPopulatorImage is the image upstream's "any volume data source" spec
// deploys (test/e2e/testing-manifests/storage-csi/any-volume-datasource).
const helloPopulatorImage = "registry.k8s.io/sig-storage/hello-populator:v1.0.1"

func findTools(repo string) (tools, error) {
	out, err := exec.Command(filepath.Join(repo, "hack", "ensure-e2e.sh"), "--bin-dir").Output()
	if err != nil {
		return tools{}, fmt.Errorf("hack/ensure-e2e.sh --bin-dir: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	t := tools{filepath.Join(dir, "e2e.test"), filepath.Join(dir, "ginkgo"), filepath.Join(dir, "agnhost"),
		filepath.Join(dir, "groupsnapshot.test"), filepath.Join(dir, "hello-populator")}
	for _, p := range []string{t.e2eTest, t.ginkgo, t.agnhost, t.groupSnapshotTest, t.helloPopulator} {
		if _, err := os.Stat(p); err != nil {
			return tools{}, fmt.Errorf("%s is not built: run `make test-deps` (hack/ensure-e2e.sh) first", p)
		}
	}
	return t, nil
}

// importE2EImages builds the e2e suite's images (hack/imagebuild -e2e-agnhost,
// and the hello-populator binary as its upstream image) and imports them into
// the cluster's containerd under their upstream names.
func importE2EImages(repo string, tl tools, log io.Writer) error {
	dir, err := os.MkdirTemp("", "conformance-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var refs []byte
	for _, args := range [][]string{{"-e2e-agnhost", tl.agnhost}, {"-prebuilt", helloPopulatorImage + "=" + tl.helloPopulator}} {
		cmd := exec.Command("go", append([]string{"run", "./hack/imagebuild", "-out", dir}, args...)...)
		cmd.Dir = repo
		cmd.Stderr = log
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("imagebuild %s: %w", args[0], err)
		}
		refs = append(refs, out...)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(refs)), "\n") {
		ref, file, _ := strings.Cut(line, "\t")
		out, err := exec.Command("ctr", "--address", containerdSock, "-n", "k8s.io", "images", "import", file).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v: %s", file, err, out)
		}
		fmt.Fprintf(log, "conformance: imported %s\n", ref)
	}
	return nil
}

// driverFile writes the pass's testdriver into dir, adjusted for the limits
// (ext4 online expansion off where the kernel refuses it), and returns its path.
func driverFile(repo, dir, name string, limits []limit) (string, error) {
	data, err := os.ReadFile(filepath.Join(repo, "test", "conformance", name))
	if err != nil {
		return "", err
	}
	text := string(data)
	for _, l := range limits {
		if l.noOnlineExpansionExt4 && name == "testdriver.yaml" {
			re := regexp.MustCompile(`(?m)^(\s+onlineExpansion:) true`)
			if !re.MatchString(text) {
				return "", fmt.Errorf("%s: no onlineExpansion: true line to turn off", name)
			}
			text = re.ReplaceAllString(text, "$1 false")
		}
	}
	out := filepath.Join(dir, name)
	return out, os.WriteFile(out, []byte(text), 0o644)
}

// skipRegexp joins the pass's own skip with the specs the limits filter out.
func skipRegexp(p pass, limits []limit) string {
	parts := []string{}
	if p.skip != "" {
		parts = append(parts, p.skip)
	}
	for _, l := range limits {
		if l.specs != nil {
			parts = append(parts, l.specs.String())
		}
	}
	return strings.Join(parts, "|")
}

// runPass runs e2e.test through the ginkgo CLI (parallel processes) and
// returns the summary; the JUnit and JSON reports stay in dir.
func runPass(repo string, tl tools, p pass, limits []limit, sshKey, dir string, timeout time.Duration, log io.Writer) (summary, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return summary{}, err
	}
	driver, err := driverFile(repo, dir, p.driver, limits)
	if err != nil {
		return summary{}, err
	}
	skip := skipRegexp(p, limits)
	args := []string{
		"--procs=" + strconv.Itoa(p.procs), "--timeout=" + timeout.String(), "--no-color",
		"--focus=" + p.focus, "--json-report=report.json", "--junit-report=junit.xml", "--output-dir=" + dir,
	}
	if skip != "" {
		args = append(args, "--skip="+skip)
	}
	args = append(args, p.binary(tl), "--",
		"-kubeconfig="+kubeconfigPath, "-storage.testdriver="+driver, "-report-dir="+dir)
	fmt.Fprintf(log, "conformance: %s: ginkgo %s\n", p.name, strings.Join(args, " "))
	cmd := exec.Command(tl.ginkgo, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	if sshKey != "" {
		cmd.Env = append(cmd.Env, "KUBE_SSH_KEY_PATH="+sshKey, "KUBE_SSH_USER=root")
	}
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	runErr := cmd.Run() // non-zero on any failed spec; the report says which
	fmt.Fprintf(log, "conformance: %s took %.1f min\n", p.name, time.Since(start).Minutes())
	reports, err := readReports(filepath.Join(dir, "report.json"))
	if err != nil {
		return summary{}, fmt.Errorf("%s: no report (ginkgo: %v): %w", p.name, runErr, err)
	}
	var filter *regexp.Regexp
	if skip != "" {
		filter = regexp.MustCompile(skip)
	}
	s := summarize(reports, regexp.MustCompile(p.focus), filter, limits, append(limitRules(limits), p.rules()...))
	s.Minutes = time.Since(start).Minutes()
	if runErr != nil && s.Failed == 0 {
		return s, fmt.Errorf("%s: ginkgo failed without a failed spec: %v", p.name, runErr)
	}
	return s, nil
}
