package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// lddPaths matches the absolute library paths in ldd's output:
// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddPaths = regexp.MustCompile(`(?m)(?:=>\s+|^\s+)(/\S+)\s+\(0x`)

// addHostBinary copies a host executable found on PATH into the rootfs at the
// same path, with every shared library ldd reports (static binaries and scripts
// have none). It returns the binary's path.
func (r *rootfs) addHostBinary(name string) (string, error) {
	bin, err := lookPath(name)
	if err != nil {
		return "", err
	}
	r.addFile(bin, bin)
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		// ldd fails with "not a dynamic executable" for static binaries and scripts.
		if strings.Contains(string(out), "not a dynamic executable") {
			return bin, nil
		}
		return "", fmt.Errorf("ldd %s: %v: %s", bin, err, out)
	}
	for _, m := range lddPaths.FindAllStringSubmatch(string(out), -1) {
		r.addFile(m[1], m[1])
	}
	return bin, nil
}

// lookPath finds name on PATH plus the sbin directories, which root's PATH
// may lack under some shells.
func lookPath(name string) (string, error) {
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			// Keep the path as found: merged-/usr hosts resolve /sbin -> /usr/sbin anyway.
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on this machine (install it: hack/install-deps.sh)", name)
}
