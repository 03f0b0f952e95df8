// Package checkout finds the csi-hub checkout a test runs in. It imports
// nothing of the repository, so a light test binary stays light.
package checkout

import (
	"fmt"
	"os"
	"path/filepath"
)

// Find is the csi-hub checkout: the nearest directory at or above the
// working directory that holds go.mod (go test runs a test binary in its
// package's directory; only this module can import an internal package, so
// the go.mod found is csi-hub's). It does not use the source file's path from
// runtime.Caller, which make unit's -trimpath turns into an import path.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the csi-hub checkout: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no csi-hub checkout (go.mod) at or above %s", dir)
		}
	}
}

// Root is Find for a test, which cannot run outside a checkout: it panics
// there.
func Root() string {
	root, err := Find()
	if err != nil {
		panic("checkout.Root: " + err.Error())
	}
	return root
}
