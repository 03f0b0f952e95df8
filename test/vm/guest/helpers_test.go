//go:build vmguest

package guest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const nvmetRoot = "/sys/kernel/config/nvmet"

func requireVM(t *testing.T) {
	t.Helper()
	if os.Getenv("CSI_HUB_VM") != "1" {
		t.Skip("SKIPPING: guest tests change configfs and NVMe connections; they run only inside the test VM (CSI_HUB_VM=1)")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// nvmeControllers lists /sys/class/nvme: every connected NVMe controller.
func nvmeControllers(t *testing.T) []string { return entries(t, "/sys/class/nvme") }

// assertClean checks that no nvmet export, NVMe connection or mount under
// prefix is left.
func assertClean(t *testing.T, mountPrefix string) {
	t.Helper()
	for _, d := range []string{"subsystems", "ports", "hosts"} {
		if left := entries(t, filepath.Join(nvmetRoot, d)); len(left) > 0 {
			t.Errorf("configfs %s/%s still holds %v", nvmetRoot, d, left)
		}
	}
	if left := nvmeControllers(t); len(left) > 0 {
		t.Errorf("/sys/class/nvme still holds %v", left)
	}
	if m := mountsUnder(t, mountPrefix); len(m) > 0 {
		t.Errorf("/proc/mounts still has %v", m)
	}
}

func mountsUnder(t *testing.T, prefix string) []string {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], prefix) {
			found = append(found, fields[0]+" on "+fields[1])
		}
	}
	return found
}

func wantCode(t *testing.T, err error, code codes.Code, substrings ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: code %v, want %v", err, status.Code(err), code)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	t.Logf("expected error: %v", err)
}

func makeBackingFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}
